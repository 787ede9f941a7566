"""Keeping a cache healthy for months: size limits, eviction, pruning, verification, statistics.

Eviction is least-recently-used by file modification time (a hit refreshes it, at most once a
minute). Cleanup is taken by one process at a time through ``<root>/cleanup.lock``, which nobody
waits for: a process that finds it held skips cleanup. Its cost does not grow with the whole cache:
a writer checks only its own shard's counter; when that shard holds more than its 1/256 share, the
256 counters are summed and, if the cache is over its limit, the fullest shards are trimmed to 90 %
of their share, oldest entries first (as ccache does). A small cache (under 20,000 entries) is
scanned whole instead and trimmed to 90 % of the limit in exact LRU order.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ._codec import CODECS
from ._counters import COUNTER_NAME, SHARDS, read_counter, write_counter
from ._errors import CorruptEntryError, InvalidOptionError
from ._store import _DIR_FLAGS, FileStore, _read_exactly, log, own_file_kind, shard_names

__all__ = ["CacheStats", "PruneReport", "VerifyReport", "cleanup", "prune", "stats", "verify"]

CLEANUP_LOCK = "cleanup.lock"
#: Temp files older than this belong to writers that died; cleanup removes them.
ORPHAN_AGE = 3600.0
#: Below this many entries a cleanup scans the whole cache and evicts in exact LRU order.
FULL_SCAN_ENTRIES = 20_000
#: Cleanup trims to this fraction of the limit.
TRIM_TO = 0.9

Progress = Callable[[int, int], None]


@dataclass
class FileInfo:
    """One file the cache wrote (an entry or a temp file), as a scan found it.

    ``iter_entries`` yields these for entries: ``key``, ``size`` in bytes, ``mtime`` (the last use,
    the LRU clock) and ``path`` relative to the cache directory.
    """

    path: str  # relative to the cache directory: "ab/cd/<name>"
    size: int
    mtime: float
    key: str

    @property
    def name(self) -> str:
        return self.path[6:]


@dataclass
class ShardScan:
    """What one top-level shard holds."""

    outer: str
    entries: list[FileInfo] = field(default_factory=list)
    temps: list[FileInfo] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    empty_dirs: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass
class CacheStats:
    """What ``stats()`` reports about the cache directory (and this process's traffic)."""

    entries: int
    bytes: int
    oldest: float | None  # last use (modification time) of the least recently used entry
    newest: float | None
    temp_files: int


@dataclass
class PruneReport:
    """What a prune (or an automatic cleanup) removed."""

    entries: int = 0
    bytes: int = 0
    temp_files: int = 0
    empty_dirs: int = 0


@dataclass
class VerifyReport:
    """What ``verify()`` found (and, with ``fix``, removed), as paths relative to the cache."""

    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    orphan_temp_files: list[str] = field(default_factory=list)
    empty_dirs: list[str] = field(default_factory=list)
    foreign_files: list[str] = field(default_factory=list)
    fixed: bool = False

    @property
    def ok(self) -> bool:
        """No damage: no corrupt entry and no orphan temp file (empty directories are only
        housekeeping: writers racing a cleanup can leave some, and ``fix`` removes them)."""
        return not (self.corrupt or self.orphan_temp_files)

    @property
    def clean(self) -> bool:
        """:attr:`ok`, and no empty shard directory either."""
        return self.ok and not self.empty_dirs


# -- walking the tree ---------------------------------------------------------------------------


@contextlib.contextmanager
def _open_root(store: FileStore) -> Iterator[int | None]:
    try:
        fd = os.open(store.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def scan_shard(root_fd: int, outer: str) -> ShardScan:
    """List one top-level shard's entries, temp files, foreign files and empty directories."""
    scan = ShardScan(outer)
    try:
        outer_fd = os.open(outer, _DIR_FLAGS, dir_fd=root_fd)
    except OSError:
        return scan
    try:
        inners = shard_names(outer_fd)
        for inner in inners:
            try:
                inner_fd = os.open(inner, _DIR_FLAGS, dir_fd=outer_fd)
            except OSError:
                continue
            prefix, found = outer + inner, False
            try:
                with os.scandir(inner_fd) as it:
                    for item in it:
                        found = True
                        _classify(scan, prefix, item)
            finally:
                os.close(inner_fd)
            if not found:
                scan.empty_dirs.append(f"{outer}/{inner}")
        if not inners and not _has_other_files(outer_fd):
            scan.empty_dirs.append(outer)
    finally:
        os.close(outer_fd)
    return scan


def _has_other_files(outer_fd: int) -> bool:
    with os.scandir(outer_fd) as it:
        return any(i.name != COUNTER_NAME for i in it)


def _classify(scan: ShardScan, prefix: str, item: os.DirEntry[str]) -> None:
    path = f"{prefix[:2]}/{prefix[2:]}/{item.name}"
    own = own_file_kind(item.name, prefix)
    try:
        st = item.stat(follow_symlinks=False)
    except FileNotFoundError:
        return
    if own is None or not stat.S_ISREG(st.st_mode):
        scan.foreign.append(path)
        return
    kind, key = own
    info = FileInfo(path, st.st_size, st.st_mtime, key)
    (scan.entries if kind == "entry" else scan.temps).append(info)


def _remove(store: FileStore, info: FileInfo) -> bool:
    """Remove an entry or temp file unless it changed since it was scanned (replaced or used)."""
    path = os.path.join(store.root, info.path)
    try:
        st = os.stat(path, follow_symlinks=False)
        if st.st_mtime != info.mtime or st.st_size != info.size:
            return False  # replaced or used since the scan: not the file we meant to remove
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _remove_empty_dirs(root_fd: int, outer: str) -> int:
    """Remove the empty directories of one shard, and the shard itself if nothing is left.

    A writer whose directory is removed under it starts its write again.
    """
    removed = 0
    try:
        outer_fd = os.open(outer, _DIR_FLAGS, dir_fd=root_fd)
    except OSError:
        return 0
    try:
        for inner in shard_names(outer_fd):
            with contextlib.suppress(OSError):  # not empty
                os.rmdir(inner, dir_fd=outer_fd)
                removed += 1
        with os.scandir(outer_fd) as it:
            left = [item.name for item in it]
        if left == [COUNTER_NAME]:
            os.unlink(COUNTER_NAME, dir_fd=outer_fd)
    finally:
        os.close(outer_fd)
    with contextlib.suppress(OSError):
        os.rmdir(outer, dir_fd=root_fd)
        removed += 1
    return removed


def _write_exact_counter(root_fd: int, outer: str, size: int, count: int) -> None:
    with contextlib.suppress(OSError):
        outer_fd = os.open(outer, _DIR_FLAGS, dir_fd=root_fd)
        try:
            write_counter(outer_fd, size, count)
        finally:
            os.close(outer_fd)


# -- automatic cleanup --------------------------------------------------------------------------


@contextlib.contextmanager
def _cleanup_lock(store: FileStore, *, wait: bool) -> Iterator[bool]:
    """Hold the cache's cleanup lock; yields False (without waiting) if another process has it."""
    os.makedirs(store.root, mode=0o775, exist_ok=True)
    path = os.path.join(store.root, CLEANUP_LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def cleanup(store: FileStore, limit: int) -> int | None:
    """Evict least recently used entries to 90 % of ``limit`` if the cache is over it.

    Returns the cache's size as counted afterwards, or None if another process holds the lock.
    """
    with _cleanup_lock(store, wait=False) as locked, _open_root(store) as root_fd:
        if not locked or root_fd is None:
            return None
        outers = shard_names(root_fd)
        counters = {}
        for outer in outers:
            with contextlib.suppress(OSError):
                outer_fd = os.open(outer, _DIR_FLAGS, dir_fd=root_fd)
                try:
                    counters[outer] = read_counter(outer_fd)
                finally:
                    os.close(outer_fd)
        total = sum(size for size, _count in counters.values())
        if total <= limit:
            return total
        entries = sum(count for _size, count in counters.values())
        if entries <= FULL_SCAN_ENTRIES:
            report = _evict_globally(store, root_fd, outers, int(limit * TRIM_TO), max_age=None)
        else:
            report = _trim_fullest_shards(store, root_fd, counters, limit)
        log.info("cache cleanup removed %d entries (%d bytes)", report.entries, report.bytes)
        return total - report.bytes


def _trim_fullest_shards(
    store: FileStore, root_fd: int, counters: dict[str, tuple[int, int]], limit: int
) -> PruneReport:
    report = PruneReport()
    share = limit * TRIM_TO / SHARDS
    total = sum(size for size, _count in counters.values())
    now = time.time()
    for outer, (counted, _count) in sorted(counters.items(), key=lambda kv: -kv[1][0]):
        if total <= limit * TRIM_TO or counted <= share:
            break
        scan = scan_shard(root_fd, outer)
        size = scan.size
        for info in sorted(scan.entries, key=lambda e: e.mtime):
            if size <= share:
                break
            if _remove(store, info):
                size -= info.size
                report.entries += 1
                report.bytes += info.size
        report.temp_files += _remove_orphans(store, scan, now)
        kept = [e for e in scan.entries if os.path.lexists(os.path.join(store.root, e.path))]
        _write_exact_counter(root_fd, outer, sum(e.size for e in kept), len(kept))
        report.empty_dirs += _remove_empty_dirs(root_fd, outer)
        total -= counted - size
    return report


def _remove_orphans(store: FileStore, scan: ShardScan, now: float) -> int:
    return sum(1 for t in scan.temps if now - t.mtime > ORPHAN_AGE and _remove(store, t))


def _evict_globally(
    store: FileStore,
    root_fd: int,
    outers: list[str],
    max_bytes: int | None,
    max_age: float | None,
    progress: Progress | None = None,
) -> PruneReport:
    """Scan every shard; remove orphans, entries unused for ``max_age``, then LRU to max_bytes."""
    report = PruneReport()
    now = time.time()
    scans = []
    for index, outer in enumerate(outers):
        scan = scan_shard(root_fd, outer)
        report.temp_files += _remove_orphans(store, scan, now)
        scans.append(scan)
        if progress:
            progress(index + 1, len(outers) * 2)
    entries = sorted((e for scan in scans for e in scan.entries), key=lambda e: e.mtime)
    total = sum(e.size for e in entries)
    removed: set[str] = set()
    for info in entries:
        too_old = max_age is not None and now - info.mtime > max_age
        if not too_old and (max_bytes is None or total <= max_bytes):
            break
        if _remove(store, info):
            removed.add(info.path)
            total -= info.size
            report.entries += 1
            report.bytes += info.size
    for index, scan in enumerate(scans):
        kept = [e for e in scan.entries if e.path not in removed]
        _write_exact_counter(root_fd, scan.outer, sum(e.size for e in kept), len(kept))
        if len(kept) < len(scan.entries) or scan.empty_dirs:
            report.empty_dirs += _remove_empty_dirs(root_fd, scan.outer)
        if progress:
            progress(len(outers) + index + 1, len(outers) * 2)
    return report


# -- on demand ----------------------------------------------------------------------------------


def prune(
    store: FileStore,
    max_size_bytes: int | None = None,
    max_age: float | None = None,
    progress: Progress | None = None,
) -> PruneReport:
    """Remove entries unused for ``max_age`` seconds, then LRU down to ``max_size_bytes``.

    Also removes temp files of dead writers (older than an hour) and empty shard directories, and
    rewrites every shard counter with exact figures. Waits for a cleanup in another process.
    """
    if max_size_bytes is not None and max_size_bytes < 0:
        raise InvalidOptionError("max_size_bytes must be >= 0")
    if max_age is not None and max_age < 0:
        raise InvalidOptionError("max_age must be >= 0")
    with _cleanup_lock(store, wait=True), _open_root(store) as root_fd:
        if root_fd is None:
            return PruneReport()
        outers = shard_names(root_fd)
        return _evict_globally(store, root_fd, outers, max_size_bytes, max_age, progress)


def verify(store: FileStore, fix: bool = False, progress: Progress | None = None) -> VerifyReport:
    """Check every entry's format and checksum; report (and with ``fix`` remove) damage.

    Reports corrupt entries, temp files older than an hour, empty shard directories and foreign
    files (which are never removed: they are not the cache's).
    """
    report = VerifyReport(fixed=fix)
    now = time.time()
    with _open_root(store) as root_fd:
        if root_fd is None:
            return report
        outers = shard_names(root_fd)
        for index, outer in enumerate(outers):
            scan = scan_shard(root_fd, outer)
            bad: list[FileInfo] = []
            for info in scan.entries:
                report.checked += 1
                if not _entry_is_whole(store, info):
                    report.corrupt.append(info.path)
                    bad.append(info)
            orphans = [t for t in scan.temps if now - t.mtime > ORPHAN_AGE]
            report.orphan_temp_files += [t.path for t in orphans]
            report.empty_dirs += scan.empty_dirs
            report.foreign_files += scan.foreign
            if fix:
                for info in bad + orphans:
                    _remove(store, info)
                _remove_empty_dirs(root_fd, outer)
                kept = [e for e in scan.entries if e not in bad]
                _write_exact_counter(root_fd, outer, sum(e.size for e in kept), len(kept))
            if progress:
                progress(index + 1, len(outers))
    return report


def _entry_is_whole(store: FileStore, info: FileInfo) -> bool:
    codec = CODECS["flac" if info.path.endswith(".flac") else "wav"]
    try:
        fd = os.open(
            os.path.join(store.root, info.path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        )
    except FileNotFoundError:
        return True  # removed since the scan
    except OSError:
        return False
    try:
        entry = codec.decode(_read_exactly(fd, os.fstat(fd).st_size))
        return entry.meta.key == info.key
    except (CorruptEntryError, OSError):
        return False
    finally:
        os.close(fd)


def stats(store: FileStore, progress: Progress | None = None) -> CacheStats:
    """Count entries and bytes, and find the least and most recently used entry (a full scan)."""
    entries = size = temps = 0
    oldest: float | None = None
    newest: float | None = None
    with _open_root(store) as root_fd:
        if root_fd is None:
            return CacheStats(0, 0, None, None, 0)
        outers = shard_names(root_fd)
        for index, outer in enumerate(outers):
            scan = scan_shard(root_fd, outer)
            entries += len(scan.entries)
            size += scan.size
            temps += len(scan.temps)
            for info in scan.entries:
                oldest = info.mtime if oldest is None else min(oldest, info.mtime)
                newest = info.mtime if newest is None else max(newest, info.mtime)
            if progress:
                progress(index + 1, len(outers))
    return CacheStats(entries, size, oldest, newest, temps)


def list_shards(store: FileStore) -> list[str]:
    """The top-level shard directories of the cache, sorted."""
    with _open_root(store) as root_fd:
        return [] if root_fd is None else shard_names(root_fd)


def shard_entries(store: FileStore, outer: str) -> list[FileInfo]:
    """The entries under one top-level shard (for listing)."""
    with _open_root(store) as root_fd:
        return [] if root_fd is None else scan_shard(root_fd, outer).entries
