"""Walking the cache directory: what a scan finds at the root and in each shard, and removing what
it found.

Every maintenance operation (eviction, prune, verify, stats, clear, adopting an unmarked directory)
lists the tree here, and only here: a scan goes through directory descriptors that refuse symlinks
(``layout.opened_dir``) and sorts what it finds by name (``layout``): the cache's entries and temp
files, its counters and lock files, squatters at their names, and files that are not the cache's
(foreign), which nothing ever removes. A file is removed only if it is still what the scan saw
(:func:`remove_unchanged`), so an entry used or replaced since the scan stays.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from . import layout as layout
from .counters import write_counter
from .layout import CLEANUP_LOCK, COUNTER_NAME, LOCKS_DIR, OLD_COUNTER_NAME, shard_names

__all__ = [
    "FileInfo",
    "Progress",
    "ShardScan",
    "list_shards",
    "remove_empty_dirs",
    "remove_unchanged",
    "scan_root",
    "scan_shard",
    "shard_entries",
    "write_exact_counter",
]

#: A whole-cache operation's progress callback: ``progress(done, total)``, in shards.
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
        return self.path.rpartition("/")[2]

    @property
    def shard(self) -> tuple[str, str]:
        """The names of its outer and inner shard directories."""
        return layout.shard_of(self.key)


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


# -- scanning ------------------------------------------------------------------------------------


def scan_root(root_fd: int) -> tuple[list[str], list[str], list[str]]:
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
                _scan_locks(root_fd, foreign, squatters)
            else:
                squatters.append(name)
        else:
            foreign.append(name)
    outers.sort()
    return outers, foreign, squatters


def _scan_locks(root_fd: int, foreign: list[str], squatters: list[str]) -> None:
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


def scan_shard(root_fd: int, outer: str) -> ShardScan:
    """List one top-level shard's entries, temp files, foreign files, squatters and empty
    directories."""
    scan = ShardScan(outer)
    with layout.opened_dir_or_none(outer, root_fd) as outer_fd:
        if outer_fd is None:
            return scan
        inners, others = _scan_outer(scan, outer_fd)
        for inner in inners:
            with layout.opened_dir_or_none(inner, outer_fd) as inner_fd:
                if inner_fd is None:
                    continue
                found = False
                with os.scandir(inner_fd) as it:
                    for item in it:
                        found = True
                        _classify(scan, inner, item)
            if not found:
                scan.empty_dirs.append(f"{outer}/{inner}")
        if not inners and not others:
            scan.empty_dirs.append(outer)
    return scan


def _scan_outer(scan: ShardScan, outer_fd: int) -> tuple[list[str], bool]:
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


def _classify(scan: ShardScan, inner: str, item: os.DirEntry[str]) -> None:
    path = f"{scan.outer}/{inner}/{item.name}"
    own = layout.own_file_kind(item.name, scan.outer + inner)
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


def list_shards(root: str) -> list[str]:
    """The top-level shard directories of the cache, sorted."""
    with layout.opened_root(root) as root_fd:
        return [] if root_fd is None else shard_names(root_fd)


def shard_entries(root: str, outer: str) -> list[FileInfo]:
    """The audio entries under one top-level shard (for listing; blobs are left out)."""
    with layout.opened_root(root) as root_fd:
        if root_fd is None:
            return []
        return [e for e in scan_shard(root_fd, outer).entries if not layout.is_blob_name(e.name)]


# -- acting on a scan ----------------------------------------------------------------------------


def remove_unchanged(root_fd: int, info: FileInfo) -> bool:
    """Remove a scanned file unless it changed since the scan (replaced or used); whether it did.

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


def remove_empty_dirs(root_fd: int, outer: str) -> int:
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


def write_exact_counter(root_fd: int, outer: str, kept: list[FileInfo]) -> None:
    """Write a scanned shard's exact figures to its counter; a shard left with no entries has
    none (so none is created in a directory that holds no entry of the cache's)."""
    with contextlib.suppress(OSError), layout.opened_dir_or_none(outer, root_fd) as outer_fd:
        if outer_fd is None:
            return
        if kept:
            write_counter(outer_fd, sum(e.size for e in kept), len(kept))
        else:
            layout.remove_by_name(COUNTER_NAME, outer_fd)
