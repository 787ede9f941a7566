"""Maintenance on demand: prune, verify, stats and clear, each over the whole cache directory.

Each walks the tree with ``walk``, removes only what the cache wrote (entries, temp files, counters,
and empty shard directories in a directory that is the cache's: ``ownership``), and runs alongside
writers and other maintenance in any process: none fails because another process (a concurrent
``clear``) removed a file first. ``prune`` evicts as the size limit does (``eviction``), waiting
for a cleanup in another process rather than skipping.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import stat
import time
from dataclasses import dataclass, field

from .._core.errors import CorruptEntryError, InvalidOptionError
from . import layout as layout
from . import walk as walk
from .blobs import check_blob
from .eviction import ORPHAN_AGE, PruneReport, cleanup_lock, evict
from .layout import OLD_COUNTER_NAME, shard_names
from .ownership import require_cache_directory
from .store import read_entry_file

__all__ = [
    "CacheStats",
    "VerifyReport",
    "clear",
    "prune",
    "stats",
    "verify",
]

log = logging.getLogger("sparktts_cache")


@dataclass
class CacheStats:
    """What ``stats()`` reports about the cache directory (and this process's traffic)."""

    entries: int
    bytes: int
    oldest: float | None  # last use (modification time) of the least recently used entry
    newest: float | None
    temp_files: int
    blobs: int = 0  # the speech server's stored responses, and other blobs
    blob_bytes: int = 0


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


def prune(
    root: str,
    max_size_bytes: int | None = None,
    max_age: float | None = None,
    progress: walk.Progress | None = None,
) -> PruneReport:
    """Remove entries unused for ``max_age`` seconds, then LRU down to ``max_size_bytes``.

    Also removes temp files of dead writers (older than an hour) and empty shard directories, and
    rewrites every shard counter with exact figures. Waits for a cleanup in another process.

    Raises:
        InvalidOptionError: for a negative size or age.
        NotACacheDirectoryError: if the directory is not marked as a cache and holds files that
            are not the cache's (nothing is removed; see ``ownership.claim``).
    """
    if max_size_bytes is not None and max_size_bytes < 0:
        raise InvalidOptionError(f"max_size_bytes must be >= 0, got {max_size_bytes}")
    if max_age is not None and max_age < 0:
        raise InvalidOptionError(f"max_age must be >= 0, got {max_age}")
    with layout.opened_root(root) as root_fd:
        if root_fd is None:
            return PruneReport()
        require_cache_directory(root_fd, root, "prune")
        with cleanup_lock(root_fd, wait=True):
            outers = shard_names(root_fd)
            return evict(root_fd, outers, max_size_bytes, max_age, progress)


def verify(root: str, fix: bool = False, progress: walk.Progress | None = None) -> VerifyReport:
    """Check every entry's format and checksum; report (and with ``fix`` remove) damage.

    Reports corrupt entries, temp files older than an hour, empty shard directories, squatters at
    the paths of the cache's own files, and foreign files (which are never removed: they are not
    the cache's).

    Raises:
        NotACacheDirectoryError: with ``fix``, if the directory is not marked as a cache and holds
            files that are not the cache's (nothing is removed; see ``ownership.claim``).
    """
    report = VerifyReport(fixed=fix)
    now = time.time()
    with layout.opened_root(root) as root_fd:
        if root_fd is None:
            return report
        if fix:
            require_cache_directory(root_fd, root, "repair")
        outers, report.foreign_files, report.squatters = walk.scan_root(root_fd)
        if fix:
            for path in report.squatters:
                _remove_squatter(root_fd, path)
        for index, outer in enumerate(outers):
            scan = walk.scan_shard(root_fd, outer)
            bad: list[walk.FileInfo] = []
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
                    walk.remove_unchanged(root_fd, info)
                for path in scan.squatters:
                    _remove_squatter(root_fd, path)
                walk.write_exact_counter(root_fd, outer, [e for e in scan.entries if e not in bad])
                walk.remove_empty_dirs(root_fd, outer)
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


def _entry_is_whole(root_fd: int, info: walk.FileInfo) -> bool:
    """Whether the scanned entry decodes, checksum and key included, or the scanned blob is
    whole (True if it is gone)."""
    with layout.opened_shard_or_none(root_fd, *info.shard) as inner_fd:
        if inner_fd is None:
            return True  # its shard is gone (or was swapped for a symlink) since the scan
        try:
            if layout.is_blob_name(info.name):
                return _blob_is_whole(inner_fd, info.name)
            read_entry_file(inner_fd, info.name, info.key)
        except FileNotFoundError:
            return True  # removed since the scan
        except (CorruptEntryError, OSError):
            return False
    return True


def _blob_is_whole(dir_fd: int, name: str) -> bool:
    fd = os.open(name, layout.READ_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        return stat.S_ISREG(st.st_mode) and check_blob(fd, st.st_size) is not None
    finally:
        os.close(fd)


def stats(root: str, progress: walk.Progress | None = None) -> CacheStats:
    """Count entries and bytes, blobs and theirs, and find the least and most recently used entry
    (a full scan)."""
    entries = size = temps = blobs = blob_bytes = 0
    oldest: float | None = None
    newest: float | None = None
    with layout.opened_root(root) as root_fd:
        if root_fd is None:
            return CacheStats(0, 0, None, None, 0)
        outers = shard_names(root_fd)
        for index, outer in enumerate(outers):
            scan = walk.scan_shard(root_fd, outer)
            temps += len(scan.temps)
            for info in scan.entries:
                if layout.is_blob_name(info.name):
                    blobs += 1
                    blob_bytes += info.size
                    continue
                entries += 1
                size += info.size
                oldest = info.mtime if oldest is None else min(oldest, info.mtime)
                newest = info.mtime if newest is None else max(newest, info.mtime)
            if progress:
                progress(index + 1, len(outers))
    return CacheStats(entries, size, oldest, newest, temps, blobs, blob_bytes)


def clear(root: str) -> bool:
    """Remove every entry and temp file of any format, counters, and empty shard directories.

    Files the cache did not write (other names, other places, symlinks) are left alone. Returns
    False, after logging why, if something could not be removed. A writer whose shard directory or
    temp file it removes starts its write again.

    Raises:
        NotACacheDirectoryError: if the directory is not marked as a cache and holds files that
            are not the cache's (nothing is removed; see ``ownership.claim``).
    """
    ok = True
    try:
        with layout.opened_root(root) as root_fd:
            if root_fd is None:
                return True
            require_cache_directory(root_fd, root, "clear")
            for outer in shard_names(root_fd):
                ok &= _clear_shard(root_fd, outer)
    except OSError as exc:
        log.error("cannot clear cache %s: %s", root, exc)
        return False
    return ok


def _clear_shard(root_fd: int, outer: str) -> bool:
    """Remove one top-level shard's entries and temp files, its counters, and the shard
    directories left empty; False (logged) if a file could not be removed."""
    scan = walk.scan_shard(root_fd, outer)
    ok = True
    files = sorted(scan.entries + scan.temps, key=lambda info: info.path)
    for shard, in_shard in itertools.groupby(files, key=lambda info: info.shard):
        with layout.opened_shard_or_none(root_fd, *shard) as inner_fd:
            if inner_fd is None:  # vanished, or a symlink: not ours to walk
                continue
            for info in in_shard:
                try:
                    os.unlink(info.name, dir_fd=inner_fd)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.error("cannot remove cache file %s: %s", info.path, exc)
                    ok = False
    walk.write_exact_counter(root_fd, outer, [])  # no entries left: no counter
    if scan.old_counter:  # left by a process of an older version
        with contextlib.suppress(OSError), layout.opened_dir_or_none(outer, root_fd) as outer_fd:
            if outer_fd is not None:
                os.unlink(OLD_COUNTER_NAME, dir_fd=outer_fd)
    walk.remove_empty_dirs(root_fd, outer)
    return ok
