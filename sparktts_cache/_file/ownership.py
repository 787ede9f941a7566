"""Whose directory is it: the cache removes things only in a directory that is its own.

Entries, temp files and counters have names no other program writes, so maintenance may remove
those anywhere; shard directories do not, so it removes them only in a directory marked as a cache
(``CACHEDIR.TAG``, written and recognised by ``layout``). The first write marks a new directory
(:func:`mark_if_new`); :func:`claim` marks a directory that holds nothing but the cache's own
layout (a cache made before the tag: its old ``stats`` counters are recounted under the new name).
``clear``, ``prune`` and ``verify`` with ``fix`` refuse to run in an unmarked directory holding
anything else (:func:`require_cache_directory` raises
:class:`~sparktts_cache.NotACacheDirectoryError`), and automatic eviction there removes entries and
temp files but no directory. A directory that holds a user's files is never marked (backup tools
would skip them).
"""

from __future__ import annotations

import contextlib
import logging
import os

from .._core.errors import NotACacheDirectoryError
from . import layout as layout
from . import walk as walk
from .layout import OLD_COUNTER_NAME

__all__ = ["adopt", "claim", "mark_if_new", "require_cache_directory"]

log = logging.getLogger("sparktts_cache")

#: How many files that are not the cache's a refusal names (the survey stops there).
FOREIGN_EXAMPLES = 5


def mark_if_new(root_fd: int) -> None:
    """Mark the directory open as ``root_fd`` if it is not marked and holds nothing yet, or only
    the cache's lock files (a synthesis lock may come before the first write): what a writer does
    before it makes a cache there."""
    if layout.is_marked(root_fd):
        return
    outers, foreign, squatters = walk.scan_root(root_fd)
    if not (outers or foreign or squatters):
        layout.mark(root_fd)


def _survey(root_fd: int) -> tuple[list[str], list[walk.ShardScan]]:
    """What in the cache directory is not the cache's own layout (a few examples: the survey
    stops there), and, if nothing, the scans of all its shards."""
    outers, foreign, squatters = walk.scan_root(root_fd)
    foreign += squatters
    scans: list[walk.ShardScan] = []
    for outer in outers:
        if len(foreign) >= FOREIGN_EXAMPLES:
            break
        scan = walk.scan_shard(root_fd, outer)
        foreign += scan.foreign + scan.squatters
        scans.append(scan)
    return foreign[:FOREIGN_EXAMPLES], scans


def adopt(root_fd: int) -> list[str]:
    """Mark an unmarked directory that holds nothing but the cache's own layout, recounting old
    ``stats`` counters under the new name; return a few files that are not the cache's instead
    (nothing is changed then)."""
    foreign, scans = _survey(root_fd)
    if foreign:
        return foreign
    for scan in scans:
        if scan.old_counter:
            walk.write_exact_counter(root_fd, scan.outer, scan.entries)
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
    return [] if layout.is_marked(root_fd) else adopt(root_fd)


def require_cache_directory(root_fd: int, root: str, operation: str) -> None:
    """:func:`claim` the directory, or refuse ``operation`` in it.

    Raises:
        NotACacheDirectoryError: naming a few of the files in it that are not the cache's.
    """
    if foreign := claim(root_fd):
        raise NotACacheDirectoryError(root, operation, foreign)
