"""``make test`` passes on a machine with only Python and make: tests that need Chromium,
chromedriver or redis-server skip there, saying why; where ``.ci/run`` says every program must be
present, the same tests fail instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .system_programs import REQUIRE_ENV

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

#: One test of each kind that needs a system program, run with those programs hidden.
NEEDING_PROGRAMS = [
    "tests/test_server_page.py::test_a_wrong_key_is_shown_not_played",  # chromium, chromedriver
    "tests/test_redis.py::test_redis_restart_mid_run",  # redis-server
    "tests/test_server_scale.py::test_two_servers_sharing_redis_synthesise_each_segment_once",
]


def run_without_programs(tmp_path: Path, required: bool) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in (REQUIRE_ENV, "SPARKTTS_REDIS_URL", "PYTEST_ADDOPTS")
    }
    env["PATH"] = str(empty)  # nothing on it: no chromium, chromedriver or redis-server
    if required:
        env[REQUIRE_ENV] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", *NEEDING_PROGRAMS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_missing_programs_skip_saying_which(tmp_path: Path) -> None:
    done = run_without_programs(tmp_path, required=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 skipped" in done.stdout, done.stdout
    assert "chromium is not installed (Debian package chromium" in done.stdout
    assert "redis-server is not installed (Debian package redis-server" in done.stdout


def test_missing_programs_fail_where_they_are_required(tmp_path: Path) -> None:
    done = run_without_programs(tmp_path, required=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 failed, 1 error" in done.stdout, done.stdout  # the browser is a fixture: an error
    assert "skipped" not in done.stdout
    assert f"{REQUIRE_ENV} is set: CI must run this test" in done.stdout
