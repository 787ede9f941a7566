"""Keeping a cache healthy for months: size limits, eviction, pruning, verification, statistics.

Eviction is least-recently-used by file modification time (a hit refreshes it, at most once a
minute). Cleanup is taken by one process at a time through ``<root>/cleanup.lock``, which nobody
waits for: a process that finds it held skips cleanup. Its cost does not grow with the whole cache:
a writer checks only its own shard's counter; when that shard holds more than its 1/256 share, the
256 counters are summed and, if the cache is over its limit, the fullest shards are trimmed to 90 %
of their share, oldest entries first (as ccache does). A small cache (under 20,000 entries) is
scanned whole instead and trimmed to 90 % of the limit in exact LRU order.

Maintenance removes only what the cache wrote: entries, temp files and counters (named so that no
other program's file is taken for one), and empty shard directories only in a directory marked as
a cache (``CACHEDIR.TAG``, see ``layout``). :func:`claim` marks a directory that holds nothing but
the cache's own layout (a cache made before the tag: its old ``stats`` counters are recounted under
the new name); ``clear``, :func:`prune` and :func:`verify` with ``fix`` refuse to run in an unmarked
directory holding anything else (:class:`~sparktts_cache.NotACacheDirectoryError`), and automatic
eviction there removes entries and temp files but no directory. No maintenance operation fails
because another process (a concurrent ``clear``) removed a file first.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .._core.codec import CODECS
from .._core.errors import CorruptEntryError, InvalidOptionError, NotACacheDirectoryError
from . import layout as layout
from .counters import read_counter, write_counter
from .layout import (
    CLEANUP_LOCK,
    COUNTER_NAME,
    LOCKS_DIR,
    OLD_COUNTER_NAME,
    SHARDS,
    UnusablePath,
    shard_names,
)

__all__ = [
    "CacheStats",
    "FileInfo",
    "PruneReport",
    "SizeLimit",
    "VerifyReport",
    "claim",
    "cleanup",
    "list_shards",
    "prune",
    "require_cache_directory",
    "shard_entries",
    "stats",
    "verify",
]

log = logging.getLogger("sparktts_cache")

#: Temp files older than this belong to writers that died; cleanup removes them.
ORPHAN_AGE = 3600.0
#: Below this many entries a cleanup scans the whole cache and evicts in exact LRU order.
FULL_SCAN_ENTRIES = 20_000
#: Cleanup trims to this fraction of the limit.
TRIM_TO = 0.9
#: How long a process trusts the cache size it last counted, when others may be writing too.
RECHECK_SECONDS = 2.0
#: How many files that are not the cache's a refusal names (the survey stops there).
FOREIGN_EXAMPLES = 5

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

    @property
    def shard(self) -> tuple[str, str]:
        """The names of its outer and inner shard directories."""
        return self.path[:2], self.path[3:5]


@dataclass
class ShardScan:
    """What one top-level shard holds."""

    outer: str
    entries: list[FileInfo] = field(default_factory=list)
    temps: list[FileInfo] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    empty_dirs: list[str] = field(default_factory=list)
    #: Something other than a counter at the counter's name (a FIFO, a directory, a hard link).
    squatters: list[str] = field(default_factory=list)
    #: Whether it holds a counter of a cache made before ``CACHEDIR.TAG`` (``stats``).
    old_counter: bool = False

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

    def count_removed(self, entry: FileInfo) -> None:
        self.entries += 1
        self.bytes += entry.size


@dataclass
class VerifyReport:
    """What ``verify()`` found (and, with ``fix``, removed), as paths relative to the cache."""

    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    orphan_temp_files: list[str] = field(default_factory=list)
    empty_dirs: list[str] = field(default_factory=list)
    foreign_files: list[str] = field(default_factory=list)
    #: Paths of the cache's own small files (counters, ``cleanup.lock``, ``locks/`` and its lock
    #: files) occupied by something it cannot use: a directory, FIFO, symlink or hard-linked file.
    #: ``fix`` removes them, but a directory only if it is empty.
    squatters: list[str] = field(default_factory=list)
    fixed: bool = False

    @property
    def ok(self) -> bool:
        """No damage: no corrupt entry, orphan temp file or squatter (empty directories are only
        housekeeping: writers racing a cleanup can leave some, and ``fix`` removes them)."""
        return not (self.corrupt or self.orphan_temp_files or self.squatters)

    @property
    def clean(self) -> bool:
        """:attr:`ok`, and no empty shard directory either."""
        return self.ok and not self.empty_dirs


# -- walking the tree ---------------------------------------------------------------------------


def scan_shard(root_fd: int, outer: str) -> ShardScan:
    """List one top-level shard's entries, temp files, foreign files, squatters and empty
    directories."""
    scan = ShardScan(outer)
    with layout.opened_dir_or_none(outer, root_fd) as outer_fd:
        if outer_fd is None:
            return scan
        inners, others = _classify_outer(scan, outer_fd)
        for inner in inners:
            with layout.opened_dir_or_none(inner, outer_fd) as inner_fd:
                if inner_fd is None:
                    continue
                prefix, found = outer + inner, False
                with os.scandir(inner_fd) as it:
                    for item in it:
                        found = True
                        _classify(scan, prefix, item)
            if not found:
                scan.empty_dirs.append(f"{outer}/{inner}")
        if not inners and not others:
            scan.empty_dirs.append(outer)
    return scan


def _classify_outer(scan: ShardScan, outer_fd: int) -> tuple[list[str], bool]:
    """The inner shard directories of a top-level shard, sorted, and whether it holds anything
    else than them and its counters (foreign files, squatters)."""
    inners: list[str] = []
    others = False
    with os.scandir(outer_fd) as it:
        items = list(it)
    for item in items:
        name = item.name
        if layout.is_shard_name(name) and item.is_dir(follow_symlinks=False):
            inners.append(name)
        elif name == COUNTER_NAME:
            if not _is_usable_counter(item):
                scan.squatters.append(f"{scan.outer}/{name}")
                others = True
        elif name == OLD_COUNTER_NAME and layout.is_old_counter(outer_fd):
            scan.old_counter = True
        else:
            scan.foreign.append(f"{scan.outer}/{name}")
            others = True
    inners.sort()
    return inners, others


def _is_usable_counter(item: os.DirEntry[str]) -> bool:
    try:
        st = item.stat(follow_symlinks=False)
    except FileNotFoundError:
        return True  # removed since the listing: nothing is in the way
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def _classify(scan: ShardScan, prefix: str, item: os.DirEntry[str]) -> None:
    path = f"{prefix[:2]}/{prefix[2:]}/{item.name}"
    own = layout.own_file_kind(item.name, prefix)
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


def _remove(root_fd: int, info: FileInfo) -> bool:
    """Remove a scanned file unless it changed since the scan (replaced or used).

    Works through the shard directories' descriptors, which refuse symlinks: a shard swapped for
    a symlink after the scan is skipped, never followed.
    """
    with layout.opened_shard_or_none(root_fd, *info.shard) as inner_fd:
        return inner_fd is not None and _remove_unchanged(inner_fd, info)


def _remove_unchanged(dir_fd: int, info: FileInfo) -> bool:
    try:
        st = os.stat(info.name, dir_fd=dir_fd, follow_symlinks=False)
        if st.st_mtime != info.mtime or st.st_size != info.size or not stat.S_ISREG(st.st_mode):
            return False  # replaced or used since the scan: not the file we meant to remove
        os.unlink(info.name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _remove_empty_dirs(root_fd: int, outer: str) -> int:
    """Remove the empty directories of one shard, and the shard itself if nothing is left.

    A writer whose directory is removed under it starts its write again.
    """
    removed = 0
    with layout.opened_dir_or_none(outer, root_fd) as outer_fd:
        if outer_fd is None:
            return 0
        for inner in shard_names(outer_fd):
            with contextlib.suppress(OSError):  # not empty
                os.rmdir(inner, dir_fd=outer_fd)
                removed += 1
        with os.scandir(outer_fd) as it:
            left = {item.name for item in it}
        if (
            left
            and left <= {COUNTER_NAME, OLD_COUNTER_NAME}
            and (OLD_COUNTER_NAME not in left or layout.is_old_counter(outer_fd))
        ):
            for name in left:
                with contextlib.suppress(OSError):  # a concurrent clear was first
                    os.unlink(name, dir_fd=outer_fd)
    with contextlib.suppress(OSError):
        os.rmdir(outer, dir_fd=root_fd)
        removed += 1
    return removed


def _write_exact_counter(root_fd: int, outer: str, kept: list[FileInfo]) -> None:
    """Write a scanned shard's exact figures to its counter; a shard left with no entries has
    none (so none is created in a directory that holds no entry of the cache's)."""
    with contextlib.suppress(OSError), layout.opened_dir_or_none(outer, root_fd) as outer_fd:
        if outer_fd is None:
            return
        if kept:
            write_counter(outer_fd, sum(e.size for e in kept), len(kept))
        else:
            layout.remove_by_name(COUNTER_NAME, outer_fd)


# -- automatic cleanup --------------------------------------------------------------------------


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
def _cleanup_lock(root_fd: int, *, wait: bool) -> Iterator[bool]:
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
                    scan = scan_shard(root_fd, outer)
                    counters[outer] = (scan.size, len(scan.entries))
    return counters


def cleanup(root: str, limit: int, *, adopt: bool = True) -> tuple[int | None, list[str]]:
    """Evict least recently used entries to 90 % of ``limit`` if the cache is over it.

    An unmarked directory is first claimed (:func:`claim`) if ``adopt``; one that holds files that
    are not the cache's is trimmed all the same, but no directory is removed from it.

    Returns the cache's size as counted afterwards (None if another process holds the lock), and
    a few of the files found that are not the cache's if an adoption was refused.

    Raises:
        UnusablePath: if ``cleanup.lock`` cannot be used (see :func:`_cleanup_lock`).
    """
    with layout.opened_root(root) as root_fd:
        if root_fd is None:
            return None, []
        with _cleanup_lock(root_fd, wait=False) as locked:
            if not locked:
                return None, []
            tidy = layout.is_marked(root_fd)
            foreign: list[str] = []
            if not tidy and adopt:
                foreign = _adopt(root_fd)
                tidy = not foreign
            outers = shard_names(root_fd)
            counters = _read_counters(root_fd, outers)
            total = sum(size for size, _count in counters.values())
            if total <= limit:
                return total, foreign
            entries = sum(count for _size, count in counters.values())
            if entries <= FULL_SCAN_ENTRIES:
                report = _evict_globally(
                    root_fd, outers, int(limit * TRIM_TO), max_age=None, tidy=tidy
                )
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
        scan = scan_shard(root_fd, outer)
        size = scan.size
        gone: set[str] = set()
        for info in sorted(scan.entries, key=lambda e: e.mtime):
            if size <= share:
                break
            if _remove(root_fd, info):
                size -= info.size
                report.count_removed(info)
                gone.add(info.path)
        report.temp_files += _remove_orphans(root_fd, scan, now)
        _write_exact_counter(root_fd, outer, [e for e in scan.entries if e.path not in gone])
        if tidy:
            report.empty_dirs += _remove_empty_dirs(root_fd, outer)
        total -= counted - size
    return report


def _remove_orphans(root_fd: int, scan: ShardScan, now: float) -> int:
    return sum(1 for t in scan.temps if now - t.mtime > ORPHAN_AGE and _remove(root_fd, t))


def _evict_globally(
    root_fd: int,
    outers: list[str],
    max_bytes: int | None,
    max_age: float | None,
    progress: Progress | None = None,
    *,
    tidy: bool = True,
) -> PruneReport:
    """Scan every shard; remove orphans, entries unused for ``max_age``, then LRU to max_bytes,
    and (if ``tidy``: in a marked directory) empty shard directories."""
    report = PruneReport()
    now = time.time()
    scans = []
    for index, outer in enumerate(outers):
        scan = scan_shard(root_fd, outer)
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
        if _remove(root_fd, info):
            gone.add(info.path)
            total -= info.size
            report.count_removed(info)
    for index, scan in enumerate(scans):
        kept = [e for e in scan.entries if e.path not in gone]
        _write_exact_counter(root_fd, scan.outer, kept)
        if tidy and (len(kept) < len(scan.entries) or scan.empty_dirs):
            report.empty_dirs += _remove_empty_dirs(root_fd, scan.outer)
        if progress:
            progress(len(outers) + index + 1, len(outers) * 2)
    return report


# -- on demand ----------------------------------------------------------------------------------


def prune(
    root: str,
    max_size_bytes: int | None = None,
    max_age: float | None = None,
    progress: Progress | None = None,
) -> PruneReport:
    """Remove entries unused for ``max_age`` seconds, then LRU down to ``max_size_bytes``.

    Also removes temp files of dead writers (older than an hour) and empty shard directories, and
    rewrites every shard counter with exact figures. Waits for a cleanup in another process.

    Raises:
        InvalidOptionError: for a negative size or age.
        NotACacheDirectoryError: if the directory is not marked as a cache and holds files that
            are not the cache's (nothing is removed; see :func:`claim`).
    """
    if max_size_bytes is not None and max_size_bytes < 0:
        raise InvalidOptionError(f"max_size_bytes must be >= 0, got {max_size_bytes}")
    if max_age is not None and max_age < 0:
        raise InvalidOptionError(f"max_age must be >= 0, got {max_age}")
    with layout.opened_root(root) as root_fd:
        if root_fd is None:
            return PruneReport()
        require_cache_directory(root_fd, root, "prune")
        with _cleanup_lock(root_fd, wait=True):
            outers = shard_names(root_fd)
            return _evict_globally(root_fd, outers, max_size_bytes, max_age, progress)


def verify(root: str, fix: bool = False, progress: Progress | None = None) -> VerifyReport:
    """Check every entry's format and checksum; report (and with ``fix`` remove) damage.

    Reports corrupt entries, temp files older than an hour, empty shard directories, squatters at
    the paths of the cache's own files, and foreign files (which are never removed: they are not
    the cache's).

    Raises:
        NotACacheDirectoryError: with ``fix``, if the directory is not marked as a cache and holds
            files that are not the cache's (nothing is removed; see :func:`claim`).
    """
    report = VerifyReport(fixed=fix)
    now = time.time()
    with layout.opened_root(root) as root_fd:
        if root_fd is None:
            return report
        if fix:
            require_cache_directory(root_fd, root, "repair")
        outers, report.foreign_files, report.squatters = _classify_root(root_fd)
        if fix:
            for path in report.squatters:
                _remove_squatter(root_fd, path)
        for index, outer in enumerate(outers):
            scan = scan_shard(root_fd, outer)
            bad: list[FileInfo] = []
            for info in scan.entries:
                report.checked += 1
                if not _entry_is_whole(root_fd, info):
                    report.corrupt.append(info.path)
                    bad.append(info)
            orphans = [t for t in scan.temps if now - t.mtime > ORPHAN_AGE]
            report.orphan_temp_files += [t.path for t in orphans]
            report.empty_dirs += scan.empty_dirs
            report.foreign_files += scan.foreign
            report.squatters += scan.squatters
            if fix:
                for info in bad + orphans:
                    _remove(root_fd, info)
                for path in scan.squatters:
                    _remove_squatter(root_fd, path)
                _write_exact_counter(root_fd, outer, [e for e in scan.entries if e not in bad])
                _remove_empty_dirs(root_fd, outer)
            if progress:
                progress(index + 1, len(outers))
    return report


def _remove_squatter(root_fd: int, path: str) -> None:
    """Remove what occupies one of the cache's own paths (a directory only if empty)."""
    *parents, name = path.split("/")
    with contextlib.ExitStack() as stack:
        dir_fd = root_fd
        for part in parents:
            opened = stack.enter_context(layout.opened_dir_or_none(part, dir_fd))
            if opened is None:
                return
            dir_fd = opened
        with contextlib.suppress(OSError):  # gone, or a directory that is not empty: reported
            layout.remove_by_name(name, dir_fd)


# -- whose directory is it ----------------------------------------------------------------------


def _classify_root(root_fd: int) -> tuple[list[str], list[str], list[str]]:
    """The shard directories in the cache directory (sorted), the files there that are not the
    cache's, and the squatters at the paths of its own files (``cleanup.lock``, ``locks/``)."""
    outers: list[str] = []
    foreign: list[str] = []
    squatters: list[str] = []
    with os.scandir(root_fd) as it:
        items = list(it)
    for item in items:
        name = item.name
        if layout.is_shard_name(name) and item.is_dir(follow_symlinks=False):
            outers.append(name)
        elif name == layout.MARKER_NAME:
            if not layout.is_marked(root_fd):
                foreign.append(f"{name} (without the signature)")
        elif layout.is_marker_temp_name(name) and item.is_file(follow_symlinks=False):
            pass
        elif name == CLEANUP_LOCK:
            if not item.is_file(follow_symlinks=False):
                squatters.append(name)
        elif name == LOCKS_DIR:
            if item.is_dir(follow_symlinks=False):
                _classify_locks(root_fd, foreign, squatters)
            else:
                squatters.append(name)
        else:
            foreign.append(name)
    outers.sort()
    return outers, foreign, squatters


def _classify_locks(root_fd: int, foreign: list[str], squatters: list[str]) -> None:
    with layout.opened_dir_or_none(LOCKS_DIR, root_fd) as locks_fd:
        if locks_fd is None:
            return
        with os.scandir(locks_fd) as it:
            for item in it:
                path = f"{LOCKS_DIR}/{item.name}"
                if not layout.is_lock_name(item.name):
                    foreign.append(path)
                elif not item.is_file(follow_symlinks=False):
                    squatters.append(path)


def _survey(root_fd: int) -> tuple[list[str], list[ShardScan]]:
    """What in the cache directory is not the cache's own layout (a few examples: the survey
    stops there), and, if nothing, the scans of all its shards."""
    outers, foreign, squatters = _classify_root(root_fd)
    foreign += squatters
    scans: list[ShardScan] = []
    for outer in outers:
        if len(foreign) >= FOREIGN_EXAMPLES:
            break
        scan = scan_shard(root_fd, outer)
        foreign += scan.foreign + scan.squatters
        scans.append(scan)
    return foreign[:FOREIGN_EXAMPLES], scans


def _adopt(root_fd: int) -> list[str]:
    """Mark an unmarked directory that holds nothing but the cache's own layout, recounting old
    ``stats`` counters under the new name; return a few files that are not the cache's instead
    (nothing is changed then)."""
    foreign, scans = _survey(root_fd)
    if foreign:
        return foreign
    for scan in scans:
        if scan.old_counter:
            _write_exact_counter(root_fd, scan.outer, scan.entries)
            with (
                contextlib.suppress(OSError),
                layout.opened_dir_or_none(scan.outer, root_fd) as outer_fd,
            ):
                if outer_fd is not None:
                    os.unlink(OLD_COUNTER_NAME, dir_fd=outer_fd)
    layout.mark(root_fd)
    log.info("marked a cache directory (it held nothing but the cache's own files)")
    return []


def claim(root_fd: int) -> list[str]:
    """Make sure the directory open as ``root_fd`` is the cache's before removing anything in it.

    A directory marked with ``CACHEDIR.TAG`` is. An unmarked one that holds nothing but the
    cache's own layout (or nothing at all) is adopted: marked, and the counters of a cache made
    before the tag recounted under their new name. Anything else is a few examples of the files in
    it that are not the cache's (an empty list means the directory is the cache's).

    An empty directory named like a shard cannot be told from one the cache emptied, and counts as
    the cache's.
    """
    return [] if layout.is_marked(root_fd) else _adopt(root_fd)


def require_cache_directory(root_fd: int, root: str, operation: str) -> None:
    """:func:`claim` the directory, or refuse ``operation`` in it.

    Raises:
        NotACacheDirectoryError: naming a few of the files in it that are not the cache's.
    """
    if foreign := claim(root_fd):
        raise NotACacheDirectoryError(root, operation, foreign)


def _entry_is_whole(root_fd: int, info: FileInfo) -> bool:
    """Whether the scanned entry decodes, checksum and key included (True if it is gone)."""
    codec = CODECS["flac" if info.name.endswith(".flac") else "wav"]
    with layout.opened_shard_or_none(root_fd, *info.shard) as inner_fd:
        if inner_fd is None:
            return True  # its shard is gone (or was swapped for a symlink) since the scan
        try:
            fd = os.open(info.name, layout.READ_FLAGS, dir_fd=inner_fd)
        except FileNotFoundError:
            return True  # removed since the scan
        except OSError:
            return False
    try:
        data, _st = layout.read_regular_file(fd)
        codec.decode(data, info.key)
        return True
    except (CorruptEntryError, OSError):
        return False
    finally:
        os.close(fd)


def stats(root: str, progress: Progress | None = None) -> CacheStats:
    """Count entries and bytes, and find the least and most recently used entry (a full scan)."""
    entries = size = temps = 0
    oldest: float | None = None
    newest: float | None = None
    with layout.opened_root(root) as root_fd:
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


def usage_beside_entries(root: str) -> dict[str, tuple[int, int]]:
    """Files and bytes under each top-level directory of the cache that is not a shard (the speech
    server's ``responses``), by name. Symlinks are neither followed nor counted."""
    usage: dict[str, tuple[int, int]] = {}
    with layout.opened_root(root) as root_fd:
        if root_fd is None:
            return usage
        with os.scandir(root_fd) as it:
            names = [
                i.name
                for i in it
                if not layout.is_shard_name(i.name) and i.is_dir(follow_symlinks=False)
            ]
    for name in sorted(names):
        files = size = 0
        for _, _, found, top_fd in os.fwalk(os.path.join(root, name), follow_symlinks=False):
            for file in found:
                with contextlib.suppress(OSError):  # removed meanwhile
                    st = os.stat(file, dir_fd=top_fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        files += 1
                        size += st.st_size
        usage[name] = (files, size)
    return usage


def list_shards(root: str) -> list[str]:
    """The top-level shard directories of the cache, sorted."""
    with layout.opened_root(root) as root_fd:
        return [] if root_fd is None else shard_names(root_fd)


def shard_entries(root: str, outer: str) -> list[FileInfo]:
    """The entries under one top-level shard (for listing)."""
    with layout.opened_root(root) as root_fd:
        return [] if root_fd is None else scan_shard(root_fd, outer).entries
