"""Reading a file that a caller names, without hanging and without reading beyond a bound."""

from __future__ import annotations

import os
import stat

from .errors import InvalidOptionError

__all__ = ["OPEN_WITHOUT_BLOCKING", "read_regular_file"]

#: Open for reading without blocking on a FIFO (which would wait for a writer for good) and
#: without making a terminal the process's controlling one.
OPEN_WITHOUT_BLOCKING: int = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"


def read_regular_file(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of ``path``, if it is a regular file of at most ``limit`` bytes.

    Checked on the opened descriptor, not the name: ``/dev/zero`` or ``/dev/urandom`` would
    otherwise be read until memory ran out, and a FIFO waited on forever. Never more than
    ``limit`` bytes are read, whatever the size said (a ``/proc`` file says it is empty), nor more
    than the size said plus one (a short file does not cost a buffer of ``limit``).

    Args:
        what: how the caller names the file in an error (``"--voices"``, ``"the Piper voice"``).

    Raises:
        InvalidOptionError: naming ``what``, the path and what is wrong with it.
    """
    shown = f"{what} {os.fspath(path)!r}"
    try:
        fd = os.open(path, OPEN_WITHOUT_BLOCKING)
    except OSError as exc:
        raise InvalidOptionError(f"{shown}: {exc.strerror}") from None
    except ValueError:  # a NUL byte in the path
        raise InvalidOptionError(f"{shown}: not a valid path") from None
    too_big = InvalidOptionError(f"{shown} is larger than {_size(limit)}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidOptionError(f"{shown} is not a regular file")
        if st.st_size > limit:
            raise too_big
        data = bytearray()
        wanted = min(st.st_size, limit) + 1
        while len(data) < wanted and (block := os.read(fd, wanted - len(data))):
            data += block
            if len(data) == wanted and wanted <= limit:  # longer than it said: read on, bounded
                wanted = limit + 1
    except OSError as exc:
        raise InvalidOptionError(f"{shown}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise too_big
    return bytes(data)
