"""The size limit: evicting the least recently used entries when a cache grows past it.

Eviction is least-recently-used by file modification time (a hit refreshes it, at most once a
minute). Cleanup is taken by one process at a time through ``<root>/cleanup.lock``, which nobody
waits for: a process that finds it held skips cleanup. Its cost does not grow with the whole cache:
a writer checks only its own shard's counter; when that shard holds more than its 1/256 share, the
256 counters are summed and, if the cache is over its limit, the fullest shards are trimmed to 90 %
of their share, oldest entries first (as ccache does). A small cache (under 20,000 entries) is
scanned whole instead and trimmed to 90 % of the limit in exact LRU order.

Eviction removes entries and temp files of dead writers anywhere (names only the cache writes), and
empty shard directories only in a directory that is the cache's (see ``ownership``): a cleanup
adopts an unmarked directory that holds nothing but the cache's own layout, and trims one that
holds anything else without removing a directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from . import layout as layout
from . import ownership as ownership
from . import walk as walk
from .counters import read_counter
from .layout import CLEANUP_LOCK, SHARDS, UnusablePath, shard_names

__all__ = ["PruneReport", "SizeLimit", "cleanup", "cleanup_lock", "evict"]

log = logging.getLogger("sparktts_cache")

#: Temp files older than this belong to writers that died; cleanup removes them.
ORPHAN_AGE = 3600.0
#: Below this many entries a cleanup scans the whole cache and evicts in exact LRU order.
FULL_SCAN_ENTRIES = 20_000
#: Cleanup trims to this fraction of the limit.
TRIM_TO = 0.9
#: How long a process trusts the cache size it last counted, when others may be writing too.
RECHECK_SECONDS = 2.0


@dataclass
class PruneReport:
    """What a prune (or an automatic cleanup) removed."""

    entries: int = 0
    bytes: int = 0
    temp_files: int = 0
    empty_dirs: int = 0

    def count_removed(self, entry: walk.FileInfo) -> None:
        self.entries += 1
        self.bytes += entry.size


class SizeLimit:
    """The size-limit policy of one cache directory, as one process applies it after its writes.

    A writer reports its shard's new size (from the shard's counter) after each write. When the
    shard holds more than its 1/256 share, the whole cache's size is checked, unless this process
    cannot have filled the headroom found at its last check (and that check is recent: other
    processes write too); over the limit, :func:`cleanup` evicts. A process's first write always
    checks, so that a cache made before ``CACHEDIR.TAG`` is adopted (and its old counters
    recounted) by the first process that writes to it, not once new counters have grown.
    """

    __slots__ = ("_adopt", "_check_after", "max_bytes", "root")

    def __init__(self, root: str, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        #: (bytes this process may still write, monotonic deadline) before the next check; None
        #: until the first check.
        self._check_after: tuple[int, float] | None = None
        #: Whether a cleanup may try to adopt an unmarked directory: False once one found files
        #: that are not the cache's there (this process does not survey it again).
        self._adopt = True

    def after_write(self, shard_bytes: int | None, written: int) -> None:
        """Clean up if this write may have taken the cache over its limit.

        ``shard_bytes`` is the shard's size from its counter, or None if its counter is unusable
        (then the whole cache is checked, and that shard counted by scanning it).
        """
        if self._check_after is not None:
            if shard_bytes is not None and shard_bytes <= self.max_bytes / SHARDS:
                return
            headroom, deadline = self._check_after
            headroom -= written
            if headroom > 0 and time.monotonic() < deadline:
                self._check_after = (headroom, deadline)
                return
        total = self.cleanup_if_over()
        if total is not None:
            self._check_after = (self.max_bytes - total, time.monotonic() + RECHECK_SECONDS)
        elif self._check_after is None:
            self._check_after = (0, 0.0)

    def cleanup_if_over(self) -> int | None:
        """Evict to 90 % of the limit if over it; skipped if another process is at it.

        Returns the cache's size afterwards as counted, or None if the check was skipped. Never
        raises: a failure (the cleanup lock's path taken by a directory, say) is logged.
        """
        try:
            total, foreign = cleanup(self.root, self.max_bytes, adopt=self._adopt)
        except OSError as exc:
            log.warning("cache cleanup failed, the size limit is not enforced: %s", exc)
            return None
        if foreign:
            self._adopt = False
            log.warning(
                "%s is not marked as a cache directory (no CACHEDIR.TAG) and holds files that are "
                "not the cache's (%s): eviction there removes entries and temp files only, never "
                "a directory",
                self.root,
                ", ".join(foreign[:3]),
            )
        return total


@contextlib.contextmanager
def cleanup_lock(root_fd: int, *, wait: bool) -> Iterator[bool]:
    """Hold the cache's cleanup lock; yields False (without waiting) if another process has it.

    What occupies ``cleanup.lock`` if it is not a regular file (a FIFO, a directory) is removed
    in a marked directory (an empty directory only); elsewhere it may be a user's, and
    :class:`~sparktts_cache._file.layout.UnusablePath` is raised.
    """
    try:
        fd = layout.open_own_file(CLEANUP_LOCK, root_fd, heal=False)
    except UnusablePath:
        if not layout.is_marked(root_fd):
            raise
        fd = layout.open_own_file(CLEANUP_LOCK, root_fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _read_counters(root_fd: int, outers: list[str]) -> dict[str, tuple[int, int]]:
    """The (bytes, entries) of each shard from its counter; a shard whose counter is unusable (a
    directory that is not empty at its name) is scanned instead, so the limit still holds."""
    counters = {}
    for outer in outers:
        with contextlib.suppress(OSError), layout.opened_dir_or_none(outer, root_fd) as outer_fd:
            if outer_fd is not None:
                try:
                    counters[outer] = read_counter(outer_fd)
                except UnusablePath:
                    scan = walk.scan_shard(root_fd, outer)
                    counters[outer] = (scan.size, len(scan.entries))
    return counters


def cleanup(root: str, limit: int, *, adopt: bool = True) -> tuple[int | None, list[str]]:
    """Evict least recently used entries to 90 % of ``limit`` if the cache is over it.

    An unmarked directory is first claimed (``ownership.adopt``) if ``adopt``; one that holds
    files that are not the cache's is trimmed all the same, but no directory is removed from it.

    Returns the cache's size as counted afterwards (None if another process holds the lock), and
    a few of the files found that are not the cache's if an adoption was refused.

    Raises:
        UnusablePath: if ``cleanup.lock`` cannot be used (see :func:`cleanup_lock`).
    """
    with layout.opened_root(root) as root_fd:
        if root_fd is None:
            return None, []
        with cleanup_lock(root_fd, wait=False) as locked:
            if not locked:
                return None, []
            tidy = layout.is_marked(root_fd)
            foreign: list[str] = []
            if not tidy and adopt:
                foreign = ownership.adopt(root_fd)
                tidy = not foreign
            outers = shard_names(root_fd)
            counters = _read_counters(root_fd, outers)
            total = sum(size for size, _count in counters.values())
            if total <= limit:
                return total, foreign
            entries = sum(count for _size, count in counters.values())
            if entries <= FULL_SCAN_ENTRIES:
                report = evict(root_fd, outers, int(limit * TRIM_TO), max_age=None, tidy=tidy)
            else:
                report = _trim_fullest_shards(root_fd, counters, limit, tidy=tidy)
            log.info("cache cleanup removed %d entries (%d bytes)", report.entries, report.bytes)
            return total - report.bytes, foreign


def _trim_fullest_shards(
    root_fd: int, counters: dict[str, tuple[int, int]], limit: int, *, tidy: bool
) -> PruneReport:
    report = PruneReport()
    share = limit * TRIM_TO / SHARDS
    total = sum(size for size, _count in counters.values())
    now = time.time()
    for outer, (counted, _count) in sorted(counters.items(), key=lambda kv: -kv[1][0]):
        if total <= limit * TRIM_TO or counted <= share:
            break
        scan = walk.scan_shard(root_fd, outer)
        size = scan.size
        gone: set[str] = set()
        for info in sorted(scan.entries, key=lambda e: e.mtime):
            if size <= share:
                break
            if walk.remove_unchanged(root_fd, info):
                size -= info.size
                report.count_removed(info)
                gone.add(info.path)
        report.temp_files += _remove_orphans(root_fd, scan, now)
        walk.write_exact_counter(root_fd, outer, [e for e in scan.entries if e.path not in gone])
        if tidy:
            report.empty_dirs += walk.remove_empty_dirs(root_fd, outer)
        total -= counted - size
    return report


def _remove_orphans(root_fd: int, scan: walk.ShardScan, now: float) -> int:
    return sum(
        1 for t in scan.temps if now - t.mtime > ORPHAN_AGE and walk.remove_unchanged(root_fd, t)
    )


def evict(
    root_fd: int,
    outers: list[str],
    max_bytes: int | None,
    max_age: float | None,
    progress: walk.Progress | None = None,
    *,
    tidy: bool = True,
) -> PruneReport:
    """Scan every shard; remove orphans, entries unused for ``max_age``, then LRU to max_bytes,
    and (if ``tidy``: in a marked directory) empty shard directories."""
    report = PruneReport()
    now = time.time()
    scans = []
    for index, outer in enumerate(outers):
        scan = walk.scan_shard(root_fd, outer)
        report.temp_files += _remove_orphans(root_fd, scan, now)
        scans.append(scan)
        if progress:
            progress(index + 1, len(outers) * 2)
    entries = sorted((e for scan in scans for e in scan.entries), key=lambda e: e.mtime)
    total = sum(e.size for e in entries)
    gone: set[str] = set()
    for info in entries:
        too_old = max_age is not None and now - info.mtime > max_age
        if not too_old and (max_bytes is None or total <= max_bytes):
            break
        if walk.remove_unchanged(root_fd, info):
            gone.add(info.path)
            total -= info.size
            report.count_removed(info)
    for index, scan in enumerate(scans):
        kept = [e for e in scan.entries if e.path not in gone]
        walk.write_exact_counter(root_fd, scan.outer, kept)
        if tidy and (len(kept) < len(scan.entries) or scan.empty_dirs):
            report.empty_dirs += walk.remove_empty_dirs(root_fd, scan.outer)
        if progress:
            progress(len(outers) + index + 1, len(outers) * 2)
    return report
