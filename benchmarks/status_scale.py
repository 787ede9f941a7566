"""``get_cache_status`` at 10,000, 100,000 and 1,000,000 segments: event-loop stall and memory.

Command: ``.venv/bin/python -m benchmarks.status_scale`` (a few minutes; prints the figures and
writes ``benchmarks/results/status_scale.json``).

Each size runs in a fresh process (so that one size's memory does not hide another's) against a
cache holding every tenth segment. A 1 ms heartbeat on the event loop records the stalls during
the calls (the longest, the 99.9th percentile and how many passed 5 ms), and apart from them:

- the floor of this machine: the same heartbeat for as long as the status calls took, while a
  worker thread runs a plain busy loop that pauses for the GIL as the status code does. This is a
  shared virtual machine: other tenants take its cores now and then, stopping both threads at
  once for 5-10 ms whatever they run, so a worst stall is partly luck and is read against this;
- the stall of the caller dropping the answer (a million key strings freed on the loop: the
  caller's cost, which ``del`` in a worker thread avoids).

It also counts how often a call's checks were spread over threads (two rounds of checks in a row
mostly waited, as on a cold disk: see ``status.Governor``), from the library's debug log.

Peak memory is what ``tracemalloc`` saw allocated during one more call (traced, so not timed),
next to the size of the answer (its lists and the key strings).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import multiprocessing
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sparktts_cache import SyncTTSCache, TTSCache
from sparktts_cache._core.gil import CHUNK, GilYielder

from ._harness import RESULTS, machine_info
from .run import PARAMS, segments_of

SIZES = (10_000, 100_000, 1_000_000)
CACHED_EVERY = 10
REPEATS = 3


def _deep_size(status: Any) -> int:
    """Bytes of the answer: its three lists and the key strings (the segments are the caller's)."""
    keys = status.cache_keys
    return (
        sys.getsizeof(keys)
        + sum(map(sys.getsizeof, keys))
        + sys.getsizeof(status.cached_keys)
        + sys.getsizeof(status.segments_to_generate)
    )


STALL_MS = 5.0


def _summary(stalls: list[float]) -> dict[str, float]:
    ordered = sorted(stalls)
    return {
        "worst_ms": ordered[-1] * 1e3,
        "p999_ms": ordered[int(len(ordered) * 0.999)] * 1e3,
        "over_5ms": sum(stall * 1e3 > STALL_MS for stall in ordered),
        "beats": len(ordered),
    }


def _listed(values: list[float]) -> str:
    return " / ".join(f"{value:.1f}" for value in values)


def _busy_worker(seconds: float) -> None:
    yielder = GilYielder()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(CHUNK))
        yielder.pause_if_due()


class _Spread(logging.Handler):
    """Counts the library's "checks wait" debug records: status calls that spread over threads."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("status: checks wait")


def _measure(size: int, root: str, queue: Any) -> None:
    spread = _Spread()
    library_log = logging.getLogger("sparktts_cache")
    library_log.addHandler(spread)
    library_log.setLevel(logging.DEBUG)
    segments = segments_of(size)
    sync = SyncTTSCache(root, sample_rate=16000)
    keys = sync.get_cache_status(segments, PARAMS).cache_keys
    for key, segment in list(zip(keys, segments, strict=True))[::CACHED_EVERY]:
        sync.cache_data(key, __import__("numpy").zeros(16, "float32"), segment, PARAMS)
    del keys
    cache = TTSCache(root, sample_rate=16000)

    async def main() -> dict[str, Any]:
        stalls: list[float] = []  # during get_cache_status
        call_worst: list[float] = []  # the worst of each call
        floor_worst: list[float] = []
        floor_stalls: list[float] = []  # during a worker thread's plain busy loop
        free_stalls = [0.0]  # while the caller drops the answer (its million strings)
        phase: list[list[float]] = [[]]
        done = asyncio.Event()

        async def heartbeat() -> None:
            while not done.is_set():
                began = time.perf_counter()
                await asyncio.sleep(0.001)
                phase[0].append(time.perf_counter() - began - 0.001)

        # The first anyio call of a process imports its asyncio backend (20 ms, once a process,
        # whatever the call): not the status call's stall. And the caller's own list of a million
        # segments, just made, is walked once by CPython's cycle collector whichever thread
        # triggers it (50 ms here; the status call's own containers never are): also not the
        # status call's, and reported in docs/performance.md.
        await cache.get_cache_status(segments[:1], PARAMS)
        gc.collect()
        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.01)
        seconds, peaks, answer = [], [], 0
        for repeat in range(REPEATS + 1):
            traced = repeat == REPEATS  # the last run traces memory (which slows it), untimed
            if traced:
                done.set()
                await beat
                tracemalloc.start()
            call_stalls: list[float] = []
            phase[0] = call_stalls
            began = time.perf_counter()
            status = await cache.get_cache_status(segments, PARAMS)
            if traced:
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
            else:
                seconds.append(time.perf_counter() - began)
            if traced:  # a million getsizeof calls on the loop would be a stall of its own
                answer = _deep_size(status)
            assert len(status.cached_keys) == (size + CACHED_EVERY - 1) // CACHED_EVERY
            phase[0] = []
            if not traced:
                stalls += call_stalls
                call_worst.append(max(call_stalls, default=0.0) * 1e3)
            await asyncio.sleep(0.05)
            phase[0] = free_stalls
            await asyncio.sleep(0.005)
            del status  # the caller's own cost, on the loop: reported apart
            await asyncio.sleep(0.05)
            if not traced:
                # The floor, right after, for as long: the same heartbeat while a worker thread
                # runs a pure-Python loop that pauses for the GIL as the status code does.
                call_floor: list[float] = []
                phase[0] = call_floor
                await asyncio.to_thread(_busy_worker, seconds[-1])
                phase[0] = []
                floor_stalls += call_floor
                floor_worst.append(max(call_floor, default=0.0) * 1e3)
        return {
            "size": size,
            "seconds": seconds,
            "stalls": _summary(stalls) | {"per_call_worst_ms": call_worst},
            "spread_over_threads": spread.count,
            "floor": _summary(floor_stalls) | {"per_call_worst_ms": floor_worst},
            "free_stall_ms": max(free_stalls) * 1e3,
            "peak_mb": max(peaks) / 1e6,
            "answer_mb": answer / 1e6,
        }

    queue.put(asyncio.run(main()))


def main() -> int:
    figures = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as work:
        for size in SIZES:
            queue = context.Queue()
            process = context.Process(target=_measure, args=(size, f"{work}/{size}", queue))
            process.start()
            row = queue.get()
            process.join()
            figures.append(row)
            stalls, floor = row["stalls"], row["floor"]
            print(
                f"{size:>9} segments  median {sorted(row['seconds'])[1]:.3f} s  stalls: worst "
                f"{stalls['worst_ms']:.1f} ms, 99.9% {stalls['p999_ms']:.1f} ms, "
                f"{stalls['over_5ms']}/{stalls['beats']} over 5 ms (a busy worker thread "
                f"as long: {floor['worst_ms']:.1f} ms, {floor['p999_ms']:.1f} ms, "
                f"{floor['over_5ms']}/{floor['beats']}); worst of each call "
                f"{_listed(stalls['per_call_worst_ms'])} ms (busy worker "
                f"{_listed(floor['per_call_worst_ms'])})  dropping the answer "
                f"{row['free_stall_ms']:.1f} ms  peak {row['peak_mb']:.0f} MB  "
                f"answer {row['answer_mb']:.0f} MB  spread over threads "
                f"{row['spread_over_threads']} times",
                flush=True,
            )
        info = machine_info(Path(work))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "status_scale.json").write_text(
        json.dumps({"machine": info, "figures": figures}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
