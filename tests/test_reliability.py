"""Shorter runs of the reliability harnesses in tests/stress.py (full runs: see the README)."""

from __future__ import annotations

from pathlib import Path

from .stress import crash, load


def test_writers_killed_with_sigkill_never_leave_a_torn_entry(tmp_path: Path) -> None:
    report = crash(str(tmp_path), kills=40, seed=1)
    assert report["entries_at_end"] > 0, report
    assert report["torn_reads_during_run"] == 0 and report["torn_entries_at_end"] == 0, report
    assert report["verify_corrupt"] == 0 and report["corrupt_files_read"] == 0, report
    assert report["temp_files_left"] == 0, report
    assert report["orphans_removed_by_cleanup"] == report["orphan_temp_files"], report


def test_four_processes_under_a_mixed_load(tmp_path: Path) -> None:
    report = load(str(tmp_path), processes=4, seconds=6, seed=2, limit=1_500_000)
    assert report["errors"] == [], report
    assert report["corrupt_reads"] == 0 and report["unexpected_errors"] == 0, report
    assert report["corrupt_files_read"] == 0, report
    assert report["verify_ok"], report
    assert report["hits"] > 50 and report["writes"] > 50 and report["statuses"] > 10, report
