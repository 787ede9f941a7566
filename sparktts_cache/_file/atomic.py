"""``AtomicFile``: a file written under a temp name beside its destination, then renamed over it.

The one way this package publishes a file: cache entries, stored blobs (the speech server's
responses) and the command line's ``export`` and ``synth -o`` all go through it. A reader of the
destination sees the old file or the whole new one, never a part; a write that fails or is
abandoned leaves the destination as it was and removes its temp file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from types import TracebackType

from . import layout

__all__ = ["AtomicFile"]


class AtomicFile:
    """A temp file in the directory ``dir_fd``, written piece by piece, then published by
    :meth:`publish` (a rename over the destination) or removed by :meth:`discard`.

    Used as a context manager, an exception (or leaving without publishing) discards it.

    Args:
        dir_fd: the destination's directory (opened without following symlinks by the caller).
        temp_name: a name no other writer uses (``layout.temp_name(key)``): created exclusively,
            never through a symlink.
        mode: the new file's permissions (before the umask).
        fsync: flush the file, and the directory after the rename, to stable storage.

    Not thread-safe: one writer per instance.

    Raises:
        OSError: from creating the temp file.
    """

    __slots__ = ("_fd", "dir_fd", "fsync", "size", "temp_name")

    def __init__(
        self, dir_fd: int, temp_name: str, *, mode: int = layout.FILE_MODE, fsync: bool = False
    ) -> None:
        self.dir_fd = dir_fd
        self.temp_name = temp_name
        self.fsync = fsync
        #: Bytes written so far.
        self.size = 0
        self._fd: int | None = os.open(temp_name, layout.TEMP_FLAGS, mode, dir_fd=dir_fd)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.discard()

    @property
    def fileno(self) -> int:
        """The temp file's descriptor (for a library that writes to a file object itself)."""
        assert self._fd is not None, "the file is already published or discarded"
        return self._fd

    def write(self, *buffers: bytes | bytearray | memoryview) -> int:
        """Append ``buffers`` (one system call for several, as far as it goes); return their size.

        Raises:
            OSError: a full disk, an I/O error (the caller discards).
        """
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        total = sum(len(view) for view in views)
        fd = self.fileno
        while views:
            written = os.writev(fd, views)
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]
        self.size += total
        return total

    def writelines(self, buffers: Sequence[bytes | bytearray | memoryview]) -> int:
        """:meth:`write` of every buffer in ``buffers``."""
        return self.write(*buffers)

    def publish(self, name: str) -> None:
        """Rename the file over ``name`` in the same directory: the destination now holds it.

        Raises:
            OSError: the file is then discarded, and the destination left as it was.
        """
        fd = self.fileno
        try:
            if self.fsync:
                os.fsync(fd)
            self._fd = None
            os.close(fd)
            os.replace(self.temp_name, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except BaseException:
            self._remove_temp()
            raise
        if self.fsync:
            os.fsync(self.dir_fd)

    def discard(self) -> None:
        """Close and remove the temp file, unless it was published (then nothing)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.close(fd)
        self._remove_temp()

    def _remove_temp(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.temp_name, dir_fd=self.dir_fd)
