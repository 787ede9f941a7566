"""Per-shard size and count counters, as ccache keeps them: one small file per top-level shard.

``<root>/<k[0:2]>/sparktts_cache.counter`` holds ``"<bytes> <entries>\\n"`` for the entries under
that shard. Writers add to it under an ``flock`` held for a few microseconds; 256 files mean writers
rarely contend. Counters can drift (a crash between publishing and counting, two writers replacing
one key, a concurrent clear); every cleanup or prune that scans a shard writes its exact figures
back.

A counter is only ever a regular file with one link, opened without following a symlink or
blocking on a FIFO: a counter hard-linked to another file is never written through. Writers replace
whatever else is at the counter's name (``layout.open_own_file``); what cannot be replaced (a
directory that is not empty) raises :class:`~sparktts_cache._file.layout.UnusablePath`, and the size
limit then counts that shard by scanning it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator

from .layout import COUNTER_NAME, READ_FLAGS, UnusablePath, open_own_file

__all__ = ["add_to_counter", "read_counter", "write_counter"]


def _parse(raw: bytes) -> tuple[int, int]:
    try:
        size, count = (max(0, int(field)) for field in raw.split())
    except ValueError:
        return 0, 0  # a damaged counter reads as empty; the next scan rewrites it
    return size, count


@contextlib.contextmanager
def _locked(outer_fd: int) -> Iterator[int]:
    fd = open_own_file(COUNTER_NAME, outer_fd, single_link=True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _store(fd: int, size: int, count: int) -> None:
    data = f"{size} {count}\n".encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def add_to_counter(outer_fd: int, bytes_delta: int, count_delta: int) -> int:
    """Add to the counter of the shard open as ``outer_fd``; return the shard's new size.

    Raises:
        UnusablePath: if something the writer cannot replace is at the counter's name.
    """
    with _locked(outer_fd) as fd:
        size, count = _parse(os.pread(fd, 64, 0))
        size, count = max(0, size + bytes_delta), max(0, count + count_delta)
        _store(fd, size, count)
    return size


def write_counter(outer_fd: int, size: int, count: int) -> None:
    """Set the counter of the shard open as ``outer_fd`` to exact figures from a scan."""
    with _locked(outer_fd) as fd:
        _store(fd, size, count)


def read_counter(outer_fd: int) -> tuple[int, int]:
    """Return (bytes, entries) of the shard open as ``outer_fd``; (0, 0) if never counted.

    Raises:
        UnusablePath: if what is at the counter's name is not a regular file with one link (it is
            not read: a FIFO would block, another file's contents mean nothing).
    """
    try:
        fd = os.open(COUNTER_NAME, READ_FLAGS, dir_fd=outer_fd)
    except FileNotFoundError:
        return 0, 0
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EOPNOTSUPP):
            raise UnusablePath(exc.errno, f"{COUNTER_NAME} is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise UnusablePath(errno.EEXIST, f"{COUNTER_NAME} is not a file the cache can use")
        return _parse(os.pread(fd, 64, 0))
    finally:
        os.close(fd)
