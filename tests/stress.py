"""Reliability harnesses: writers killed with SIGKILL, and several processes under a mixed load.

Command: ``.venv/bin/python -m tests.stress crash --kills 500`` and
``.venv/bin/python -m tests.stress load --processes 4 --seconds 60``. Each prints a JSON report;
``tests/test_reliability.py`` runs shorter versions in the test suite.

Every audio array written is sealed (:func:`sparktts_cache.testing.sealed_audio`): it carries its
own seed and length, so any reader can tell a whole entry from a torn one or a mix of two writers.
The worker processes run functions of ``tests/helpers.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sparktts_cache import SyncTTSCache
from sparktts_cache.testing import is_sealed

from .helpers import (
    CacheLogCounter,
    Gate,
    Worker,
    WorkerError,
    files_under,
    mixed_load,
    writer,
    writer_killed_mid_write,
)

#: Writers the crash harness kills in the middle of a write for certain (besides the random
#: kills), so that there are always torn temp files for cleanup to deal with.
MID_WRITE_KILLS = 2


def read_every_entry(cache: SyncTTSCache) -> tuple[int, int]:
    """Read every entry in the cache; return (whole entries, torn or mixed entries)."""
    whole = torn = 0
    for info in cache.iter_entries():
        audio = cache.get_cached_data(info.key)
        if audio is None:
            continue  # corrupt files are misses (and removed): counted by verify and the counter
        if is_sealed(audio):
            whole += 1
        else:
            torn += 1
    return whole, torn


def temp_files(cache_dir: str) -> list[Path]:
    return sorted(Path(cache_dir).rglob("*.tmp"))


# -- crash consistency ---------------------------------------------------------------------------


def crash(cache_dir: str, kills: int, writers: int = 3, seed: int = 0) -> dict[str, Any]:
    """Kill writer processes with SIGKILL ``kills`` times at random moments, then check.

    Writers run :func:`~tests.helpers.writer`; each killed one is replaced at once. Every 25 kills
    every entry is read while the writers run. Besides, :data:`MID_WRITE_KILLS` writers are killed
    halfway through writing a temp file. At the end: ``verify``, every entry read again, then
    cleanup must remove the torn temp files made over an hour old and keep the younger ones (a
    live writer's, for all it knows), and ``clear_cache`` must leave none of the cache's files.
    """
    rnd = random.Random(seed)
    cache = SyncTTSCache(cache_dir, sample_rate=16000)

    def started(target: Any) -> Worker:
        worker = Worker(target, cache_dir, rnd.randrange(2**24))
        worker.wait_ready()
        return worker

    with CacheLogCounter() as logged:  # corrupt files met by the reads below
        running: list[Worker] = []
        torn_seen = checked = 0
        began = time.monotonic()
        try:
            running.extend(started(writer) for _ in range(writers))  # appended as each is ready
            for _ in range(MID_WRITE_KILLS):  # while the others write
                started(writer_killed_mid_write).kill()
            for kill in range(kills):
                time.sleep(rnd.uniform(0.0, 0.08))
                victim = rnd.randrange(writers)
                running[victim].kill()
                running[victim] = started(writer)
                if kill % 25 == 24:  # read everything now and then, with writers still running
                    whole, torn = read_every_entry(cache)
                    checked += whole + torn
                    torn_seen += torn
        finally:
            for worker in running:
                worker.kill()
        report = cache.verify()  # before the final reads, which would remove a corrupt file
        whole, torn = read_every_entry(cache)
        orphans = temp_files(cache_dir)
        old, young = orphans[::2], orphans[1::2]
        for temp in old:  # dead writers' temp files: cleanup removes those over an hour old
            then = time.time() - 7200
            os.utime(temp, (then, then))
        pruned = cache.prune()
        young_kept = sum(temp.exists() for temp in young)
        cleared = cache.clear_cache()
        left = [name for name in files_under(cache_dir) if name.endswith((".wav", ".tmp"))]
    return {
        "kills": kills + MID_WRITE_KILLS,
        "kills_mid_write": MID_WRITE_KILLS,
        "seconds": round(time.monotonic() - began, 1),
        "reads_during_run": checked,
        "torn_reads_during_run": torn_seen,
        "entries_at_end": whole + torn,
        "torn_entries_at_end": torn,
        "verify_corrupt": len(report.corrupt),
        "corrupt_files_read": logged.corrupt,
        "orphan_temp_files": len(orphans),
        "old_orphans": len(old),
        "old_orphans_removed_by_cleanup": pruned.temp_files,
        "young_orphans_kept_by_cleanup": young_kept,
        "clear_ok": cleared,
        "cache_files_left_after_clear": len(left),
    }


# -- concurrency under load ----------------------------------------------------------------------


def load(
    cache_dir: str,
    processes: int,
    *,
    operations: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    limit: int | None = 2_000_000,
    clear_share: float = 0.005,
) -> dict[str, Any]:
    """Run ``processes`` :func:`~tests.helpers.mixed_load` workers at once on one directory
    (each task for ``operations`` operations or for ``seconds``), then check what they left:
    ``verify``, every entry read, temp files, and the bytes of the entries against ``limit``."""
    totals: dict[str, Any] = {"processes": processes, "errors": []}
    with contextlib.ExitStack() as stack:
        gate = Gate(stack.enter_context(tempfile.TemporaryDirectory()), processes)
        workers = [
            stack.enter_context(
                Worker(
                    mixed_load,
                    cache_dir,
                    worker,
                    gate=gate,
                    seed=seed,
                    limit=limit,
                    clear_share=clear_share,
                    operations=operations,
                    seconds=seconds,
                )
            )
            for worker in range(processes)
        ]
        for worker in workers:
            try:
                counts = worker.result(timeout=(seconds or 60) * 4 + 120)
            except WorkerError as exc:
                totals["errors"].append(str(exc)[-2000:])
                continue
            for name, value in counts.items():
                if name == "errors":
                    totals["errors"] += value
                else:
                    totals[name] = totals.get(name, 0) + value
    cache = SyncTTSCache(cache_dir, sample_rate=16000)
    report = cache.verify()  # before the final reads, which would remove a corrupt file
    whole, torn = read_every_entry(cache)
    sizes = [info.size for info in cache.iter_entries()]
    totals.update(
        verify_ok=report.ok,
        verify_corrupt=len(report.corrupt),
        verify_empty_dirs=len(report.empty_dirs),
        entries_at_end=whole + torn,
        torn_entries_at_end=torn,
        bytes_at_end=sum(sizes),
        largest_entry=max(sizes, default=0),
        temp_files_left=len(temp_files(cache_dir)),
        operations=sum(
            totals.get(name, 0)
            for name in ("writes", "write_failures", "hits", "misses", "statuses", "clears")
        ),
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
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.cache_dir or scratch
        if args.command == "crash":
            report = crash(directory, args.kills, seed=args.seed)
        else:
            report = load(directory, args.processes, seconds=args.seconds, seed=args.seed)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
