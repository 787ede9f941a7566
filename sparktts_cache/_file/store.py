"""The synchronous core of the file store: atomic publication and reads of entries.

Everything here is plain blocking code; :class:`~sparktts_cache.TTSCache` hands each operation to a
worker thread in one call, and :class:`~sparktts_cache.SyncTTSCache` calls it directly. Where files
live is ``layout``'s business; the size limit is ``eviction``'s, and whether a directory may be
marked as the cache's is ``ownership``'s. Maintenance run on demand (``clear``, ``prune``,
``verify``, ``stats``) is ``maintenance``'s.

A writer creates ``<k>.<random>.tmp`` in the entry's directory, writes the whole entry, and renames
it into place, so a reader sees a whole entry or none. Directories are walked with ``O_NOFOLLOW``
directory descriptors, so a symlink planted at a shard path is never followed by a write or a read.

Thread- and process-safety: every method may run concurrently with any other, in this process or
another one sharing the directory. ``clear`` may delete a writer's temp file or shard directory in
the middle of a write; the writer notices (``ENOENT``) and starts its write again.

Whose files: a write creates directories, its entry, temp file and counter (names no other program
writes) and never removes or replaces anything else; after a failed write it removes only the shard
directories it created itself. The first write of a store marks a new (empty) cache directory
with ``CACHEDIR.TAG`` (``ownership.mark_if_new``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from .._core.codec import CODEC_NAMES, Codec, Entry, EntryMeta, codec_named
from .._core.errors import CorruptEntryError
from .._core.matching import RequestCheck, log_collision
from . import layout as layout
from .atomic import AtomicFile
from .counters import add_to_counter
from .eviction import SizeLimit
from .ownership import mark_if_new

__all__ = [
    "FileStore", "Inspection", "count_write", "read_entry_file", "refresh_recency", "replaced_size",
    "unlink_if_same",
]  # fmt: skip

log = logging.getLogger("sparktts_cache")

_WRITE_ATTEMPTS = 4
#: A hit refreshes its entry's modification time (its LRU clock) when older than this.
RECENCY_RESOLUTION = 60.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class Inspection:
    """An entry file as :meth:`FileStore.inspect` found it: whole, or damaged and why.

    ``path`` is the file's path; ``entry`` its samples and metadata, None if it is damaged; and
    ``damage`` says what is wrong with a damaged one (None for a whole entry): a checksum
    mismatch, another key's entry, metadata ``cache_data`` would not write, not a regular file...
    """

    path: str
    entry: Entry | None
    damage: str | None


class FileStore:
    """Entries of one codec under one root directory.

    Args:
        root: the cache directory. It is created on the first write.
        codec: the entry format (its extension names the files).
        fsync: flush each entry and its directory to stable storage before publishing it. Off by
            default, as in git and ccache: a crash may then lose recent entries, never tear one.
        max_size_bytes: keep the cache near this size by evicting the least recently used entries
            (see :class:`~sparktts_cache._file.eviction.SizeLimit`); None for no limit.
    """

    __slots__ = ("_marker_checked", "codec", "fsync", "limit", "root")

    def __init__(
        self, root: str, codec: Codec, *, fsync: bool = False, max_size_bytes: int | None = None
    ) -> None:
        self.root = root
        self.codec = codec
        self.fsync = fsync
        self.limit = None if max_size_bytes is None else SizeLimit(root, max_size_bytes)
        #: Whether this store has checked, at its first write, if it should mark the directory.
        self._marker_checked = False

    @property
    def max_size_bytes(self) -> int | None:
        return None if self.limit is None else self.limit.max_bytes

    def entry_path(self, key: str) -> str:
        """The path of ``key``'s entry. ``key`` must already be checked."""
        return layout.entry_path(self.root, key, self.codec.extension)

    # -- reading ---------------------------------------------------------------------------------

    def read_audio(self, key: str) -> npt.NDArray[np.float32] | None:
        """The entry's samples, or None on a miss.

        A file that is not a whole, valid entry of ``key`` (another key's entry, copied or moved
        to this path, included) is logged, removed, and reported as a miss. A directory, FIFO or
        symlink at the entry path is a miss and left alone.
        """
        return self.read_audio_many([key])[0]

    def read_audio_many(self, keys: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        """:meth:`read_audio` of each key, sharing directory descriptors between the reads."""
        return self._read_many(keys, self.codec.decode_audio)

    def read_entry(self, key: str) -> Entry | None:
        """The entry's samples and metadata, or None on a miss (as :meth:`read_audio`)."""
        return self.read_entries([key])[0]

    def read_entries(self, keys: Sequence[str]) -> list[Entry | None]:
        """:meth:`read_entry` of each key, sharing directory descriptors between the reads."""
        return self._read_many(keys, self.codec.decode)

    def inspect(self, key: str, extension: str | None = None) -> Inspection | None:
        """``key``'s entry file as it is, read without touching it; None if there is none.

        Unlike the reads above, a damaged file is reported (:attr:`Inspection.damage`) and left in
        place (``verify`` with ``fix`` removes it), and a whole entry's recency is not refreshed:
        looking at an entry is not using it. The entry is looked for in every format, WAV first
        (a directory does not record the format its entries were written in, and may hold both),
        or only in ``extension``'s. A symlink at the entry's path is damage; one at a shard's is
        never followed (the cache's readers see no entry there either).

        Raises:
            InvalidOptionError: if ``extension`` names no format.
        """
        formats = CODEC_NAMES if extension is None else (codec_named(extension).extension,)
        try:
            with layout.opened_root(self.root) as root_fd:
                if root_fd is None:
                    return None
                for name in formats:
                    found = self._inspect_file(root_fd, key, name)
                    if found is not None:
                        return found
        except NotADirectoryError:  # the cache directory is a file: no entry in it
            pass
        return None

    def _inspect_file(self, root_fd: int, key: str, extension: str) -> Inspection | None:
        outer, inner = layout.shard_of(key)
        path = layout.entry_path(self.root, key, extension)
        try:
            with (
                layout.opened_dir(outer, root_fd) as outer_fd,
                layout.opened_dir(inner, outer_fd) as inner_fd,
            ):
                entry = read_entry_file(inner_fd, layout.entry_name(key, extension), key)
        except (FileNotFoundError, NotADirectoryError):  # no such file, or a shard is not a dir
            return None
        except (CorruptEntryError, layout.NotARegularFile) as exc:
            return Inspection(path, None, str(exc))
        except OSError as exc:  # no permission, a symlink at the entry's path...
            return Inspection(path, None, exc.strerror or type(exc).__name__)
        return Inspection(path, entry, None)

    def read_verified_many(
        self, keys: Sequence[str], texts: Sequence[str], check: RequestCheck
    ) -> list[npt.NDArray[np.float32] | None]:
        """:meth:`read_audio_many`, where an entry made for another text (aligned with ``keys``)
        or other parameters than ``check``'s is a miss, logged and left in place.

        An entry that records exactly what ``cache_data`` records for the request is checked by
        comparing those bytes; any other has its metadata parsed and compared by ``check``.
        """
        recorded = [check.recorded(text) for text in texts]  # checks every text first
        outer_fds: dict[str, int] = {}
        try:
            return [
                self._read_one(
                    outer_fds, key, functools.partial(self._decode_for, check, text, request)
                )
                for key, text, request in zip(keys, texts, recorded, strict=True)
            ]
        finally:
            for fd in outer_fds.values():
                os.close(fd)

    def _decode_for(
        self, check: RequestCheck, text: str, recorded: bytes, data: memoryview, key: str
    ) -> npt.NDArray[np.float32] | None:
        audio, meta = self.codec.decode_for(data, key, recorded)
        if meta is None or check.matches(meta, text):
            return audio
        log_collision(key)
        return None

    def _read_many(
        self, keys: Sequence[str], decode: Callable[[memoryview, str], _T]
    ) -> list[_T | None]:
        outer_fds: dict[str, int] = {}
        try:
            return [self._read_one(outer_fds, key, decode) for key in keys]
        finally:
            for fd in outer_fds.values():
                os.close(fd)

    def _read_one(
        self, outer_fds: dict[str, int], key: str, decode: Callable[[memoryview, str], _T]
    ) -> _T | None:
        outer, inner = layout.shard_of(key)
        name = layout.entry_path_in_outer(key, self.codec.extension)
        try:
            outer_fd = outer_fds.get(outer)
            if outer_fd is None:  # the shard, by path: O_NOFOLLOW refuses a symlink there
                shard = layout.shard_path(self.root, outer)
                outer_fd = outer_fds[outer] = os.open(shard, layout.DIR_FLAGS)
            # The entry relative to its outer shard; O_NOFOLLOW covers the file itself, and the
            # inner shard is checked below (an lstat is cheaper than opening it).
            fd = os.open(name, layout.READ_FLAGS, dir_fd=outer_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a symlink or a file where a shard or the entry should be
            log.warning("cannot read cache entry %s: %s", key, exc)
            return None
        st: os.stat_result | None = None
        try:
            if not stat.S_ISDIR(os.stat(inner, dir_fd=outer_fd, follow_symlinks=False).st_mode):
                log.warning("shard of entry %s is not a directory; treating it as a miss", key)
                return None
            data, st = layout.read_regular_file(fd)
            result = decode(data, key)
            refresh_recency(fd, st)
            return result
        except CorruptEntryError as exc:
            log.warning("corrupt cache entry %s (%s); removing it", key, exc)
            unlink_if_same(name, outer_fd, st or os.fstat(fd))
            return None
        except layout.NotARegularFile:
            log.warning("entry %s is not a regular file; treating it as a miss", key)
            return None
        except OSError as exc:
            log.warning("cannot read cache entry %s: %s", key, exc)
            return None
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------------

    def write(self, key: str, audio: npt.NDArray[np.float32], meta: EntryMeta) -> bool:
        """Publish an entry atomically; return False (and log why) if the file system refuses.

        ``audio`` and ``meta`` come from ``new_entry``. With a size limit, the shard's size
        counter is updated and the limit's policy decides whether to clean up.
        """
        buffers = self.codec.encode(audio, meta)
        name = layout.entry_name(key, self.codec.extension)
        shard_bytes: int | None = 0
        written = 0
        created: list[str] = []
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self.shard_dirs(key, created) as (outer_fd, inner_fd):
                    written, replaced = self._publish(inner_fd, key, name, buffers)
                    if self.limit is not None:
                        added = 0 if replaced else 1
                        shard_bytes = count_write(outer_fd, key, written - replaced, added)
                break
            except FileNotFoundError as exc:
                # A concurrent clear removed our shard directory or temp file: write again.
                if attempt == _WRITE_ATTEMPTS - 1:
                    log.error("cannot write cache entry %s: %s", key, exc)
                    self.remove_created_shards(key, created)
                    return False
            except OSError as exc:
                log.error("cannot write cache entry %s: %s", key, exc)
                self.remove_created_shards(key, created)
                return False
        if self.limit is not None:
            self.limit.after_write(shard_bytes, written)
        return True

    @contextlib.contextmanager
    def shard_dirs(self, key: str, created: list[str]) -> Iterator[tuple[int, int]]:
        """Yield descriptors of ``key``'s two shard directories, creating them as needed and
        refusing symlinks on the way (the write path; reads open entries relative to the shard).

        The shard directories it creates are added to ``created`` (outer, then inner). The first
        write of this store marks the cache directory if it is new (see ``ownership.mark_if_new``).
        """
        with layout.opened_root(self.root, create=True) as root_fd, contextlib.ExitStack() as stack:
            if root_fd is None:  # removed between creating and opening it
                raise FileNotFoundError(f"cache directory {self.root} vanished")
            if not self._marker_checked:
                with contextlib.suppress(OSError):  # best effort: the write does not need it
                    mark_if_new(root_fd)
                self._marker_checked = True
            fds = [root_fd]
            for depth, part in enumerate(layout.shard_of(key)):
                try:
                    fds.append(stack.enter_context(layout.opened_dir(part, fds[-1])))
                except FileNotFoundError:
                    try:
                        os.mkdir(part, layout.DIR_MODE, dir_fd=fds[-1])
                        created.append("/".join(layout.shard_of(key)[: depth + 1]))
                    except FileExistsError:
                        pass
                    fds.append(stack.enter_context(layout.opened_dir(part, fds[-1])))
            yield fds[1], fds[2]

    def remove_created_shards(self, key: str, created: list[str]) -> None:
        """After a failed write, remove the shard directories it created, if they are empty (a
        directory that was there before may be a user's: it is left alone)."""
        outer, inner = layout.shard_of(key)
        with contextlib.suppress(OSError), layout.opened_root(self.root) as root_fd:
            if root_fd is None:
                return
            if f"{outer}/{inner}" in created:
                with layout.opened_dir(outer, root_fd) as outer_fd:
                    os.rmdir(inner, dir_fd=outer_fd)  # raises if not empty: then keep both
            if outer in created:
                os.rmdir(outer, dir_fd=root_fd)

    def _publish(
        self, dir_fd: int, key: str, name: str, buffers: Sequence[bytes | memoryview]
    ) -> tuple[int, int]:
        """Write and rename into place; return (bytes written, size of the entry replaced)."""
        with AtomicFile(dir_fd, layout.temp_name(key), fsync=self.fsync) as file:
            written = file.write(*buffers)
            replaced = replaced_size(dir_fd, name) if self.limit is not None else 0
            file.publish(name)
        return written, replaced


def read_entry_file(dir_fd: int, name: str, key: str) -> Entry:
    """Decode the entry file ``name`` in the shard directory open as ``dir_fd`` as ``key``'s, in
    the format its extension names, touching nothing: a damaged file is left in place and a whole
    one's recency is not refreshed (``inspect`` and ``verify`` read with it).

    Raises:
        FileNotFoundError: if there is no such file.
        CorruptEntryError: if it is not a whole, valid entry of ``key``.
        OSError: if it cannot be opened or read: a symlink (never followed), something other than
            a regular file (``layout.NotARegularFile``), no permission.
    """
    codec = codec_named(layout.entry_extension(name))
    fd = os.open(name, layout.READ_FLAGS, dir_fd=dir_fd)
    try:
        data, _st = layout.read_regular_file(fd)
        return codec.decode(data, key)
    finally:
        os.close(fd)


def count_write(outer_fd: int, key: str, bytes_delta: int, count_delta: int) -> int | None:
    """Add a write to its shard's counter; the shard's new size, or None if the counter cannot be
    used (logged; the size limit then scans that shard)."""
    try:
        return add_to_counter(outer_fd, bytes_delta, count_delta)
    except layout.UnusablePath as exc:
        log.warning("size counter of the shard of %s cannot be used: %s", key, exc)
        return None


def replaced_size(dir_fd: int, name: str) -> int:
    """The size of the file a write is about to replace (0 if none): what its counter loses."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0


def refresh_recency(fd: int, st: os.stat_result) -> None:
    """Mark a hit as recently used (modification time is the LRU clock), once a minute at most."""
    now = time.time()
    if now - st.st_mtime > RECENCY_RESOLUTION:
        with contextlib.suppress(OSError):  # another user's read-only entry: keep its old time
            os.utime(fd, (now, now))


def unlink_if_same(name: str, dir_fd: int, opened: os.stat_result) -> None:
    """Remove ``name`` only if it is still the file we opened (a writer may have replaced it)."""
    try:
        current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev):
            os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        log.warning("cannot remove corrupt cache file %s: %s", name, exc)
