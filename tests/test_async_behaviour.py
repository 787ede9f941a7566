"""The async front never blocks the event loop, adapts its concurrency, and honours cancellation."""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from sparktts_cache import CacheStatus, SyncTTSCache, TTSCache
from sparktts_cache.testing import sealed_audio

pytestmark = pytest.mark.anyio

SEGMENTS = 20_000
#: Generous: the design keeps stalls near 1-2 ms; a blocking implementation stalls for 100+ ms.
STALL_BOUND = 0.05


async def longest_stall(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Run ``work`` while a heartbeat task measures the longest event-loop stall."""
    stalls = [0.0]
    done = anyio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            began = time.perf_counter()
            await anyio.sleep(0.001)
            stalls.append(time.perf_counter() - began - 0.001)

    result: list[Any] = []
    async with anyio.create_task_group() as group:
        group.start_soon(heartbeat)
        await anyio.sleep(0.01)
        result.append(await work())
        done.set()
    return max(stalls), result[0]


async def quietest_stall(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """:func:`longest_stall` of ``work`` (which must be repeatable), run again if the first
    stalled past the bound, and the lower of the two.

    On a shared machine the loop thread is sometimes not scheduled for tens of milliseconds,
    whatever it runs; that rarely happens twice in a row, while a stall the code causes does.
    """
    stall, result = await longest_stall(work)
    if stall >= STALL_BOUND:
        again, result = await longest_stall(work)
        stall = min(stall, again)
    return stall, result


@pytest.fixture(scope="module")
def half_cached(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], SyncTTSCache]:
    """A cache holding every other one of SEGMENTS segments (made once: the tests only read it)."""
    sync = SyncTTSCache(tmp_path_factory.mktemp("half-cached"), sample_rate=16000)
    segments = [f"Sentence number {index} of a long book." for index in range(SEGMENTS)]
    audio = sealed_audio(1, 160)
    for text in segments[::2]:
        assert sync.cache_data(sync.generate_cache_key(text, {}), audio, text, {})
    return segments, sync


async def test_get_cache_status_of_20000_segments_does_not_stall_the_loop(
    half_cached: tuple[list[str], SyncTTSCache],
) -> None:
    segments, sync = half_cached
    cache = TTSCache(sync.cache_dir, sample_rate=16000)
    # The first worker-thread call of a loop may import the backend's thread support and start a
    # thread: once per process and loop, whatever the call, so not measured here.
    await cache.get_cache_status(segments[:1], {})
    stall, status = await quietest_stall(lambda: cache.get_cache_status(segments, {}))
    assert isinstance(status, CacheStatus)
    assert len(status.cached_keys) == SEGMENTS // 2
    assert status.segments_to_generate == segments[1::2]
    assert stall < STALL_BOUND, f"event loop stalled for {stall * 1000:.1f} ms"

    # The same check done on the loop thread must register as a stall: the probe can fail.
    async def blocking() -> CacheStatus:
        return sync.get_cache_status(segments, {})

    blocked, same = await longest_stall(blocking)
    assert same == status
    assert blocked > 3 * stall, "the heartbeat cannot see a blocked loop"


async def test_reads_and_writes_of_large_entries_do_not_stall(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path, sample_rate=16000)
    audio = sealed_audio(1, 960_000)

    async def round_trips() -> None:
        for index in range(10):
            key = cache.generate_cache_key(f"long {index}")
            assert await cache.cache_data(key, audio, f"long {index}")
            assert await cache.get_cached_data(key) is not None

    stall, _ = await quietest_stall(round_trips)
    assert stall < STALL_BOUND, f"event loop stalled for {stall * 1000:.1f} ms"


async def test_fast_file_system_uses_one_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    real_access = os.access

    def recording_access(path: Any, *args: Any, **kwargs: Any) -> bool:
        threads.add(threading.get_ident())
        return real_access(path, *args, **kwargs)

    monkeypatch.setattr(os, "access", recording_access)
    status = await TTSCache(tmp_path, sample_rate=16000).get_cache_status(
        [f"fast {i}" for i in range(3000)]
    )
    assert len(status.segments_to_generate) == 3000
    assert len(threads) <= 2 and threading.get_ident() not in threads


async def test_cancelled_write_still_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = TTSCache(tmp_path, sample_rate=16000)
    key = cache.generate_cache_key("cancelled")
    audio = sealed_audio(3)
    writing, cancelled = threading.Event(), threading.Event()
    real_writev = os.writev

    def writev_once_cancelled(fd: int, buffers: Any) -> int:
        writing.set()
        assert cancelled.wait(timeout=30)
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", writev_once_cancelled)

    async def cancel_in_the_middle_of_the_write(scope: anyio.CancelScope) -> None:
        assert await anyio.to_thread.run_sync(writing.wait, 30)
        scope.cancel()
        cancelled.set()

    async with anyio.create_task_group() as group:
        with anyio.CancelScope() as scope:
            group.start_soon(cancel_in_the_middle_of_the_write, scope)
            await cache.cache_data(key, audio, "cancelled")
    assert scope.cancel_called and cancelled.is_set()
    # The write ran to its end before the cancelled call returned: the entry is there, whole.
    np.testing.assert_array_equal(await cache.get_cached_data(key), audio)


async def test_sync_and_async_fronts_share_one_store(tmp_path: Path) -> None:
    sync, cache = SyncTTSCache(tmp_path, sample_rate=16000), TTSCache(tmp_path, sample_rate=16000)
    key = sync.generate_cache_key("shared")
    assert key == cache.generate_cache_key("shared")
    assert sync.cache_data(key, sealed_audio(9), "shared")
    np.testing.assert_array_equal(await cache.get_cached_data(key), sealed_audio(9))
    assert await cache.get_cache_status(["shared", "other"]) == sync.get_cache_status(
        ["shared", "other"]
    )
    assert await cache.clear_cache() and sync.get_cached_data(key) is None


def test_status_memory_is_proportional_to_the_answer(
    half_cached: tuple[list[str], SyncTTSCache],
) -> None:
    # Every entry path was kept for the whole call (at a million segments, 462 MB in all); now
    # the paths are made a chunk at a time. Peak memory is measured, not timed: no luck involved.
    segments, sync = half_cached
    sync.get_cache_status(segments, {})  # warm the key memo and imports
    tracemalloc.start()
    try:
        status = sync.get_cache_status(segments, {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    keys = status.cache_keys
    answer = sum(map(sys.getsizeof, keys)) + sum(
        sys.getsizeof(part) for part in (keys, status.cached_keys, status.segments_to_generate)
    )
    assert peak < 2.3 * answer, f"peak {peak} bytes for an answer of {answer}"
