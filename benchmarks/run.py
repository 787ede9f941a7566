"""The benchmark suite: every figure side by side with its baselines, in the same run.

Command: ``.venv/bin/python -m benchmarks.run`` (the full suite, about 20 minutes, writes
``benchmarks/results/full.{json,md}`` and ``full-status.png``), or ``--quick`` for a seconds-long
smoke version (``quick.*``), or ``--only status,read`` for some scenarios.

Each scenario's docstring gives its own command. Figures are medians of repeated runs, with min and
max, and every target is a ratio to a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiofiles.os
import anyio.to_thread
import numpy as np
import xxhash

from sparktts_cache import LongTextTTS, SyncTTSCache, TextSegmenter, TTSCache, generate_cache_key

from ._harness import (
    RESULTS,
    Figure,
    Results,
    machine_info,
    plot_status,
    time_async,
    time_interleaved,
    time_sync,
    write_results,
)
from .baselines import ObviousCache, read_raw, write_raw, write_raw_fsync

PARAMS = {
    "model_dir": "/models/Spark-TTS-0.5B",
    "gender": "female",
    "pitch": "moderate",
    "speed": "moderate",
    "emotion": "HAPPY",
    "temperature": 0.8,
    "top_k": 50,
    "top_p": 0.95,
}
RATE = 16000


class Config:
    def __init__(self, quick: bool, work: Path) -> None:
        self.quick = quick
        self.work = work
        self.repeats = 3 if quick else 7
        self.status_sizes = [100, 1000] if quick else [100, 1000, 10_000, 100_000]
        self.naive_max = 1000 if quick else 10_000
        self.latency_segments = 200 if quick else 2000
        self.audio_seconds = [1, 5] if quick else [1, 5, 20]
        self.scaling = (500, 5000) if quick else (10_000, 500_000)
        self.process_ops = 150 if quick else 1500
        self.long_text_segments = 200 if quick else 2000


def segments_of(count: int) -> list[str]:
    return [f"Sentence number {index} of a long book, read aloud." for index in range(count)]


def small_audio() -> np.ndarray:
    return np.zeros(16, dtype=np.float32)


@contextmanager
def fresh_dir(config: Config, name: str) -> Iterator[Path]:
    path = config.work / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- scenarios --------------------------------------------------------------------------------


async def bench_status(config: Config, results: Results) -> None:
    """get_cache_status, half cached, warm page cache, against the floor and the alternatives.

    Command: ``.venv/bin/python -m benchmarks.run --only status``
    """
    import diskcache

    for size in config.status_sizes:
        with fresh_dir(config, "status") as root:
            segments = segments_of(size)
            sync = SyncTTSCache(root / "ours", sample_rate=16000)
            obvious = ObviousCache(root / "obvious")
            disk = diskcache.Cache(str(root / "diskcache"))
            for text in segments[::2]:
                key = sync.generate_cache_key(text, PARAMS)
                sync.cache_data(key, small_audio(), text, PARAMS)
                obvious.put(obvious.key(text, PARAMS), small_audio(), text)
                disk.set(key, small_audio())
            cache = TTSCache(root / "ours", sample_rate=16000)
            paths = [str(cache.entry_path(sync.generate_cache_key(t, PARAMS))) for t in segments]
            await cache.get_cache_status(segments, PARAMS)  # warm the page cache and the code

            def stat_loop() -> None:
                for path in paths:
                    os.path.exists(path)

            def obvious_status() -> None:
                obvious.status(segments, PARAMS)

            def diskcache_status() -> None:
                for text in segments:
                    _ = generate_cache_key(text, PARAMS) in disk

            floor = results.add(
                Figure(
                    "get_cache_status",
                    "sync os.stat loop (paths given)",
                    size,
                    time_sync(stat_loop, config.repeats),
                )
            )
            runs, stall = await time_async(
                lambda: cache.get_cache_status(segments, PARAMS), config.repeats
            )
            ours = results.add(Figure("get_cache_status", "TTSCache (async)", size, runs, stall))
            results.add(
                Figure(
                    "get_cache_status",
                    "SyncTTSCache (keys + checks, one thread)",
                    size,
                    time_sync(lambda: sync.get_cache_status(segments, PARAMS), config.repeats),
                )
            )
            results.add(
                Figure(
                    "get_cache_status",
                    "obvious design (md5, SQLite index)",
                    size,
                    time_sync(obvious_status, config.repeats),
                )
            )
            results.add(
                Figure(
                    "get_cache_status",
                    "diskcache (key in cache)",
                    size,
                    time_sync(diskcache_status, config.repeats),
                )
            )
            if size in (10_000, 100_000) or (config.quick and size == config.status_sizes[-1]):
                results.ratio("status within 1.3x of the sync stat loop", ours, floor, 1.3)
            if size <= config.naive_max:

                async def aiofiles_gather() -> None:
                    await asyncio.gather(*(aiofiles.os.path.exists(p) for p in paths))

                async def thread_per_path() -> None:
                    await asyncio.gather(*(asyncio.to_thread(os.path.exists, p) for p in paths))

                repeats = max(3, config.repeats // 2)
                runs, stall = await time_async(aiofiles_gather, repeats)
                naive1 = results.add(
                    Figure("get_cache_status", "naive: gather aiofiles exists", size, runs, stall)
                )
                runs, stall = await time_async(thread_per_path, repeats)
                naive2 = results.add(
                    Figure("get_cache_status", "naive: one to_thread per path", size, runs, stall)
                )
                if size == config.naive_max:
                    results.ratio(
                        "status speed-up over gather(aiofiles)",
                        naive1,
                        ours,
                        10,
                        lower_is_better=False,
                    )
                    results.ratio(
                        "status speed-up over to_thread per path",
                        naive2,
                        ours,
                        10,
                        lower_is_better=False,
                    )
            disk.close()
            obvious.db.close()
            if size in (10_000, 100_000) or size == config.status_sizes[-1]:
                results.targets.append(
                    {
                        "target": "longest event-loop stall of status (ms)",
                        "size": size,
                        "ours": "TTSCache (async)",
                        "baseline": "-",
                        "ratio": ours.stall * 1e3 if ours.stall else 0.0,
                        "goal": "< 5 ms",
                        "met": (ours.stall or 0.0) < 0.005,
                    }
                )


async def bench_latency(config: Config, results: Results) -> None:
    """get_cache_status with 1 ms injected per file-system call, as on a network file system.

    Command: ``.venv/bin/python -m benchmarks.run --only latency``
    """
    import time as _time

    size = config.latency_segments
    with fresh_dir(config, "latency") as root:
        segments = segments_of(size)
        sync = SyncTTSCache(root, sample_rate=16000)
        for text in segments[::2]:
            sync.cache_data(sync.generate_cache_key(text, PARAMS), small_audio(), text, PARAMS)
        cache = TTSCache(root, sample_rate=16000)
        paths = [str(cache.entry_path(sync.generate_cache_key(t, PARAMS))) for t in segments]
        real_stat, real_access = os.stat, os.access

        def slow_stat(*args: Any, **kwargs: Any) -> Any:
            _time.sleep(0.001)  # releases the GIL, as a network round trip does
            return real_stat(*args, **kwargs)

        def slow_access(*args: Any, **kwargs: Any) -> Any:
            _time.sleep(0.001)
            return real_access(*args, **kwargs)

        os.stat, os.access = slow_stat, slow_access
        try:

            def sequential() -> None:
                for path in paths:
                    os.path.exists(path)

            floor = results.add(
                Figure(
                    "status, 1 ms per call",
                    "sequential os.stat loop",
                    size,
                    time_sync(sequential, 3),
                )
            )
            # The first anyio call of a process imports its asyncio backend (a 20 ms stall, once
            # a process, whatever the call): not this call's, so made before timing.
            await cache.get_cache_status(segments[:1], PARAMS)
            runs, stall = await time_async(
                lambda: cache.get_cache_status(segments, PARAMS), config.repeats
            )
            ours = results.add(
                Figure("status, 1 ms per call", "TTSCache (async)", size, runs, stall)
            )
        finally:
            os.stat, os.access = real_stat, real_access
        results.ratio("status speed-up with 1 ms latency", floor, ours, 20, lower_is_better=False)


async def bench_read_write(config: Config, results: Results) -> None:
    """get_cached_data and cache_data of 1, 5 and 20 s of 16 kHz audio, against raw files.

    Command: ``.venv/bin/python -m benchmarks.run --only read``
    """
    import diskcache

    for seconds in config.audio_seconds:
        audio = (np.random.default_rng(seconds).standard_normal(seconds * RATE) * 0.1).astype(
            np.float32
        )
        with fresh_dir(config, "io") as root:
            cache = TTSCache(root / "ours", sample_rate=16000)
            durable = TTSCache(root / "durable", fsync=True, sample_rate=16000)
            raw = root / "raw"
            raw.mkdir()
            obvious = ObviousCache(root / "obvious")
            disk = diskcache.Cache(str(root / "diskcache"))
            key = cache.generate_cache_key(f"{seconds} seconds", PARAMS)
            repeats = config.repeats * 5
            counter = iter(range(10**9))

            async def ours_write() -> None:
                assert await cache.cache_data(key, audio, "text", PARAMS)

            async def raw_write() -> None:
                await anyio.to_thread.run_sync(write_raw, str(raw), "entry.bin", audio)

            async def durable_write() -> None:
                assert await durable.cache_data(key, audio, "text", PARAMS)

            async def raw_fsync() -> None:
                await anyio.to_thread.run_sync(write_raw_fsync, str(raw), "entry.bin", audio)

            async def obvious_write() -> None:
                await anyio.to_thread.run_sync(obvious.put, f"{next(counter)}", audio, "text")

            async def disk_write() -> None:
                await anyio.to_thread.run_sync(disk.set, key, audio)

            timed = await time_interleaved(
                {
                    "TTSCache": ours_write,
                    "raw temp file + rename (one thread call)": raw_write,
                    "obvious design (np.save + SQLite)": obvious_write,
                    "diskcache": disk_write,
                },
                repeats,
            )
            w_ours, w_raw, _w_obvious, _w_disk = (
                results.add(Figure("cache_data", name, seconds, *measured))
                for name, measured in timed.items()
            )
            results.ratio("cache_data within 1.5x of raw temp+rename", w_ours, w_raw, 1.5)
            timed = await time_interleaved(
                {"TTSCache(fsync=True)": durable_write, "raw temp + fsync + rename": raw_fsync},
                repeats,
            )
            w_durable, w_raw_fsync = (
                results.add(Figure("cache_data", name, seconds, *measured))
                for name, measured in timed.items()
            )
            results.ratio(
                "cache_data(fsync=True) over raw temp+fsync+rename", w_durable, w_raw_fsync, None
            )

            obvious.put("read-me", audio, "text")
            raw_path = str(raw / "entry.bin")

            async def ours_read() -> None:
                assert await cache.get_cached_data(key) is not None

            async def raw_read() -> None:
                await anyio.to_thread.run_sync(read_raw, raw_path)

            async def obvious_read() -> None:
                await anyio.to_thread.run_sync(obvious.get, "read-me")

            async def disk_read() -> None:
                await anyio.to_thread.run_sync(disk.get, key)

            timed = await time_interleaved(
                {
                    "raw read + np.frombuffer (one thread call)": raw_read,
                    "TTSCache (checksum verified)": ours_read,
                    "obvious design (np.load + SQLite)": obvious_read,
                    "diskcache": disk_read,
                },
                repeats,
            )
            r_raw, r_ours, r_obv, r_disk = (
                results.add(Figure("get_cached_data", name, seconds, *measured))
                for name, measured in timed.items()
            )
            results.ratio("get_cached_data within 1.5x of raw read", r_ours, r_raw, 1.5)
            results.ratio("get_cached_data faster than the obvious design", r_ours, r_obv, 1.0)
            results.ratio("get_cached_data faster than diskcache", r_ours, r_disk, 1.0)
            disk.close()
            obvious.db.close()


async def bench_scaling(config: Config, results: Results) -> None:
    """get_cache_status of 10,000 segments in a cache of 10,000 vs 500,000 entries.

    Command: ``.venv/bin/python -m benchmarks.run --only scaling``
    """
    small, large = config.scaling
    segments = segments_of(small)
    figures: list[Figure] = []
    floors: list[Figure] = []
    with fresh_dir(config, "scaling") as root:
        sync = SyncTTSCache(root, sample_rate=16000)
        filled = 0
        for total in (small, large):
            while filled < total:  # the first `small` entries are the segments themselves
                text = segments[filled] if filled < small else f"filler {filled}"
                sync.cache_data(sync.generate_cache_key(text, PARAMS), small_audio(), text, PARAMS)
                filled += 1
            cache = TTSCache(root, sample_rate=16000)
            probe = segments[::2] + [f"missing {i}" for i in range(small // 2)]
            paths = [str(cache.entry_path(sync.generate_cache_key(t, PARAMS))) for t in probe]
            await cache.get_cache_status(probe, PARAMS)

            def status(cache: TTSCache = cache, probe: list[str] = probe) -> Any:
                return cache.get_cache_status(probe, PARAMS)

            def stat_loop(paths: list[str] = paths) -> None:
                for path in paths:
                    os.path.exists(path)

            floors.append(
                results.add(
                    Figure(
                        "status vs cache size",
                        f"sync os.stat loop, cache of {total}",
                        small,
                        time_sync(stat_loop, config.repeats),
                    )
                )
            )
            runs, stall = await time_async(status, config.repeats)
            figures.append(
                results.add(
                    Figure("status vs cache size", f"cache of {total} entries", small, runs, stall)
                )
            )
    results.ratio(
        "os.stat loop per path, large vs small cache (the file system's own growth)",
        floors[1],
        floors[0],
        None,
    )
    results.ratio("status per segment, large vs small cache", figures[1], figures[0], 1.2)


def _process_worker(root: str, worker: int, ops: int, queue: Any, done: Any) -> None:
    cache = SyncTTSCache(root, sample_rate=16000)
    audio = (np.arange(RATE, dtype=np.float32) / RATE).astype(np.float32)  # 1 s
    done.put("ready")
    queue.get()  # start together
    began = time.perf_counter()
    for index in range(ops):
        text = f"worker {worker} sentence {index}"
        key = cache.generate_cache_key(text, PARAMS)
        cache.cache_data(key, audio, text, PARAMS)
        assert cache.get_cached_data(key) is not None
    done.put((began, time.perf_counter()))


def _throughput(root: Path, processes: int, ops: int) -> float:
    context = multiprocessing.get_context("spawn")
    queue, done = context.Queue(), context.Queue()
    workers = [
        context.Process(target=_process_worker, args=(str(root), w, ops, queue, done))
        for w in range(processes)
    ]
    for proc in workers:
        proc.start()
    for _ in workers:  # every worker has imported everything and is waiting
        assert done.get(timeout=120) == "ready"
    for _ in workers:
        queue.put(True)
    spans: list[tuple[float, float]] = [done.get(timeout=600) for _ in workers]
    for proc in workers:
        proc.join()
    # From the first start to the last finish, as the workers timed themselves (no start-up).
    return processes * ops / (max(end for _, end in spans) - min(began for began, _ in spans))


async def bench_processes(config: Config, results: Results) -> None:
    """Aggregate write+read throughput of 1 and 2 processes on distinct keys (1 s entries).

    Command: ``.venv/bin/python -m benchmarks.run --only processes``
    """
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(1 if config.quick else 3):
        for count in (1, 2):
            with fresh_dir(config, f"procs{count}") as root:
                rates[count].append(_throughput(root, count, config.process_ops))
    # Record seconds per operation, so that lower is better like every other figure.
    one = results.add(Figure("processes, write+read", "1 process", 1, [1 / r for r in rates[1]]))
    two = results.add(Figure("processes, write+read", "2 processes", 2, [1 / r for r in rates[2]]))
    results.ratio("throughput of 2 processes over 1", one, two, 1.5, lower_is_better=False)


class _InstantModel:
    sample_rate = RATE

    def inference(self, text: str) -> np.ndarray:
        return np.full(RATE // 2, len(text) / 100, dtype=np.float32)


async def bench_long_text(config: Config, results: Results) -> None:
    """LongTextTTS.generate of a fully cached text, against reading the same segments raw.

    Command: ``.venv/bin/python -m benchmarks.run --only long_text``
    """
    count = config.long_text_segments
    paragraphs = [f"This is sentence number {i}, which is cached already." for i in range(count)]
    text = "\n\n".join(paragraphs)
    with fresh_dir(config, "long") as root:
        tts = LongTextTTS(_InstantModel(), cache_dir=root / "cache", segmenter=TextSegmenter())
        audio, _ = await tts.generate(text)
        raw = root / "raw"
        raw.mkdir()
        paths = []
        for index, segment in enumerate(TextSegmenter().segment_text(text)):
            path = raw / f"{index}.bin"
            path.write_bytes(np.full(RATE // 2, len(segment) / 100, np.float32).tobytes())
            paths.append(str(path))
        pause = np.zeros(round(0.3 * RATE), np.float32)

        def raw_join() -> np.ndarray:
            pieces: list[np.ndarray] = []
            for path in paths:
                if pieces:
                    pieces.append(pause)
                pieces.append(read_raw(path))
            return np.concatenate(pieces)

        assert np.array_equal(raw_join(), audio)

        async def ours() -> None:
            _, cached = await tts.generate(text)
            assert cached

        async def floor() -> None:
            await anyio.to_thread.run_sync(raw_join)

        base = results.add(
            Figure(
                "generate, fully cached",
                "raw reads + concatenate (one thread)",
                count,
                *(await time_async(floor, config.repeats)),
            )
        )
        runs, stall = await time_async(ours, config.repeats)
        mine = results.add(
            Figure("generate, fully cached", "LongTextTTS.generate", count, runs, stall)
        )
        results.ratio("generate within 1.5x of raw reads", mine, base, 1.5)


async def bench_keys(config: Config, results: Results) -> None:
    """generate_cache_key against its floor, json.dumps plus xxh3 of the same dict.

    Command: ``.venv/bin/python -m benchmarks.run --only keys``
    """
    text = "The quick brown fox jumps over the lazy dog, again and again."
    count = 20_000 if config.quick else 200_000

    def ours() -> None:
        for _ in range(count):
            generate_cache_key(text, PARAMS)

    def floor() -> None:
        for _ in range(count):
            xxhash.xxh3_128_hexdigest(json.dumps([text, PARAMS], sort_keys=True).encode())

    base = results.add(
        Figure("generate_cache_key", "json.dumps + xxh3", count, time_sync(floor, config.repeats))
    )
    mine = results.add(
        Figure("generate_cache_key", "generate_cache_key", count, time_sync(ours, config.repeats))
    )
    results.ratio("generate_cache_key within 1.5x of json.dumps+xxh3", mine, base, 1.5)


DEMO_TEXT = Path(__file__).parent.parent / "examples" / "texts" / "founding-documents.txt"


async def bench_piper(config: Config, results: Results) -> None:
    """What the cache is worth in front of a real neural engine: Piper and its bundled voice.

    On the bundled public-domain text (the whole of it; ``--quick``: its first segment): a fully
    cached ``generate`` against the uncached one; ``stream``'s first chunk against the first
    segment's own synthesis; uncached throughput by ``max_concurrency`` and onnxruntime's
    ``intra_op_num_threads`` (on the first 12 segments); and voice stability (two uncached
    syntheses differ, every cached read is bit-identical). About 8 minutes on 2 busy cores.

    Command: ``.venv/bin/python -m benchmarks.run --only piper``
    """
    from sparktts_cache import MissingDependencyError
    from sparktts_cache.engines import PiperModel

    try:
        models = {1: PiperModel(intra_op_num_threads=1)}
    except MissingDependencyError as exc:
        print(f"  skipped: {exc}", flush=True)
        return
    if not config.quick:
        models[2] = PiperModel(intra_op_num_threads=2)
    segmenter = TextSegmenter()
    segments = segmenter.segment_text(DEMO_TEXT.read_text(encoding="utf-8"))
    whole = "\n\n".join(segments[:1] if config.quick else segments)
    part = "\n\n".join(segments[:1] if config.quick else segments[:12])
    count, part_count = len(segmenter.segment_text(whole)), len(segmenter.segment_text(part))
    runs = itertools.count()

    async def uncached(text: str, threads: int, concurrency: int) -> tuple[float, LongTextTTS]:
        root = config.work / f"piper-{next(runs)}"
        tts = LongTextTTS(models[threads], cache_dir=root, max_concurrency=concurrency)
        began = time.perf_counter()
        _, cached = await tts.generate(text)
        elapsed = time.perf_counter() - began
        assert not cached
        return elapsed, tts

    # Throughput of uncached synthesis, interleaved so that drift hits every setting alike.
    settings = [(1, 1), (1, 2)] if config.quick else [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    timings: dict[tuple[int, int], list[float]] = {setting: [] for setting in settings}
    for round_number in range(1 if config.quick else 2):
        shift = round_number % len(settings)
        for setting in settings[shift:] + settings[:shift]:
            timings[setting].append((await uncached(part, *setting))[0])
    figures = {
        setting: results.add(
            Figure(
                "piper: uncached generate",
                f"intra_op_num_threads={setting[0]}, max_concurrency={setting[1]}",
                part_count,
                timings[setting],
            )
        )
        for setting in settings
    }
    base = figures[(1, 1)]
    best_setting = min(settings, key=lambda setting: figures[setting].median)
    results.ratio(
        f"piper: uncached throughput, best setting (intra_op {best_setting[0]}, "
        f"max_concurrency {best_setting[1]}) over max_concurrency 1",
        base,
        figures[best_setting],
        1.5,
        lower_is_better=False,
    )
    for setting in settings[1:]:
        results.ratio(
            f"piper: uncached time, intra_op {setting[0]} max_concurrency {setting[1]} "
            "over intra_op 1 max_concurrency 1",
            figures[setting],
            base,
            None,
        )

    # The whole text: uncached once (with the best setting), then fully cached.
    elapsed, tts = await uncached(whole, *best_setting)
    slow = results.add(
        Figure(
            "piper: generate",
            f"uncached (intra_op {best_setting[0]}, max_concurrency {best_setting[1]})",
            count,
            [elapsed],
        )
    )
    first_audio, cached = await tts.generate(whole)
    assert cached

    async def cached_generate() -> None:
        audio, cached = await tts.generate(whole)
        assert cached and np.array_equal(audio, first_audio)  # every cached read bit-identical

    timed, stall = await time_async(cached_generate, config.repeats)
    fast = results.add(Figure("piper: generate", "fully cached", count, timed, stall))
    results.ratio("piper: cached generate speed-up over uncached", slow, fast, 300,
                  lower_is_better=False)  # fmt: skip

    # stream: time to the first chunk against the first segment's own synthesis.
    model = models[1]
    first_segment = segments[0]

    async def first_chunk() -> None:
        root = config.work / f"piper-{next(runs)}"
        stream = LongTextTTS(model, cache_dir=root).stream(whole)
        async with contextlib.aclosing(stream):
            chunk = await anext(stream)
        assert len(chunk) > 0

    async def own_synthesis() -> None:
        await anyio.to_thread.run_sync(model.inference, first_segment)

    timed_both = await time_interleaved(
        {"first chunk of stream (fresh cache)": first_chunk,
         "the first segment's own synthesis": own_synthesis},
        2 if config.quick else 7,
    )  # fmt: skip
    chunk_figure, own_figure = (
        results.add(Figure("piper: stream", name, count, *measured))
        for name, measured in timed_both.items()
    )
    results.ratio("piper: stream's first chunk over the first segment's synthesis",
                  chunk_figure, own_figure, 1.3)  # fmt: skip
    results.ratio("piper: stream's first chunk over the whole uncached text",
                  chunk_figure, slow, None)  # fmt: skip

    # Voice stability: the engine is random, the cache is not.
    made = [await anyio.to_thread.run_sync(model.inference, first_segment) for _ in range(2)]
    differ = not np.array_equal(made[0], made[1])
    key = tts.cache.generate_cache_key(first_segment, tts.key_params(None))
    reads = [await tts.cache.get_cached_data(key) for _ in range(5 if config.quick else 50)]
    assert reads[0] is not None
    identical = sum(read is not None and np.array_equal(read, reads[0]) for read in reads)
    results.targets.append(
        {
            "target": "piper: two uncached syntheses differ; cached reads bit-identical",
            "size": len(reads),
            "ours": f"uncached {'differ' if differ else 'EQUAL'}, "
            f"{identical}/{len(reads)} cached reads identical",
            "baseline": "-",
            "ratio": identical / len(reads),
            "goal": "differ, all identical",
            "met": differ and identical == len(reads),
        }
    )
    print(f"  -> voice stability: uncached differ {differ}, {identical}/{len(reads)} identical")


async def bench_server(config: Config, results: Results) -> None:
    """``sparktts-cache serve`` against static files served by the same server process.

    The demo text, fully cached, requested again as mp3, against the same mp3 bytes as a static
    file (``--quick``: its first 8 segments); 32 concurrent clients, each with its own keep-alive
    connection, requesting cached texts, against the same bytes as static files; and the time to
    the first byte of an uncached long text with Piper against the first segment's own synthesis
    plus encoding in this process. See :mod:`benchmarks.server`.

    Command: ``.venv/bin/python -m benchmarks.run --only server``
    """
    from .server import Connection, running_server

    segments = TextSegmenter().segment_text(DEMO_TEXT.read_text(encoding="utf-8"))
    whole = "\n\n".join(segments[:8] if config.quick else segments)
    count = len(TextSegmenter().segment_text(whole))
    limit = str(len(whole) + 1000)
    async with running_server(config.work, "espeak", "--engine", "espeak", "--cache-headers",
                              "--max-input-chars", limit) as address:  # fmt: skip
        static = config.work / "espeak-static"
        connection = await Connection.open(address)
        request = {"model": "tts-1", "voice": "alloy", "input": whole, "response_format": "mp3"}
        began = time.perf_counter()
        status, headers, first = await connection.request("POST", "/v1/audio/speech", request)
        assert status == 200 and headers["x-cache"] == "miss", (status, headers)
        print(f"  (first synthesis of {count} segments: {time.perf_counter() - began:.1f} s)")
        status, headers, body = await connection.request("POST", "/v1/audio/speech", request)
        assert status == 200 and headers["x-cache"] == "hit" and body == first
        (static / "long.mp3").write_bytes(body)

        async def cached_speech() -> None:
            status, headers, body = await connection.request("POST", "/v1/audio/speech", request)
            assert status == 200 and headers["x-cache"] == "hit" and len(body) == len(first)

        async def static_file() -> None:
            status, _, body = await connection.request("GET", "/static/long.mp3")
            assert status == 200 and len(body) == len(first)

        timed = await time_interleaved(
            {"cached speech request (stored response)": cached_speech,
             "the same bytes as a static file": static_file},
            config.repeats,
        )  # fmt: skip
        ours, base = (
            results.add(
                Figure(f"server: demo text as mp3 ({len(first) >> 10} KiB)", name, count, *measured)
            )
            for name, measured in timed.items()
        )
        results.ratio("server: cached long text as mp3 over the static file", ours, base, 1.5)
        await connection.close()

        # 32 clients at once, cached texts (a text each, a few segments long).
        clients, texts = 32, 32
        rounds = 3 if config.quick else 20
        bodies = []
        connection = await Connection.open(address)
        for number in range(texts):
            text = f"Client text {number}. " + " ".join(
                segments[number % len(segments) : number % len(segments) + 2]
            )
            speech = {"model": "tts-1", "voice": "echo", "input": text, "response_format": "mp3"}
            for _ in range(2):  # made, then kept
                status, headers, body = await connection.request("POST", "/v1/audio/speech", speech)
                assert status == 200
            assert headers["x-cache"] == "hit"
            (static / f"{number}.mp3").write_bytes(body)
            bodies.append((speech, len(body)))
        await connection.close()
        connections = [await Connection.open(address) for _ in range(clients)]
        failures = [0]

        async def client(index: int, speech_requests: bool) -> None:
            connection = connections[index]
            for round_number in range(rounds):
                number = (index + round_number) % texts
                speech, size = bodies[number]
                if speech_requests:
                    status, _, body = await connection.request("POST", "/v1/audio/speech", speech)
                else:
                    status, _, body = await connection.request("GET", f"/static/{number}.mp3")
                if status != 200 or len(body) != size:
                    failures[0] += 1

        async def all_clients(speech_requests: bool) -> None:
            await asyncio.gather(*(client(i, speech_requests) for i in range(clients)))

        timed = await time_interleaved(
            {"cached speech requests": lambda: all_clients(True),
             "the same bytes as static files": lambda: all_clients(False)},
            config.repeats,
        )  # fmt: skip
        for connection in connections:
            await connection.close()
        ours, base = (
            results.add(
                Figure(f"server: {clients} clients x {rounds} requests", name, clients, *measured)
            )
            for name, measured in timed.items()
        )
        requests = clients * rounds
        print(f"  -> requests per second: speech {requests / ours.median:.0f}, "
              f"static {requests / base.median:.0f}; failed {failures[0]}")  # fmt: skip
        results.ratio(f"server: {clients} concurrent clients, time for {requests} cached "
                      "requests over static files (inverse of requests per second)",
                      ours, base, 1.5)  # fmt: skip
        results.targets.append(
            {
                "target": f"server: no request failing ({clients} concurrent clients)",
                "size": requests * config.repeats * 2,
                "ours": f"{failures[0]} failed",
                "baseline": "-",
                "ratio": failures[0],
                "goal": "0",
                "met": failures[0] == 0,
            }
        )

    await _bench_server_first_byte(config, results, segments)


async def _bench_server_first_byte(config: Config, results: Results, segments: list[str]) -> None:
    """Time to first byte of an uncached long text with Piper, against the first segment's own
    synthesis plus its mp3 encoding, in this process, on an idle server (interleaved). Each
    request is the demo text from another segment on (``--quick``: 4 segments of it), so that its
    first segment is new; the client leaves after the first byte."""
    from sparktts_cache import MissingDependencyError
    from sparktts_cache.engines import PiperModel
    from sparktts_cache.server.audio_formats import StreamEncoder

    from .server import Connection, running_server

    try:
        model = PiperModel()
    except MissingDependencyError as exc:
        print(f"  skipped: {exc}", flush=True)
        return
    repeats = 2 if config.quick else 7
    stride = 5
    starts = [index * stride for index in range(repeats)]
    texts = ["\n\n".join(segments[start : start + 4] if config.quick else segments[start:])
             for start in starts]  # fmt: skip
    length = min(len(TextSegmenter().segment_text(text)) for text in texts)
    async with running_server(config.work, "piper", "--engine", "piper", "--cache-headers",
                              "--max-input-chars", "20000") as address:  # fmt: skip

        async def first_byte(text: str) -> float:
            speech = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "mp3"}
            connection = await Connection.open(address)
            try:
                return await connection.first_byte("POST", "/v1/audio/speech", speech)
            finally:
                await connection.close()

        async def server_idle() -> None:
            """Wait (untimed) until the server has stopped the abandoned request's next
            segment, so that it does not compete with what is timed next."""
            connection = await Connection.open(address)
            try:
                while True:
                    _, _, body = await connection.request("GET", "/metrics")
                    busy = next(
                        float(line.split()[-1])
                        for line in body.decode().splitlines()
                        if line.startswith("sparktts_requests_in_progress")
                    )
                    if busy <= 1:  # this request only
                        return
                    await asyncio.sleep(0.02)
            finally:
                await connection.close()

        def synthesise_and_encode(segment: str) -> float:
            began = time.perf_counter()
            encoder = StreamEncoder("mp3", model.sample_rate, 1.0)
            try:
                data = encoder.encode(model.inference(segment))
            finally:
                encoder.close()
            assert data
            return time.perf_counter() - began

        # Both warm (a server answers its first request with a cold engine only once).
        warm_up = "A sentence to warm the engine up, which the demo text does not hold."
        await first_byte(warm_up)
        await server_idle()
        await anyio.to_thread.run_sync(synthesise_and_encode, warm_up)
        served: list[float] = []
        own: list[float] = []
        for round_number, (start, text) in enumerate(zip(starts, texts, strict=True)):
            for which in ("server", "own") if round_number % 2 == 0 else ("own", "server"):
                if which == "server":
                    served.append(await first_byte(text))
                    await server_idle()
                else:
                    own.append(await anyio.to_thread.run_sync(synthesise_and_encode,
                                                              segments[start]))  # fmt: skip
        ours = results.add(
            Figure(
                "server: piper, first byte",
                "first byte of an uncached long text (server)",
                length,
                served,
            )
        )
        base = results.add(
            Figure(
                "server: piper, first byte", "first segment: synthesis + mp3 encoding", length, own
            )
        )
        results.ratio("server: piper first byte over the first segment's synthesis + encoding",
                      ours, base, 1.3)  # fmt: skip


class _SecondsModel:
    """A stand-in engine: ``seconds`` of audio per segment, made at once."""

    sample_rate = RATE

    def __init__(self, seconds: float) -> None:
        self.samples = round(seconds * RATE)

    def inference(self, text: str) -> np.ndarray:
        return np.full(self.samples, len(text) / 1000, dtype=np.float32)


def _distinct_copies(text: str, copies: int) -> str:
    """``copies`` copies of ``text``, each paragraph of copy k opening with "Copy k." so that the
    copies' segments differ (and none is served by another copy's cache entries)."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    return "\n\n".join(
        f"Copy {copy}. {paragraph}" for copy in range(1, copies + 1) for paragraph in paragraphs
    )


#: Runs the command line in a child that writes its own peak RSS (``VmHWM``, in kB) to a file at
#: exit. Not ``wait4``'s ``ru_maxrss``: on Linux a child's starts from its parent's high-water mark
#: (recorded when the child execs), so a child of a large benchmark process would report at least
#: that.
_PEAK_RSS_WRAPPER = """
import atexit, runpy, sys
record_in = sys.argv.pop(1)
def record():
    with open("/proc/self/status") as status, open(record_in, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
atexit.register(record)
sys.argv[0] = "sparktts-cache"
runpy.run_module("sparktts_cache", run_name="__main__", alter_sys=True)
"""


def _synth_peak_rss(root: Path, text_file: Path) -> tuple[int, str]:
    """Run ``sparktts-cache synth`` (eSpeak) in a subprocess: its peak RSS (bytes) and the line
    it prints (Linux: the peak is read from ``/proc``)."""
    record = root / "peak-rss"
    command = [sys.executable, "-c", _PEAK_RSS_WRAPPER, str(record),
               "--cache-dir", str(root / "cache"),
               "synth", "--file", str(text_file), "-o", str(root / "out.wav")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode:
        raise RuntimeError(f"synth failed ({done.returncode}): {done.stderr}")
    return int(record.read_text()) * 1024, done.stdout.strip()


async def bench_memory(config: Config, results: Results) -> None:
    """Peak memory against the length of the text: ``LongTextTTS.stream`` (traced by tracemalloc
    in this process, cached and uncached, with a stand-in engine making 2 s of 16 kHz audio a
    segment) and ``sparktts-cache synth`` (peak RSS of the subprocess, eSpeak, the demo text in 1,
    4 and 16 distinct copies). Memory must stay flat: bounded by the read-ahead window, not the
    text. Also the time to the first chunk of a cached stream, against the text's length.

    Command: ``.venv/bin/python -m benchmarks.run --only memory``
    """
    import tracemalloc

    base = 10 if config.quick else len(TextSegmenter().segment_text(DEMO_TEXT.read_text()))
    multiples = (1, 4) if config.quick else (1, 4, 16)
    model = _SecondsModel(0.5 if config.quick else 2.0)
    peaks: dict[str, list[Figure]] = {"uncached": [], "cached": []}
    first_chunks: list[Figure] = []
    audio: list[Figure] = []
    with fresh_dir(config, "memory") as root:  # first-time allocations (imports) not counted
        async for _chunk in LongTextTTS(model, cache_dir=root).stream("Warm. Up."):
            pass
    for multiple in multiples:
        count = base * multiple
        text = "\n\n".join(f"Sentence {index} of the memory benchmark." for index in range(count))
        with fresh_dir(config, "memory") as root:
            tts = LongTextTTS(model, cache_dir=root)

            async def consume(tts: LongTextTTS = tts, text: str = text) -> int:
                chunks = 0
                async for _chunk in tts.stream(text):
                    chunks += 1
                return chunks

            for kind in ("uncached", "cached"):
                tracemalloc.start()
                try:
                    assert await consume() == count
                    _now, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                peaks[kind].append(
                    results.add(
                        Figure(
                            f"stream peak memory ({kind})",
                            "LongTextTTS.stream",
                            count,
                            [float(peak)],
                            unit="B",
                        )
                    )
                )
            audio_bytes = count * model.samples * 4
            audio.append(
                results.add(
                    Figure(
                        "stream peak memory",
                        "the text's audio (float32)",
                        count,
                        [float(audio_bytes)],
                        unit="B",
                    )
                )
            )

            async def first_chunk(tts: LongTextTTS = tts, text: str = text) -> None:
                stream = tts.stream(text)
                async with contextlib.aclosing(stream):
                    await anext(stream)

            runs, stall = await time_async(first_chunk, config.repeats)
            if multiple == multiples[-1]:
                whole = results.add(
                    Figure(
                        "stream whole text, cached",
                        "LongTextTTS.stream",
                        count,
                        *(await time_async(consume, max(3, config.repeats // 2))),
                    )
                )
            first_chunks.append(
                results.add(
                    Figure("stream first chunk, cached", "LongTextTTS.stream", count, runs, stall)
                )
            )
    # Flat against the audio: what still grows is the bookkeeping of the whole text (its
    # segments, their keys and the status: a few hundred bytes a segment, 0.1 % of its audio).
    for kind, figures in peaks.items():
        results.ratio(f"stream peak memory ({kind}) over the text's audio, {multiples[-1]}x",
                      figures[-1], audio[-1], 0.05)  # fmt: skip
        results.ratio(f"stream peak memory ({kind}), {multiples[-1]}x the text over 1x",
                      figures[-1], figures[0], None)  # fmt: skip
    # The first chunk needs the segments and one status call of the whole text (linear, and
    # microseconds a segment), then one segment's read: not the rest of the text's.
    results.ratio(f"stream first cached chunk, {multiples[-1]}x the text over 1x",
                  first_chunks[-1], first_chunks[0], None)  # fmt: skip
    results.ratio(f"stream first cached chunk over the whole cached stream, {multiples[-1]}x",
                  first_chunks[-1], whole, 0.1)  # fmt: skip

    from sparktts_cache import MissingDependencyError, load_tts_model

    try:
        load_tts_model("espeak")
    except MissingDependencyError as exc:
        print(f"  synth skipped: {exc}", flush=True)
        return
    demo = DEMO_TEXT.read_text(encoding="utf-8")
    if config.quick:
        demo = "\n\n".join(demo.split("\n\n")[:3])
    rss: dict[str, list[Figure]] = {"uncached": [], "cached": []}
    for multiple in multiples:
        with fresh_dir(config, "memory-synth") as root:
            text_file = root / "text.txt"
            text_file.write_text(_distinct_copies(demo, multiple), encoding="utf-8")
            for kind in ("uncached",) if config.quick else ("uncached", "cached"):
                peak, report = _synth_peak_rss(root, text_file)
                segments = int(report.split()[0])
                if kind == "cached":
                    assert " 0 synthesised" in report, report
                rss[kind].append(
                    results.add(
                        Figure(
                            f"synth peak RSS ({kind})",
                            "sparktts-cache synth (eSpeak)",
                            segments,
                            [float(peak)],
                            unit="B",
                        )
                    )
                )
    for kind, figures in rss.items():
        if not figures:  # --quick: a subprocess a second, so uncached only
            continue
        results.ratio(f"synth peak RSS ({kind}), {multiples[-1]}x the text over 1x",
                      figures[-1], figures[0], 1.5)  # fmt: skip


SCENARIOS: dict[str, Callable[[Config, Results], Any]] = {
    "keys": bench_keys,
    "status": bench_status,
    "latency": bench_latency,
    "read": bench_read_write,
    "scaling": bench_scaling,
    "processes": bench_processes,
    "long_text": bench_long_text,
    "memory": bench_memory,
    "piper": bench_piper,
    "server": bench_server,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--only", help=f"comma-separated scenarios of {', '.join(SCENARIOS)}")
    parser.add_argument("--name", help="results file name (default: quick or full)")
    parser.add_argument("--work-dir", help="where to build caches (default: a temp dir)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where to write results")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    name = args.name or ("quick" if args.quick else "full")
    results = Results()
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        config = Config(args.quick, Path(work))
        info = machine_info(Path(work))
        for scenario in chosen:
            print(f"[{scenario}]", flush=True)
            asyncio.run(SCENARIOS[scenario](config, results))
    path = write_results(results, info, name, args.results_dir)
    plot_status(results, name, args.results_dir)
    missed = [t for t in results.targets if not t["met"]]
    print(
        f"wrote {path}; {len(results.targets) - len(missed)} of {len(results.targets)} targets met"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
