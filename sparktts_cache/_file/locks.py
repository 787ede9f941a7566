"""Cross-process synthesis locks: one process synthesises a segment while the others wait.

:class:`FileSynthesisLock` uses an advisory ``flock`` on ``<directory>/<key>.lock``. The kernel
drops the lock when its holder dies, so a crashed process never blocks the others; a holder that
hangs is waited for at most ``stale_after`` seconds, after which the waiter synthesises anyway.
Lock files are removed by their holder on release (a locker checks that the file it locked is still
the one at the path, so nobody ever holds a lock on a removed file).

Lock files are created and removed through a descriptor of the lock directory opened without
following a symlink, so a symlink planted at the directory's path never leads the lock outside it.
Whatever occupies a lock file's path (a FIFO, an empty directory, a symlink) is removed by name and
replaced; what cannot be (a directory that is not empty, a lock directory that is a symlink) is
logged, and the synthesis goes ahead without the lock, as for a stale one: a squatter costs at most
a duplicate synthesis, never an error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread

from .._core.cache import check_lock_timing
from .._core.keys import check_key
from . import layout as layout

__all__ = ["FileSynthesisLock"]

log = logging.getLogger("sparktts_cache")


class FileSynthesisLock:
    """Advisory per-key lock files in ``directory`` (for processes sharing one file system).

    Args:
        directory: where lock files live; created on demand. Its parents may be symlinks, but it
            must not be one itself (it is never followed: the lock then goes ahead without it).
        stale_after: seconds to wait for a holder before going ahead without the lock.
        poll: seconds between attempts while another process holds the lock.

    Raises:
        InvalidOptionError: if ``stale_after`` or ``poll`` is not a positive, finite number.
    """

    __slots__ = ("directory", "poll", "stale_after")

    def __init__(self, directory: str | os.PathLike[str], *, stale_after: float = 600.0,
                 poll: float = 0.05) -> None:  # fmt: skip
        self.directory = os.fspath(directory)
        self.stale_after, self.poll = check_lock_timing(stale_after, poll)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[bool]:
        name = f"{check_key(key)}.lock"
        deadline = time.monotonic() + self.stale_after
        held: tuple[int, int] | None = None
        while True:
            try:
                held = await anyio.to_thread.run_sync(_try_lock, self.directory, name)
            except layout.UnusablePath as exc:
                log.warning("synthesis lock %s cannot be used (%s); going ahead", key, exc)
                break
            if held is not None:
                break
            if time.monotonic() > deadline:
                log.warning(
                    "synthesis lock %s held for over %.0f s; going ahead", key, self.stale_after
                )
                break
            await anyio.sleep(self.poll)
        try:
            yield held is not None
        finally:
            if held is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_unlock, name, *held)


def _open_directory(directory: str) -> int:
    """A descriptor of the lock directory, created if needed, never through a symlink at its path.

    Raises:
        UnusablePath: if a symlink or a file is at the directory's path.
    """
    parent, name = os.path.split(os.path.abspath(directory))
    os.makedirs(parent, mode=layout.DIR_MODE, exist_ok=True)
    with layout.opened_root(parent) as parent_fd:
        if parent_fd is None:
            raise layout.UnusablePath(errno.ENOENT, f"{parent} vanished")
        try:
            try:
                return os.open(name, layout.DIR_FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, layout.DIR_MODE, dir_fd=parent_fd)
                return os.open(name, layout.DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise layout.UnusablePath(
                    exc.errno, f"{directory} is not a directory (a symlink or a file)"
                ) from None
            raise


def _try_lock(directory: str, name: str) -> tuple[int, int] | None:
    """Lock ``<directory>/<name>`` without waiting; return the directory's and the lock file's
    descriptors, or None if another process holds it.

    Raises:
        UnusablePath: if the directory is a symlink, or its lock file's path is taken by a
            directory that is not empty.
    """
    dir_fd = _open_directory(directory)
    try:
        fd = layout.open_own_file(name, dir_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = os.fstat(fd)
            current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (locked.st_ino, locked.st_dev) != (current.st_ino, current.st_dev):
                raise BlockingIOError  # the holder removed it between our open and our lock
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            os.close(dir_fd)
            return None
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd, fd


def _unlock(name: str, dir_fd: int, fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)
        os.close(dir_fd)
