"""Reliability harnesses: writers killed with SIGKILL, and several processes under a mixed load.

Command: ``.venv/bin/python -m tests.stress crash --kills 500`` and
``.venv/bin/python -m tests.stress load --processes 4 --seconds 60``. Each prints a JSON report;
``tests/test_reliability.py`` runs shorter versions in the test suite.

Every audio array written is *sealed*: its first sample encodes the seed that generated the rest,
so any reader can tell a whole entry from a torn one or a mix of two writers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sparktts_cache import SyncTTSCache, TTSCache

REPO = Path(__file__).resolve().parent.parent
SEAL_SCALE = float(2**24)


def sealed_audio(seed: int, samples: int) -> npt.NDArray[np.float32]:
    """Audio whose first sample names the seed of the rest (seed < 2**24 is exact in float32)."""
    rng = np.random.default_rng(seed)
    audio = np.empty(samples, dtype=np.float32)
    audio[0] = seed / SEAL_SCALE
    audio[1:] = (rng.standard_normal(samples - 1) * 0.1).astype(np.float32)
    return audio


def is_sealed(audio: npt.NDArray[np.float32]) -> bool:
    """Whether ``audio`` is exactly what :func:`sealed_audio` made for the seed it carries."""
    if audio.ndim != 1 or len(audio) < 2:
        return False
    seed = float(audio[0]) * SEAL_SCALE
    if not seed.is_integer() or not 0 <= seed < SEAL_SCALE:
        return False
    return bool(np.array_equal(audio, sealed_audio(int(seed), len(audio))))


class CorruptionCounter(logging.Handler):
    """Counts the cache's "corrupt cache entry" warnings: a reader turns a corrupt file into a
    miss (and removes it), so without this a torn entry would pass for a plain miss."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        logging.getLogger("sparktts_cache").addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if "corrupt" in record.getMessage():
            self.count += 1


def key_for(cache: SyncTTSCache | TTSCache, name: str) -> str:
    return cache.generate_cache_key(name, {"harness": "stress"})


# -- crash consistency ---------------------------------------------------------------------------


def writer(cache_dir: str, seed: int) -> None:
    """Write large and small sealed entries to shared and private keys until killed."""
    cache = SyncTTSCache(cache_dir)
    rnd = random.Random(seed)
    print("ready", flush=True)
    while True:
        name = (
            f"shared {rnd.randrange(16)}"
            if rnd.random() < 0.5
            else f"private {seed} {rnd.randrange(8)}"
        )
        samples = rnd.choice([160, 16_000, 160_000, 320_000])  # 10 ms to 20 s
        cache.cache_data(key_for(cache, name), sealed_audio(rnd.randrange(2**24), samples), name)


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a writer and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stream = proc.stdout
    if stream is not None:
        stream.close()


def check_all(cache: SyncTTSCache) -> tuple[int, int]:
    """Read every entry in the cache; return (whole entries, torn or mixed entries)."""
    whole = torn = 0
    for info in cache.iter_entries():
        audio = cache.get_cached_data(info.key)
        if audio is None:
            continue  # corrupt files are misses (and removed): counted by verify below
        if is_sealed(audio):
            whole += 1
        else:
            torn += 1
    return whole, torn


def crash(cache_dir: str, kills: int, writers: int = 3, seed: int = 0) -> dict[str, Any]:
    """Kill writer processes with SIGKILL ``kills`` times at random moments, then check."""
    rnd = random.Random(seed)
    cache = SyncTTSCache(cache_dir)
    corrupt = CorruptionCounter()

    def spawn() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.stress", "writer", cache_dir, str(rnd.randrange(2**30))],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    procs = [spawn() for _ in range(writers)]
    torn_seen = checked = 0
    began = time.monotonic()
    for kill in range(kills):
        time.sleep(rnd.uniform(0.0, 0.08))
        victim = rnd.randrange(writers)
        stop(procs[victim])
        procs[victim] = spawn()
        if kill % 25 == 24:  # read everything now and then, with writers still running
            whole, torn = check_all(cache)
            checked += whole + torn
            torn_seen += torn
    for proc in procs:
        stop(proc)
    report = cache.verify()  # before the final reads, which would remove a corrupt file
    whole, torn = check_all(cache)
    temp_files = sorted(Path(cache_dir).rglob("*.tmp"))
    for temp in temp_files:  # dead writers' temp files: cleanup removes those over an hour old
        old = time.time() - 7200
        os.utime(temp, (old, old))
    pruned = cache.prune()
    left = sorted(Path(cache_dir).rglob("*.tmp"))
    return {
        "kills": kills,
        "seconds": round(time.monotonic() - began, 1),
        "reads_during_run": checked,
        "torn_reads_during_run": torn_seen,
        "entries_at_end": whole + torn,
        "torn_entries_at_end": torn,
        "verify_corrupt": len(report.corrupt),
        "corrupt_files_read": corrupt.count,
        "orphan_temp_files": len(temp_files),
        "orphans_removed_by_cleanup": pruned.temp_files,
        "temp_files_left": len(left),
    }


# -- concurrency under load ----------------------------------------------------------------------


def load_worker(cache_dir: str, worker: int, seconds: float, seed: int, limit: int) -> None:
    """One process: many tasks running a seeded mix of operations; prints counts as JSON."""
    import anyio

    cache = TTSCache(cache_dir, max_size_bytes=limit)
    corrupt = CorruptionCounter()
    counts = {
        "writes": 0,
        "write_failures": 0,
        "hits": 0,
        "misses": 0,
        "statuses": 0,
        "clears": 0,
        "corrupt_reads": 0,
        "unexpected_errors": 0,
    }
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def task(number: int) -> None:
        rnd = random.Random(seed * 1000 + worker * 100 + number)
        while time.monotonic() < deadline:
            op = rnd.random()
            name = (
                f"shared {rnd.randrange(24)}"
                if rnd.random() < 0.6
                else f"private {worker} {rnd.randrange(12)}"
            )
            try:
                if op < 0.4:
                    audio = sealed_audio(rnd.randrange(2**24), rnd.choice([800, 8000, 32000]))
                    ok = await cache.cache_data(key_for(cache, name), audio, name)
                    counts["writes" if ok else "write_failures"] += 1
                elif op < 0.85:
                    got = await cache.get_cached_data(key_for(cache, name))
                    if got is None:
                        counts["misses"] += 1
                    elif is_sealed(got):
                        counts["hits"] += 1
                    else:
                        counts["corrupt_reads"] += 1
                elif op < 0.995:
                    names = [f"shared {i}" for i in range(24)]
                    status = await cache.get_cache_status(names, {"harness": "stress"})
                    assert len(status.cache_keys) == len(names)
                    counts["statuses"] += 1
                else:
                    assert await cache.clear_cache()
                    counts["clears"] += 1
            except Exception as exc:
                counts["unexpected_errors"] += 1
                errors.append(repr(exc))

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for number in range(8):
                group.start_soon(task, number)

    anyio.run(main)
    counts["corrupt_files_read"] = corrupt.count
    print(json.dumps({**counts, "errors": errors[:5]}), flush=True)


def load(
    cache_dir: str, processes: int, seconds: float, seed: int = 0, limit: int = 2_000_000
) -> dict[str, Any]:
    """Run ``processes`` load workers at once against one directory under a small size limit."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.stress",
                "load-worker",
                cache_dir,
                str(worker),
                str(seconds),
                str(seed),
                str(limit),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(processes)
    ]
    totals: dict[str, Any] = {"processes": processes, "seconds": seconds, "errors": []}
    for proc in procs:
        out, err = proc.communicate(timeout=seconds * 4 + 120)
        if proc.returncode != 0:
            totals["errors"].append(err[-2000:])
            continue
        for name, value in json.loads(out).items():
            if name == "errors":
                totals["errors"] += value
            else:
                totals[name] = totals.get(name, 0) + value
    report = SyncTTSCache(cache_dir).verify()
    totals["verify_ok"] = report.ok
    totals["verify_corrupt"] = len(report.corrupt)
    totals["verify_empty_dirs"] = len(report.empty_dirs)
    totals["operations"] = sum(
        totals.get(k, 0)
        for k in ("writes", "write_failures", "hits", "misses", "statuses", "clears")
    )
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sparktts_cache reliability harnesses")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("crash")
    c.add_argument("--kills", type=int, default=500)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--cache-dir")
    lo = sub.add_parser("load")
    lo.add_argument("--processes", type=int, default=4)
    lo.add_argument("--seconds", type=float, default=60)
    lo.add_argument("--seed", type=int, default=0)
    lo.add_argument("--cache-dir")
    w = sub.add_parser("writer")
    w.add_argument("cache_dir")
    w.add_argument("seed", type=int)
    lw = sub.add_parser("load-worker")
    for name, kind in (
        ("cache_dir", str),
        ("worker", int),
        ("seconds", float),
        ("seed", int),
        ("limit", int),
    ):
        lw.add_argument(name, type=kind)
    args = parser.parse_args(argv)
    if args.command == "writer":
        writer(args.cache_dir, args.seed)
    elif args.command == "load-worker":
        load_worker(args.cache_dir, args.worker, args.seconds, args.seed, args.limit)
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            directory = args.cache_dir or scratch
            if args.command == "crash":
                report = crash(directory, args.kills, seed=args.seed)
            else:
                report = load(directory, args.processes, args.seconds, seed=args.seed)
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
