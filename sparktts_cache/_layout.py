"""The on-disk layout of a cache directory: names, paths, modes, and how files are opened.

This module is the one place that knows what the cache directory looks like::

    <root>/cleanup.lock                   held by whichever process cleans up
    <root>/locks/<key>.lock               per-key synthesis locks (``FileSynthesisLock``)
    <root>/<k[0:2]>/stats                 the top-level shard's size counter
    <root>/<k[0:2]>/<k[2:4]>/<k>.<ext>    the entry of key k (ext: wav or flac)
    <root>/<k[0:2]>/<k[2:4]>/<k>.<16 hex>.tmp   a writer's temp file

Every function that walks the tree goes through directory descriptors opened with ``O_NOFOLLOW``
(:func:`opened_dir`), and acts on names relative to them, so that a symlink planted at a shard
path, or swapped in for a shard directory while a scan runs, is never followed: nothing outside
the cache directory is ever read, written or removed. Only the root itself may be a symlink (the
user chose that path).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator

import numpy as np

from ._errors import CorruptEntryError

__all__ = [
    "CLEANUP_LOCK",
    "COUNTER_NAME",
    "DIR_FLAGS",
    "DIR_MODE",
    "FILE_MODE",
    "LOCKS_DIR",
    "MAX_ENTRY_BYTES",
    "READ_FLAGS",
    "SHARDS",
    "SMALL_FILE_FLAGS",
    "TEMP_FLAGS",
    "NotARegularFile",
    "entry_name",
    "entry_path",
    "entry_paths",
    "is_shard_name",
    "opened_dir",
    "opened_dir_or_none",
    "opened_root",
    "opened_shard_or_none",
    "own_file_kind",
    "own_files",
    "read_exactly",
    "read_regular_file",
    "shard_names",
    "shard_of",
    "temp_name",
]

#: Top-level shards (two hex characters); each has its own size counter.
SHARDS = 256
#: The size counter in each top-level shard directory (see ``_counters``).
COUNTER_NAME = "stats"
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
#: A small file the cache updates in place (counters, lock files).
SMALL_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

#: Entries larger than this are not cached audio (over 2 hours of 16 kHz float32 samples).
MAX_ENTRY_BYTES = 1 << 30

_SHARD_RE = re.compile(r"[0-9a-f]{2}")
#: The names this cache writes in a shard: entries of any codec, and temp files.
_ENTRY_NAME_RE = re.compile(r"([0-9a-f]{32})\.(?:wav|flac)")
_TEMP_NAME_RE = re.compile(r"([0-9a-f]{32})\.[0-9a-f]{16}\.tmp")


# -- names and paths (keys must already be checked) ---------------------------------------------


def shard_of(key: str) -> tuple[str, str]:
    """The names of ``key``'s outer and inner shard directories: ``("ab", "cd")``."""
    return key[:2], key[2:4]


def entry_name(key: str, extension: str) -> str:
    """The file name of ``key``'s entry inside its inner shard directory."""
    return f"{key}.{extension}"


def entry_paths(root: str, keys: Iterable[str], extension: str) -> list[str]:
    """The paths of the entries of ``keys`` under ``root``: ``<root>/ab/cd/<key>.<ext>``.

    One list comprehension of string joins: status checks build 100,000 of these at a time, and
    a function call per path would cost a tenth of the whole check.
    """
    return [f"{root}/{k[:2]}/{k[2:4]}/{k}.{extension}" for k in keys]


def entry_path(root: str, key: str, extension: str) -> str:
    """The path of ``key``'s entry under ``root``."""
    return entry_paths(root, (key,), extension)[0]


def temp_name(key: str) -> str:
    """A fresh temp-file name for a writer of ``key``: ``<key>.<16 random hex>.tmp``."""
    return f"{key}.{secrets.token_hex(8)}.tmp"


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is a shard directory's name: two lowercase hex characters."""
    return len(name) == 2 and _SHARD_RE.fullmatch(name) is not None


def own_file_kind(name: str, prefix: str) -> tuple[str, str] | None:
    """``("entry" | "temp", key)`` if ``name`` is a file this cache writes in the shard directory
    of ``prefix`` (the key's first four characters), else None: nothing else is ever touched."""
    if match := _ENTRY_NAME_RE.fullmatch(name):
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
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


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
    try:
        fd = os.open(root, _ROOT_FLAGS)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def own_files(dir_fd: int, prefix: str) -> list[str]:
    """Names of the regular files in the shard directory of ``prefix`` that this cache wrote."""
    with os.scandir(dir_fd) as it:
        return [
            item.name
            for item in it
            if own_file_kind(item.name, prefix) and item.is_file(follow_symlinks=False)
        ]


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
