"""The synchronous core of the file store: sharded paths, atomic publication, reads, clearing.

Everything here is plain blocking code; :class:`~sparktts_cache.TTSCache` hands each operation to a
worker thread in one call, and :class:`~sparktts_cache.SyncTTSCache` calls it directly.

Layout: the entry for key ``k`` is ``<root>/<k[0:2]>/<k[2:4]>/<k>.<ext>``. A writer creates
``<k>.<random>.tmp`` in the same directory, writes the whole entry, and renames it into place, so a
reader sees a whole entry or none. Directories are walked with ``O_NOFOLLOW`` directory descriptors,
so a symlink planted at a shard path is never followed by a write, a read, or ``clear``.

Thread- and process-safety: every function may run concurrently with any other, in this process or
another one sharing the directory. ``clear`` may delete a writer's temp file or shard directory in
the middle of a write; the writer notices (``ENOENT``) and starts its write again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from ._codec import Codec, Entry, EntryMeta
from ._counters import COUNTER_NAME, SHARDS, add_to_counter
from ._errors import CorruptEntryError

__all__ = ["FileStore"]

log = logging.getLogger("sparktts_cache")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: Permissions before the umask: never world-writable, whatever the umask.
FILE_MODE = 0o664
DIR_MODE = 0o775
#: Entries larger than this are not cached audio (over 2 hours of 16 kHz float32 samples).
MAX_ENTRY_BYTES = 1 << 30
_WRITE_ATTEMPTS = 4
#: A hit refreshes its entry's modification time (its LRU clock) when older than this.
RECENCY_RESOLUTION = 60.0
#: How long a process trusts the cache size it last counted, when others may be writing too.
RECHECK_SECONDS = 2.0
_SHARD_RE = re.compile(r"[0-9a-f]{2}")
_TEMP_SUFFIX = ".tmp"
#: The names this cache writes: entries of any codec, and temp files. Nothing else is touched.
_ENTRY_NAME_RE = re.compile(r"([0-9a-f]{32})\.(?:wav|flac)")
_TEMP_NAME_RE = re.compile(r"([0-9a-f]{32})\.[0-9a-f]{16}\.tmp")


def _is_shard_name(name: str) -> bool:
    return len(name) == 2 and _SHARD_RE.fullmatch(name) is not None


class FileStore:
    """Entries of one codec under one root directory.

    Args:
        root: the cache directory. It is created on the first write.
        codec: the entry format (its extension names the files).
        fsync: flush each entry and its directory to stable storage before publishing it. Off by
            default, as in git and ccache: a crash may then lose recent entries, never tear one.
        max_size_bytes: keep the cache near this size by evicting the least recently used entries
            (see ``_maintenance``); None for no limit.
    """

    __slots__ = ("_check_after", "codec", "fsync", "max_size_bytes", "root")

    def __init__(
        self, root: str, codec: Codec, *, fsync: bool = False, max_size_bytes: int | None = None
    ) -> None:
        self.root = root
        self.codec = codec
        self.fsync = fsync
        self.max_size_bytes = max_size_bytes
        #: (bytes this process may still write, monotonic deadline) before the next cleanup check.
        self._check_after = (0, 0.0)

    # -- paths -----------------------------------------------------------------------------------

    def entry_name(self, key: str) -> str:
        return f"{key}.{self.codec.extension}"

    def entry_path(self, key: str) -> str:
        """The path of ``key``'s entry. ``key`` must already be checked."""
        return f"{self.root}/{key[:2]}/{key[2:4]}/{key}.{self.codec.extension}"

    @contextlib.contextmanager
    def _shard_dirs(self, key: str) -> Iterator[tuple[int, int]]:
        """Yield descriptors of ``key``'s two shard directories, creating them as needed and
        refusing symlinks on the way (the write path; reads open entries relative to the shard)."""
        os.makedirs(self.root, mode=DIR_MODE, exist_ok=True)
        fds = [os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        try:
            for part in (key[:2], key[2:4]):
                try:
                    fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, DIR_MODE, dir_fd=fds[-1])
                    fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
            yield fds[1], fds[2]
        finally:
            for fd in fds:
                os.close(fd)

    # -- reading ---------------------------------------------------------------------------------

    def read(self, key: str, *, with_meta: bool = False) -> Entry | npt.NDArray[np.float32] | None:
        """Return the entry's samples (or the whole :class:`Entry`), or None on a miss.

        A file that is not a whole, valid entry is logged, removed, and reported as a miss. A
        directory, FIFO or symlink at the entry path is a miss and left alone.
        """
        return self.read_many([key], with_meta=with_meta)[0]

    def read_many(
        self, keys: Sequence[str], *, with_meta: bool = False
    ) -> list[Entry | npt.NDArray[np.float32] | None]:
        """:meth:`read` of each key, sharing directory descriptors between the reads."""
        outer_fds: dict[str, int] = {}
        try:
            return [self._read_one(outer_fds, key, with_meta) for key in keys]
        finally:
            for fd in outer_fds.values():
                os.close(fd)

    def _read_one(
        self, outer_fds: dict[str, int], key: str, with_meta: bool
    ) -> Entry | npt.NDArray[np.float32] | None:
        inner, name = key[2:4], f"{key[2:4]}/{self.entry_name(key)}"
        try:
            outer_fd = outer_fds.get(key[:2])
            if outer_fd is None:  # the shard, by path: O_NOFOLLOW refuses a symlink there
                outer_fd = outer_fds[key[:2]] = os.open(f"{self.root}/{key[:2]}", _DIR_FLAGS)
            # The entry relative to its outer shard; O_NOFOLLOW covers the file itself, and the
            # inner shard is checked below (an lstat is cheaper than opening it).
            fd = os.open(name, _READ_FLAGS, dir_fd=outer_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a symlink or a file where a shard or the entry should be
            log.warning("cannot read cache entry %s: %s", key, exc)
            return None
        try:
            if not stat.S_ISDIR(os.stat(inner, dir_fd=outer_fd, follow_symlinks=False).st_mode):
                log.warning("shard of entry %s is not a directory; treating it as a miss", key)
                return None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                log.warning("entry %s is not a regular file; treating it as a miss", key)
                return None
            if st.st_size > MAX_ENTRY_BYTES:
                raise CorruptEntryError(f"file is {st.st_size} bytes, larger than any entry")
            data = _read_exactly(fd, st.st_size)
            result: Entry | npt.NDArray[np.float32]
            if with_meta:
                result = self.codec.decode(data)
                if result.meta.key != key:
                    raise CorruptEntryError(f"entry belongs to key {result.meta.key}")
            else:
                result = self.codec.decode_audio(data)
            _refresh_recency(fd, st)
            return result
        except CorruptEntryError as exc:
            log.warning("corrupt cache entry %s (%s); removing it", key, exc)
            _unlink_if_same(name, outer_fd, st)
            return None
        except OSError as exc:
            log.warning("cannot read cache entry %s: %s", key, exc)
            return None
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------------

    def write(self, key: str, audio: npt.NDArray[np.float32], meta: EntryMeta) -> bool:
        """Publish an entry atomically; return False (and log why) if the file system refuses.

        ``audio`` and ``meta`` come from ``new_entry``. With a ``max_size_bytes``, the shard's size
        counter is updated and, when the shard holds more than its share, the cache is cleaned up
        (by whichever process gets the cleanup lock).
        """
        buffers = self.codec.encode(audio, meta)
        name = self.entry_name(key)
        shard_bytes = 0
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self._shard_dirs(key) as (outer_fd, inner_fd):
                    added, replaced = self._publish(inner_fd, key, name, buffers)
                    if self.max_size_bytes is not None:
                        shard_bytes = add_to_counter(
                            outer_fd, added - replaced, 0 if replaced else 1
                        )
                break
            except FileNotFoundError as exc:
                # A concurrent clear removed our shard directory or temp file: write again.
                if attempt == _WRITE_ATTEMPTS - 1:
                    log.error("cannot write cache entry %s: %s", key, exc)
                    self._remove_empty_shards(key)
                    return False
            except OSError as exc:
                log.error("cannot write cache entry %s: %s", key, exc)
                self._remove_empty_shards(key)
                return False
        if self.max_size_bytes is not None and shard_bytes > self.max_size_bytes / SHARDS:
            self._maybe_cleanup(added)
        return True

    def _maybe_cleanup(self, written: int) -> None:
        """Check the whole cache's size, unless this process cannot have filled the headroom
        found at the last check (and that check is recent: other processes write too)."""
        headroom, deadline = self._check_after
        headroom -= written
        if headroom > 0 and time.monotonic() < deadline:
            self._check_after = (headroom, deadline)
            return
        total = self.cleanup_if_over_limit()
        if total is not None and self.max_size_bytes is not None:
            self._check_after = (self.max_size_bytes - total, time.monotonic() + RECHECK_SECONDS)

    def _remove_empty_shards(self, key: str) -> None:
        """After a failed write, remove the shard directories it may have created, if empty."""
        for relative in (f"{key[:2]}/{key[2:4]}", key[:2]):
            try:
                os.rmdir(f"{self.root}/{relative}")
            except OSError:  # not empty (other entries, another writer), or not there
                return

    def _publish(
        self, dir_fd: int, key: str, name: str, buffers: Sequence[bytes | memoryview]
    ) -> tuple[int, int]:
        """Write and rename into place; return (bytes written, size of the entry replaced)."""
        temp = f"{key}.{secrets.token_hex(8)}{_TEMP_SUFFIX}"
        fd = os.open(temp, _TEMP_FLAGS, FILE_MODE, dir_fd=dir_fd)
        try:
            try:
                written = _write_all(fd, buffers)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            replaced = 0
            if self.max_size_bytes is not None:
                with contextlib.suppress(FileNotFoundError):
                    replaced = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        if self.fsync:
            os.fsync(dir_fd)
        return written, replaced

    def cleanup_if_over_limit(self) -> int | None:
        """Evict to 90 % of ``max_size_bytes`` if over it; skipped if another process is at it.

        Returns the cache's size afterwards as counted, or None if the check was skipped.
        """
        if self.max_size_bytes is None:
            return None
        from ._maintenance import cleanup

        try:
            return cleanup(self, self.max_size_bytes)
        except OSError as exc:
            log.warning("cache cleanup failed: %s", exc)
            return None

    # -- clearing --------------------------------------------------------------------------------

    def clear(self) -> bool:
        """Remove every entry and temp file of this layout, and empty shard directories.

        Files the cache did not write (other names, other places, symlinks) are left alone.
        Returns False, after logging why, if something could not be removed.
        """
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.error("cannot clear cache %s: %s", self.root, exc)
            return False
        ok = True
        try:
            for outer in shard_names(root_fd):
                ok &= self._clear_outer(root_fd, outer)
        finally:
            os.close(root_fd)
        return ok

    def _clear_outer(self, root_fd: int, outer: str) -> bool:
        ok = True
        try:
            outer_fd = os.open(outer, _DIR_FLAGS, dir_fd=root_fd)
        except OSError:  # vanished, or a symlink: not ours to walk
            return True
        try:
            for inner in shard_names(outer_fd):
                ok &= self._clear_inner(outer_fd, outer + inner)
                with contextlib.suppress(OSError):
                    os.rmdir(inner, dir_fd=outer_fd)
            with contextlib.suppress(OSError):
                os.unlink(COUNTER_NAME, dir_fd=outer_fd)
        finally:
            os.close(outer_fd)
        with contextlib.suppress(OSError):
            os.rmdir(outer, dir_fd=root_fd)
        return ok

    def _clear_inner(self, outer_fd: int, prefix: str) -> bool:
        try:
            inner_fd = os.open(prefix[2:], _DIR_FLAGS, dir_fd=outer_fd)
        except OSError:
            return True
        ok = True
        try:
            for name in self.own_files(inner_fd, prefix):
                try:
                    os.unlink(name, dir_fd=inner_fd)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.error("cannot remove cache file %s/%s: %s", prefix, name, exc)
                    ok = False
        finally:
            os.close(inner_fd)
        return ok

    def own_files(self, dir_fd: int, prefix: str) -> list[str]:
        """Names of the regular files in a shard directory that this cache wrote."""
        with os.scandir(dir_fd) as it:
            return [
                item.name
                for item in it
                if own_file_kind(item.name, prefix) and item.is_file(follow_symlinks=False)
            ]


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


def shard_names(dir_fd: int) -> list[str]:
    """The shard directories (two hex characters, not symlinks) in a directory, sorted."""
    with os.scandir(dir_fd) as it:
        return sorted(
            i.name for i in it if _is_shard_name(i.name) and i.is_dir(follow_symlinks=False)
        )


def _read_exactly(fd: int, size: int) -> memoryview:
    """The file's bytes, read into an uninitialised buffer (zero-filling one costs as much as a
    checksum); the audio returned is a writable view of it."""
    view: memoryview = np.empty(size, dtype=np.uint8).data
    filled = 0
    while filled < size:
        n = os.readv(fd, [view[filled:]])
        if n == 0:
            raise CorruptEntryError("file shrank while being read")
        filled += n
    return view


def _write_all(fd: int, buffers: Sequence[bytes | memoryview]) -> int:
    views = [memoryview(b).cast("B") for b in buffers]
    total = sum(len(view) for view in views)
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
    return total


def _refresh_recency(fd: int, st: os.stat_result) -> None:
    """Mark a hit as recently used (modification time is the LRU clock), once a minute at most."""
    now = time.time()
    if now - st.st_mtime > RECENCY_RESOLUTION:
        with contextlib.suppress(OSError):  # another user's read-only entry: keep its old time
            os.utime(fd, (now, now))


def _unlink_if_same(name: str, dir_fd: int, opened: os.stat_result) -> None:
    """Remove ``name`` only if it is still the file we opened (a writer may have replaced it)."""
    try:
        current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev):
            os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        log.warning("cannot remove corrupt cache file %s: %s", name, exc)
