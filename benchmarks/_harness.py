"""Timing, event-loop heartbeat, machine information and result files for the benchmarks."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


@dataclass
class Figure:
    """Repeated timings of one implementation in one scenario, seconds."""

    scenario: str
    implementation: str
    size: int  # segments, or seconds of audio, or processes: what the scenario varies
    runs: list[float]
    stall: float | None = None  # longest event-loop stall seen during the runs, seconds
    unit: str = "s"

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def row(self) -> dict[str, Any]:
        return asdict(self) | {
            "median": self.median,
            "min": min(self.runs),
            "max": max(self.runs),
        }


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    info: list[dict[str, Any]] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(
            f"  {figure.scenario:<28} {figure.implementation:<34} n={figure.size:<7} "
            + (
                f"median {figure.median / 2**20:10.3f} MiB"
                if figure.unit == "B"
                else f"median {figure.median * 1e3:10.3f} ms"
            )
            + (f"  stall {figure.stall * 1e3:6.2f} ms" if figure.stall is not None else ""),
            flush=True,
        )
        return figure

    def ratio(
        self,
        name: str,
        ours: Figure,
        baseline: Figure,
        target: float | None,
        *,
        lower_is_better: bool = True,
    ) -> float:
        """Record ours/baseline against a target (at most ``target``, or at least if not);
        with ``target=None`` the ratio is reported for information and is not a target."""
        ratio = ours.median / baseline.median
        if target is None:
            self.info.append({"figure": name, "size": ours.size, "ratio": ratio})
            print(f"  -> {name} (n={ours.size}): {ratio:.3f} (for information)", flush=True)
            return ratio
        met = ratio <= target if lower_is_better else ratio >= target
        self.targets.append(
            {
                "target": name,
                "size": ours.size,
                "ours": ours.implementation,
                "baseline": baseline.implementation,
                "ratio": ratio,
                "goal": f"{'<=' if lower_is_better else '>='} {target}",
                "met": met,
            }
        )
        print(
            f"  -> {name} (n={ours.size}): {ratio:.3f} ({'met' if met else 'MISSED'}, "
            f"goal {'<=' if lower_is_better else '>='} {target})",
            flush=True,
        )
        return ratio


def time_sync(fn: Callable[[], object], repeats: int) -> list[float]:
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - began)
    return runs


async def time_async(
    make: Callable[[], Awaitable[object]], repeats: int
) -> tuple[list[float], float]:
    """Time ``await make()`` ``repeats`` times while a heartbeat measures event-loop stalls."""
    return (await time_interleaved({"only": make}, repeats))["only"]


async def time_interleaved(
    makers: dict[str, Callable[[], Awaitable[object]]], repeats: int
) -> dict[str, tuple[list[float], float]]:
    """Time several implementations in alternation (A B C, B C A, ...), so that drift of this
    shared machine hits them alike; the stall is the longest seen during all of them."""
    names = list(makers)
    runs: dict[str, list[float]] = {name: [] for name in names}
    stalls = [0.0]
    done = asyncio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - began - 0.001)

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.005)
    for round_number in range(repeats):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            began = time.perf_counter()
            await makers[name]()
            runs[name].append(time.perf_counter() - began)
    done.set()
    await beat
    return {name: (runs[name], max(stalls)) for name in names}


def machine_info(directory: Path) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    try:
        fs = subprocess.run(
            ["stat", "-f", "-c", "%T", str(directory)], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        fs = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "file_system": fs,
        "libraries": {
            name: version(name)
            for name in (
                "sparktts_cache",
                "numpy",
                "anyio",
                "xxhash",
                "soundfile",
                "aiofiles",
                "diskcache",
                "piper-tts",
                "onnxruntime",
            )
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_results(
    results: Results, info: dict[str, Any], name: str, directory: Path = RESULTS
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": info,
        "figures": [f.row() for f in results.figures],
        "targets": results.targets,
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        f"# Benchmark results ({name})",
        "",
        f"Machine: {info['cpu_count']} CPUs, Python {info['python']}, {info['file_system']} file "
        f"system, {info['date']}.",
        "",
        "## Targets",
        "",
        "| target | size | ours | baseline | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t['target']} | {t['size']} | {t['ours']} | {t['baseline']} | "
        f"{t['ratio']:.3f} | {t['goal']} | {'yes' if t['met'] else '**no**'} |"
        for t in results.targets
    ]
    if results.info:
        lines += [
            "",
            "## Other ratios, for information",
            "",
            "| figure | size | ratio |",
            "|---|---|---|",
        ]
        lines += [f"| {i['figure']} | {i['size']} | {i['ratio']:.3f} |" for i in results.info]
    lines += [
        "",
        "## All figures (milliseconds; MiB for memory)",
        "",
        "| scenario | implementation | size | median | min | max | longest stall |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in results.figures:
        stall = f"{f.stall * 1e3:.2f}" if f.stall is not None else "-"
        scale = 1 / 2**20 if f.unit == "B" else 1e3
        lines.append(
            f"| {f.scenario} | {f.implementation} | {f.size} | {f.median * scale:.3f} | "
            f"{min(f.runs) * scale:.3f} | {max(f.runs) * scale:.3f} | {stall} |"
        )
    (directory / f"{name}.md").write_text("\n".join(lines) + "\n")
    return path


def plot_status(results: Results, name: str, directory: Path = RESULTS) -> Path | None:
    """Latency of ``get_cache_status`` against segments, log-log, one line per implementation."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    lines: dict[str, list[tuple[int, float]]] = {}
    for f in results.figures:
        if f.scenario == "get_cache_status":
            lines.setdefault(f.implementation, []).append((f.size, f.median))
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for implementation, points in sorted(lines.items()):
        points.sort()
        ax.plot(
            [p[0] for p in points], [p[1] * 1e3 for p in points], marker="o", label=implementation
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("segments (half cached)")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("get_cache_status, warm page cache")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path = directory / f"{name}-status.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
