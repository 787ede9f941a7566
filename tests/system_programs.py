"""The system programs some tests need, which pip cannot install (Debian packages in CI).

``make test`` must pass on a machine with only Python and make: a test whose program is missing
is skipped, saying which program and which package brings it. ``.ci/run`` installs them and sets
:data:`REQUIRE_ENV`; there a missing program fails the test instead, so that CI cannot go green
by skipping what it is meant to run.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

#: Set (to anything but "" or "0") where every system program must be present: ``.ci/run``.
REQUIRE_ENV = "SPARKTTS_REQUIRE_SYSTEM_PROGRAMS"

#: Each program the tests use, and the Debian package that installs it.
PACKAGES = {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "curl": "curl",
}


def required() -> bool:
    """Whether a missing system program (or what one needs, such as a tmpfs) fails the tests."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason`` (something the machine lacks), or fail it where
    :func:`required`."""
    if required():
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set: CI must run this test)", pytrace=False)
    pytest.skip(reason)


def require_program(name: str) -> str:
    """The path of the system program ``name``; if it is not on PATH, :func:`unavailable`."""
    path = shutil.which(name)
    if path is None:
        unavailable(
            f"{name} is not installed (Debian package {PACKAGES[name]}; .ci/run installs it)"
        )
    return path
