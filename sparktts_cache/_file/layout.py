"""The on-disk layout of a cache directory: names, paths, modes, and how files are opened.

This module is the one place that knows what the cache directory looks like::

    <root>/CACHEDIR.TAG                   marks the directory as a cache (see below)
    <root>/cleanup.lock                   held by whichever process cleans up
    <root>/locks/<key>.lock               per-key synthesis locks (``FileSynthesisLock``)
    <root>/<k[0:2]>/sparktts_cache.counter   the top-level shard's size counter
    <root>/<k[0:2]>/<k[2:4]>/<k>.<ext>    the entry of key k (ext: wav or flac)
    <root>/<k[0:2]>/<k[2:4]>/<k>.<kind>.blob   the blob of key k and kind (see ``blobs``)
    <root>/<k[0:2]>/<k[2:4]>/<k>.<16 hex>.tmp   a writer's temp file

Every function that walks the tree goes through directory descriptors opened with ``O_NOFOLLOW``
(:func:`opened_dir`), and acts on names relative to them, so that a symlink planted at a shard
path, or swapped in for a shard directory while a scan runs, is never followed: nothing outside
the cache directory is ever read, written or removed. Only the root itself may be a symlink (the
user chose that path).

Whose files are whose. Entries, temp files and counters have names no other program writes (a key,
a key and 16 random hex digits, ``sparktts_cache.counter``); shard directories and the two lock
names do not. ``CACHEDIR.TAG`` (the Cache Directory Tagging convention, which also tells backup
tools to skip the directory) marks a directory as the cache's: only in a marked directory does
maintenance remove empty shard directories, and ``clear``, ``prune`` and ``verify --fix`` refuse to
run in an unmarked one that holds anything else (``ownership.claim``). The first write marks a
new (empty) directory; an unmarked one that holds nothing but the cache's own layout (a cache made
before the tag, with its old ``stats`` counters) is marked by the first maintenance that finds it
so. A directory that holds a user's files is never marked.

The cache's small files (counters, lock files) are opened without following symlinks and without
blocking on a FIFO, and checked on the descriptor: whatever else occupies one of their names (a
FIFO, a symlink, a directory, a hard-linked file) is never read or written through
(:func:`open_own_file`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .._core.codec import CODEC_NAMES, MAX_ENTRY_BYTES
from .._core.errors import CorruptEntryError, InvalidOptionError

__all__ = [
    "CLEANUP_LOCK",
    "COUNTER_NAME",
    "DIR_FLAGS",
    "DIR_MODE",
    "FILE_MODE",
    "LOCKS_DIR",
    "MARKER_NAME",
    "MARKER_SIGNATURE",
    "MAX_ENTRY_BYTES",
    "OLD_COUNTER_NAME",
    "READ_FLAGS",
    "SHARDS",
    "SMALL_FILE_FLAGS",
    "TEMP_FLAGS",
    "NotARegularFile",
    "UnusablePath",
    "blob_name",
    "entry_extension",
    "entry_name",
    "entry_path",
    "entry_path_in_outer",
    "entry_paths",
    "is_blob_name",
    "is_lock_name",
    "is_marked",
    "is_marker_temp_name",
    "is_old_counter",
    "is_shard_name",
    "mark",
    "open_own_file",
    "opened_dir",
    "opened_dir_or_none",
    "opened_root",
    "opened_shard_or_none",
    "own_file_kind",
    "read_exactly",
    "read_regular_file",
    "remove_by_name",
    "shard_names",
    "shard_of",
    "shard_path",
    "temp_name",
]

#: Top-level shards (two hex characters); each has its own size counter.
SHARDS = 256
#: The size counter in each top-level shard directory (see ``counters``): a name only this cache
#: writes, so that no user's file is ever taken for one.
COUNTER_NAME = "sparktts_cache.counter"
#: The counter's name in caches made before ``CACHEDIR.TAG``: recognised (by name and by its
#: ``"<bytes> <entries>\\n"`` contents) only to adopt such a cache.
OLD_COUNTER_NAME = "stats"
#: Marks a cache directory (https://bford.info/cachedir/): backup tools skip it, and maintenance
#: removes shard directories only in a marked directory.
MARKER_NAME = "CACHEDIR.TAG"
#: What a ``CACHEDIR.TAG`` file must begin with, by the convention.
MARKER_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
_MARKER_TEXT = MARKER_SIGNATURE + (
    b"\n# This file is a cache directory tag created by sparktts_cache.\n"
    b"# For information about cache directory tags, see https://bford.info/cachedir/\n"
)
#: The lock a cleanup holds, in the root.
CLEANUP_LOCK = "cleanup.lock"
#: The directory of per-key synthesis locks, in the root.
LOCKS_DIR = "locks"

#: Permissions before the umask: never world-writable, whatever the umask.
FILE_MODE = 0o664
DIR_MODE = 0o775

#: A shard directory: never a symlink.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: An entry to read: never a symlink, and a FIFO does not block the open (it is refused after).
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: A writer's temp file: created, never an existing file or a symlink.
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: A small file the cache updates in place (counters, lock files): never a symlink, and a FIFO
#: does not block the open (:func:`open_own_file` refuses it after).
SMALL_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


_SHARD_RE = re.compile(r"[0-9a-f]{2}")
#: The names this cache writes in a shard: entries of any codec (named by its extension), and temp
#: files.
_ENTRY_EXTENSIONS = "|".join(map(re.escape, CODEC_NAMES))
_ENTRY_NAME_RE = re.compile(rf"([0-9a-f]{{32}})\.(?:{_ENTRY_EXTENSIONS})")
_TEMP_NAME_RE = re.compile(r"([0-9a-f]{32})\.[0-9a-f]{16}\.tmp")
#: A blob's kind (its format, for the speech server's responses), and a blob's file name.
_BLOB_KIND_RE = re.compile(r"[a-z0-9]{1,8}")
BLOB_SUFFIX = ".blob"
_BLOB_NAME_RE = re.compile(r"([0-9a-f]{32})\.[a-z0-9]{1,8}\.blob")
_LOCK_NAME_RE = re.compile(r"[0-9a-f]{32}\.lock")
_MARKER_TEMP_RE = re.compile(r"CACHEDIR\.TAG\.[0-9a-f]{16}\.tmp")
_OLD_COUNTER_RE = re.compile(rb"[0-9]{1,20} [0-9]{1,20}\n")

log = logging.getLogger("sparktts_cache")


# -- names and paths (keys must already be checked) ---------------------------------------------


def shard_of(key: str) -> tuple[str, str]:
    """The names of ``key``'s outer and inner shard directories: ``("ab", "cd")``."""
    return key[:2], key[2:4]


def entry_name(key: str, extension: str) -> str:
    """The file name of ``key``'s entry inside its inner shard directory."""
    return f"{key}.{extension}"


def entry_extension(name: str) -> str:
    """The extension of an entry's file name (``own_file_kind`` says it is one): its format."""
    return name.rpartition(".")[2]


def shard_path(root: str, outer: str) -> str:
    """The path of the top-level shard directory ``outer`` under ``root``: ``<root>/ab``."""
    return f"{root}/{outer}"


def entry_path_in_outer(key: str, extension: str) -> str:
    """The path of ``key``'s entry relative to its top-level shard directory: ``cd/<key>.<ext>``
    (a reader opens it through a descriptor of that directory)."""
    return f"{key[2:4]}/{key}.{extension}"


def entry_paths(root: str, keys: Iterable[str], extension: str) -> list[str]:
    """The paths of the entries of ``keys`` under ``root``: ``<root>/ab/cd/<key>.<ext>``.

    One list comprehension of string joins: status checks build 100,000 of these at a time, and
    a function call per path would cost a tenth of the whole check.
    """
    return [f"{root}/{k[:2]}/{k[2:4]}/{k}.{extension}" for k in keys]


def entry_path(root: str, key: str, extension: str) -> str:
    """The path of ``key``'s entry under ``root``."""
    return entry_paths(root, (key,), extension)[0]


def blob_name(key: str, kind: str) -> str:
    """The file name of ``key``'s blob of ``kind`` inside its inner shard directory.

    Raises:
        InvalidOptionError: unless ``kind`` is 1-8 lowercase letters or digits.
    """
    if not isinstance(kind, str) or _BLOB_KIND_RE.fullmatch(kind) is None:
        raise InvalidOptionError(f"a blob's kind is 1-8 lowercase letters or digits, not {kind!r}")
    return f"{key}.{kind}{BLOB_SUFFIX}"


def is_blob_name(name: str) -> bool:
    """Whether ``name`` (an entry to ``own_file_kind``) is a blob's, not an audio entry's."""
    return name.endswith(BLOB_SUFFIX)


def temp_name(key: str) -> str:
    """A fresh temp-file name for a writer of ``key``: ``<key>.<16 random hex>.tmp``."""
    return f"{key}.{secrets.token_hex(8)}.tmp"


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is a shard directory's name: two lowercase hex characters."""
    return len(name) == 2 and _SHARD_RE.fullmatch(name) is not None


def is_lock_name(name: str) -> bool:
    """Whether ``name`` is a per-key lock file's name: ``<key>.lock``."""
    return _LOCK_NAME_RE.fullmatch(name) is not None


def is_marker_temp_name(name: str) -> bool:
    """Whether ``name`` is the temp file of a process writing ``CACHEDIR.TAG``."""
    return _MARKER_TEMP_RE.fullmatch(name) is not None


def own_file_kind(name: str, prefix: str) -> tuple[str, str] | None:
    """``("entry" | "temp", key)`` if ``name`` is a file this cache writes in the shard directory
    of ``prefix`` (the key's first four characters), else None: nothing else is ever touched.

    Blobs are entries here: counted, evicted and cleared as entries are (:func:`is_blob_name`
    tells them apart where it matters: verifying, listing)."""
    if (match := _ENTRY_NAME_RE.fullmatch(name)) or (match := _BLOB_NAME_RE.fullmatch(name)):
        kind = "entry"
    elif match := _TEMP_NAME_RE.fullmatch(name):
        kind = "temp"
    else:
        return None
    return (kind, match[1]) if match[1].startswith(prefix) else None


# -- directories --------------------------------------------------------------------------------


@contextlib.contextmanager
def opened_dir(name: str, dir_fd: int) -> Iterator[int]:
    """A descriptor of the directory ``name`` in ``dir_fd``, refusing a symlink, closed after.

    Raises:
        OSError: ``FileNotFoundError`` if it is not there; ``ENOTDIR`` or ``ELOOP`` if it is not a
            directory or is a symlink.
    """
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def opened_dir_or_none(name: str, dir_fd: int) -> Iterator[int | None]:
    """As :func:`opened_dir`, but None if the directory cannot be opened (gone, not a directory,
    a symlink): for walks that skip whatever is not the cache's to walk."""
    with _opened_or_none(lambda: os.open(name, DIR_FLAGS, dir_fd=dir_fd), OSError) as fd:
        yield fd


@contextlib.contextmanager
def opened_shard_or_none(root_fd: int, outer: str, inner: str) -> Iterator[int | None]:
    """A descriptor of the inner shard directory ``<root>/<outer>/<inner>``, or None if either
    level cannot be opened (gone, or a symlink: never followed)."""
    with opened_dir_or_none(outer, root_fd) as outer_fd:
        if outer_fd is None:
            yield None
            return
        with opened_dir_or_none(inner, outer_fd) as inner_fd:
            yield inner_fd


@contextlib.contextmanager
def opened_root(root: str, *, create: bool = False) -> Iterator[int | None]:
    """A descriptor of the cache directory, or None if it does not exist (and ``create`` is
    False). The root may be a symlink: the user chose that path."""
    if create:
        os.makedirs(root, mode=DIR_MODE, exist_ok=True)
    with _opened_or_none(lambda: os.open(root, _ROOT_FLAGS), FileNotFoundError) as fd:
        yield fd


@contextlib.contextmanager
def _opened_or_none(open_fd: Callable[[], int], skipped: type[OSError]) -> Iterator[int | None]:
    """The descriptor ``open_fd()`` gives, closed after; None if it raises ``skipped``."""
    try:
        fd = open_fd()
    except skipped:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def shard_names(dir_fd: int) -> list[str]:
    """The shard directories (two hex characters, not symlinks) in a directory, sorted."""
    with os.scandir(dir_fd) as it:
        return sorted(
            i.name for i in it if is_shard_name(i.name) and i.is_dir(follow_symlinks=False)
        )


# -- reading files ------------------------------------------------------------------------------


def read_exactly(fd: int, size: int) -> memoryview:
    """The file's ``size`` bytes, read into an uninitialised buffer (zero-filling one costs as
    much as a checksum); the audio decoded from it is a writable view of it.

    Raises:
        CorruptEntryError: if the file ends early (it shrank while being read).
    """
    view: memoryview = np.empty(size, dtype=np.uint8).data
    filled = 0
    while filled < size:
        n = os.readv(fd, [view[filled:]])
        if n == 0:
            raise CorruptEntryError("file shrank while being read")
        filled += n
    return view


class NotARegularFile(OSError):
    """Something other than a regular file (a directory, FIFO, device) is at an entry's path."""


def read_regular_file(fd: int) -> tuple[memoryview, os.stat_result]:
    """The bytes of the regular file open as ``fd``, and its status.

    Raises:
        NotARegularFile: for a directory, FIFO, socket or device (nothing is read from it).
        CorruptEntryError: if it is larger than any entry, or shrinks while being read.
    """
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFile(f"not a regular file (mode {stat.filemode(st.st_mode)})")
    if st.st_size > MAX_ENTRY_BYTES:
        raise CorruptEntryError(f"file is {st.st_size} bytes, larger than any entry")
    return read_exactly(fd, st.st_size), st


# -- the cache's own small files ----------------------------------------------------------------


class UnusablePath(OSError):
    """Something the cache cannot use occupies the path of one of its own files or directories
    (a directory where a counter or lock file belongs, a symlink where the locks directory does)."""


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFLNK: "a symlink",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


def _occupant(name: str, dir_fd: int) -> str:
    """What is at ``name``, in words, for messages."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return "something that cannot be opened"
    if stat.S_ISREG(st.st_mode):
        return f"a file with {st.st_nlink} links"
    return _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")


def remove_by_name(name: str, dir_fd: int) -> None:
    """Remove what occupies the name of one of the cache's own files: unlink anything but a
    directory (a FIFO, symlink, socket or hard link: removing a name never touches what it points
    to, nor another name's file), and remove a directory only if it is empty.

    Raises:
        UnusablePath: for a directory that is not empty (it is left alone).
    """
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise UnusablePath(exc.errno, f"{name} is a directory that is not empty") from None
        raise


def open_own_file(name: str, dir_fd: int, *, single_link: bool = False, heal: bool = True) -> int:
    """Open (creating it if needed) the cache's small file ``name`` in ``dir_fd`` for update.

    Never follows a symlink and never blocks on a FIFO; what was opened is checked on its
    descriptor: it must be a regular file, with one link if ``single_link`` (a file the cache writes
    in place must never write through a hard link to another file). With ``heal``, whatever else
    occupies the name is removed by name (:func:`remove_by_name`, logged) and the file created
    afresh, once.

    Raises:
        UnusablePath: if the name is still occupied by something else (a directory that is not
            empty, or anything when ``heal`` is False).
    """
    for attempt in range(2):
        try:
            fd = os.open(name, SMALL_FILE_FLAGS, FILE_MODE, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.EISDIR, errno.ELOOP, errno.ENXIO, errno.EOPNOTSUPP):
                raise
        else:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and (st.st_nlink == 1 or not single_link):
                return fd
            os.close(fd)
        what = _occupant(name, dir_fd)
        if not heal or attempt:
            raise UnusablePath(errno.EEXIST, f"{name} is {what}, not a file the cache can use")
        remove_by_name(name, dir_fd)
        log.warning("removed %s at %s, where the cache keeps a file of its own", what, name)
    raise AssertionError("unreachable")


def is_old_counter(dir_fd: int) -> bool:
    """Whether the shard open as ``dir_fd`` holds a counter of a cache made before the tag: a
    regular file named ``stats`` with one link, holding ``"<bytes> <entries>\\n"``."""
    try:
        fd = os.open(OLD_COUNTER_NAME, READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > 64:
            return False
        return _OLD_COUNTER_RE.fullmatch(os.pread(fd, 64, 0)) is not None
    finally:
        os.close(fd)


def is_marked(root_fd: int) -> bool:
    """Whether the directory open as ``root_fd`` holds a ``CACHEDIR.TAG`` (a regular file that
    begins with the convention's signature, whichever program wrote it)."""
    try:
        fd = os.open(MARKER_NAME, READ_FLAGS, dir_fd=root_fd)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return os.pread(fd, len(MARKER_SIGNATURE), 0) == MARKER_SIGNATURE
    finally:
        os.close(fd)


def mark(root_fd: int) -> None:
    """Write ``CACHEDIR.TAG`` in the directory open as ``root_fd``, never replacing a file there.

    The tag is written whole to a temp file and hard-linked into place (``link`` fails rather than
    replace), so no process ever reads a partial tag. Only ``ownership``, once it has found nothing
    but the cache's own files (or nothing at all, for a first write), calls this: a directory
    holding a user's files must never be marked (backup tools would skip them).
    """
    temp = f"{MARKER_NAME}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, TEMP_FLAGS, FILE_MODE, dir_fd=root_fd)
    try:
        try:
            os.write(fd, _MARKER_TEXT)
        finally:
            os.close(fd)
        try:
            os.link(temp, MARKER_NAME, src_dir_fd=root_fd, dst_dir_fd=root_fd)
        except FileExistsError:
            pass  # another process marked it first (or a file of that name is there: kept)
        except OSError:  # no hard links on this file system: create it, never replacing one
            with contextlib.suppress(FileExistsError):
                tag = os.open(MARKER_NAME, TEMP_FLAGS, FILE_MODE, dir_fd=root_fd)
                try:
                    os.write(tag, _MARKER_TEXT)
                finally:
                    os.close(tag)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=root_fd)
