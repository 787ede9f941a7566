"""Cross-process synthesis locks: one process synthesises a segment while the others wait.

:class:`FileSynthesisLock` uses an advisory ``flock`` on ``<directory>/<key>.lock``. The kernel
drops the lock when its holder dies, so a crashed process never blocks the others; a holder that
hangs is waited for at most ``stale_after`` seconds, after which the waiter synthesises anyway.
Lock files are removed by their holder on release (a locker checks that the file it locked is still
the one at the path, so nobody ever holds a lock on a removed file).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Protocol

import anyio
import anyio.to_thread

from ._keys import check_key
from ._layout import DIR_MODE, FILE_MODE, SMALL_FILE_FLAGS

__all__ = ["FileSynthesisLock", "SynthesisLock"]

log = logging.getLogger("sparktts_cache")


class SynthesisLock(Protocol):
    """Mutual exclusion per key between processes (or machines) that share a cache."""

    def hold(self, key: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold the lock of ``key``; the context value is False if it was given up as stale."""
        ...


class FileSynthesisLock:
    """Advisory per-key lock files in ``directory`` (for processes sharing one file system).

    Args:
        directory: where lock files live; created on demand.
        stale_after: seconds to wait for a holder before going ahead without the lock.
        poll: seconds between attempts while another process holds the lock.
    """

    __slots__ = ("directory", "poll", "stale_after")

    def __init__(self, directory: str | os.PathLike[str], *, stale_after: float = 600.0,
                 poll: float = 0.05) -> None:  # fmt: skip
        self.directory = os.fspath(directory)
        self.stale_after = stale_after
        self.poll = poll

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[bool]:
        path = os.path.join(self.directory, f"{check_key(key)}.lock")
        deadline = time.monotonic() + self.stale_after
        while (fd := await anyio.to_thread.run_sync(_try_lock, self.directory, path)) is None:
            if time.monotonic() > deadline:
                log.warning(
                    "synthesis lock %s held for over %.0f s; going ahead", key, self.stale_after
                )
                break
            await anyio.sleep(self.poll)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_unlock, path, fd)


def _try_lock(directory: str, path: str) -> int | None:
    """Lock ``path`` without waiting; return its descriptor, or None if another process holds it."""
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    fd = os.open(path, SMALL_FILE_FLAGS, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = os.fstat(fd)
        current = os.stat(path, follow_symlinks=False)
        if (locked.st_ino, locked.st_dev) != (current.st_ino, current.st_dev):
            raise BlockingIOError  # the holder removed it between our open and our lock
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(path: str, fd: int) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)
