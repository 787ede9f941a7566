"""The benchmark harness's --quick smoke run, so that it cannot rot (figures are not asserted:
the machine is shared and noisy; benchmarks/results/ holds a full run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.run import SCENARIOS, main

pytestmark = pytest.mark.slow


def test_quick_benchmark_run_writes_every_result_file(tmp_path: Path) -> None:
    assert main(["--quick", "--name", "smoke", "--results-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["python"]
    scenarios = {figure["scenario"] for figure in data["figures"]}
    assert len(scenarios) >= len(SCENARIOS)
    assert all(f["runs"] and min(f["runs"]) > 0 for f in data["figures"])
    assert data["targets"] and all("ratio" in t and "met" in t for t in data["targets"])
    assert "| target |" in (tmp_path / "smoke.md").read_text()
    assert (tmp_path / "smoke-status.png").stat().st_size > 1000
