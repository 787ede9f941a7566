"""Several processes sharing one cache directory, and writers killed with SIGKILL."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sparktts_cache import SyncTTSCache

from ._proc import read_checked, shared_key
from .helpers import files_under

REPO = Path(__file__).resolve().parent.parent
KEYS = 12


def spawn(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests._proc", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_writing_and_reading_overlapping_keys(tmp_path: Path) -> None:
    workers = [spawn("mixed", tmp_path, worker, 300, KEYS) for worker in range(4)]
    totals = {"writes": 0, "hits": 0, "misses": 0}
    for proc in workers:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        for name, count in json.loads(out).items():
            totals[name] += count
    assert totals["writes"] > 400 and totals["hits"] > 300
    cache = SyncTTSCache(tmp_path)
    assert all(read_checked(cache, shared_key(cache, index)) for index in range(KEYS))
    assert not [name for name in files_under(tmp_path) if name.endswith(".tmp")]


def test_writer_killed_at_random_moments_never_leaves_a_partial_entry(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path)
    rnd = random.Random(7)
    kills = 25
    for _ in range(kills):
        with spawn("writer", tmp_path, rnd.randrange(1 << 30), KEYS) as proc:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            time.sleep(rnd.uniform(0.0, 0.15))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        for index in range(KEYS):
            read_checked(cache, shared_key(cache, index))  # raises on a torn entry
    entries = [name for name in files_under(tmp_path) if name.endswith(".wav")]
    assert entries, "the writers never published anything: the test proved nothing"
    assert cache.clear_cache()
    assert files_under(tmp_path) == ["CACHEDIR.TAG"], "clear left temp files of killed writers"


def test_clear_while_other_processes_write(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path)
    workers = [spawn("mixed", tmp_path, worker, 400, KEYS) for worker in range(3)]
    clears = 0
    while any(proc.poll() is None for proc in workers):
        assert cache.clear_cache()  # never fails because of concurrent writers
        clears += 1
        time.sleep(0.01)
    for proc in workers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err  # every write returned True and every read was whole
        assert json.loads(out)["writes"] > 100
    assert clears > 5
    for index in range(KEYS):
        read_checked(cache, shared_key(cache, index))
