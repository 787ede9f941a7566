"""Several processes sharing one cache directory: writers killed with SIGKILL, and mixed loads.

Shorter runs of the reliability harnesses in tests/stress.py (full runs: see docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparktts_cache import SyncTTSCache
from sparktts_cache.testing import is_sealed

from .helpers import SHARED_KEYS, harness_key
from .stress import crash, load

pytestmark = pytest.mark.slow

PROCESSES = 4


def test_writers_killed_with_sigkill_never_leave_a_torn_entry(tmp_path: Path) -> None:
    report = crash(str(tmp_path), kills=60, seed=1)
    assert report["entries_at_end"] > 0 and report["reads_during_run"] > 0, report
    assert report["torn_reads_during_run"] == 0 and report["torn_entries_at_end"] == 0, report
    assert report["verify_corrupt"] == 0 and report["corrupt_files_read"] == 0, report
    # Writers killed halfway through a write leave torn temp files: cleanup removes those over an
    # hour old (and only those), and clear_cache removes the rest.
    assert report["orphan_temp_files"] >= report["kills_mid_write"] > 0, report
    assert report["old_orphans_removed_by_cleanup"] == report["old_orphans"] > 0, report
    assert report["young_orphans_kept_by_cleanup"] == report["orphan_temp_files"] // 2, report
    assert report["clear_ok"] and report["cache_files_left_after_clear"] == 0, report


def assert_nothing_torn_or_lost(report: dict[str, Any], limit: int | None) -> None:
    """What every mixed load must show: no error, no torn read, no failed write, no debris, and
    a cache within its limit (but for the writes that raced the last cleanup)."""
    assert report["errors"] == [] and report["unexpected_errors"] == 0, report
    assert report["corrupt_reads"] == 0 and report["corrupt_files_read"] == 0, report
    # A write starts again when a concurrent clear or cleanup removes its shard directory or
    # temp file, and gives up (False, logged) after a few attempts: no other write may fail.
    assert report["write_failures"] == report["writes_given_up"], report
    assert report["verify_ok"] and report["torn_entries_at_end"] == 0, report
    assert report["entries_at_end"] > 0 and report["temp_files_left"] == 0, report
    assert report["writes"] > 300 and report["hits"] > 50, report  # it did exercise the cache
    if limit is not None:  # each process's last write skips cleanup at most while one runs
        bound = limit + (PROCESSES - 1) * report["largest_entry"]
        assert report["bytes_at_end"] <= bound, report


def test_processes_under_a_mixed_load(tmp_path: Path) -> None:
    # Writes, reads, status checks and clears of shared and private keys from 4 processes of 8
    # tasks each, under a size limit that keeps eviction going.
    limit = 1_500_000
    report = load(str(tmp_path), PROCESSES, operations=100, seed=2, limit=limit)
    assert_nothing_torn_or_lost(report, limit)
    assert report["statuses"] > 100 and report["clears"] > 10, report


def test_processes_writing_the_same_keys_leave_each_one_whole(tmp_path: Path) -> None:
    report = load(str(tmp_path), PROCESSES, operations=40, seed=3, limit=None, clear_share=0)
    assert_nothing_torn_or_lost(report, None)
    assert report["write_failures"] == 0, report  # nothing removes anything here
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    for index in range(SHARED_KEYS):  # the last writer of each shared key won, whole
        assert is_sealed(cache.get_cached_data(harness_key(cache, f"shared {index}"))), index


def test_processes_writing_far_past_the_limit_end_within_it(tmp_path: Path) -> None:
    limit = 400_000  # about 12 entries of 0.5 s: constant eviction
    report = load(str(tmp_path), PROCESSES, operations=40, seed=4, limit=limit, clear_share=0)
    assert_nothing_torn_or_lost(report, limit)
    assert report["writes"] * 50_000 > 10 * limit, report  # about 50 KB each: far past it
