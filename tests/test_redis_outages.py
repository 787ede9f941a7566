"""The shared tier when one redis-server hangs (SIGSTOP) or runs out of memory: the request
completes from the local tier in bounded time, and an evicted entry is a miss, never an error."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from sparktts_cache import (
    CircuitBreaker,
    LongTextTTS,
    RedisCache,
    RedisSynthesisLock,
    TextSegmenter,
    TieredCache,
    TTSCache,
)
from sparktts_cache.testing import is_sealed, sealed_audio

from .models import CountingModel
from .redis_server import started_redis

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: Two sentences the segmenter keeps apart: a request of two segments.
FIRST = "The first sentence of the hung Redis test is long enough to stand alone."
SECOND = "A second sentence follows it, and it is just as long as the first one was."
THIRD = "A third sentence nobody has asked for before, so it must be synthesised now."

#: Seconds a request may take with Redis hung: it took 40 before (8 calls each waiting out a
#: 5 s socket timeout); now one call waits the 2 s default and the breaker skips the rest.
BOUND = 5.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_hung_redis_costs_one_timeout_then_the_local_tier_answers(
    tmp_path: Path,
) -> None:
    server = started_redis(tmp_path)
    assert server.proc is not None
    shared = RedisCache(server.url)  # the defaults: a 2 s timeout, a 5 s cool-down
    lock = RedisSynthesisLock(server.url, breaker=shared.breaker)
    model = CountingModel()
    tts = LongTextTTS(model, cache=TieredCache(TTSCache(tmp_path / "local"), shared),
                      segmenter=TextSegmenter(max_chars=80), cross_process_lock=lock)  # fmt: skip
    try:
        expected, _ = await tts.generate(f"{FIRST} {SECOND}", {"gender": "male"})
        server.proc.send_signal(signal.SIGSTOP)
        began = time.monotonic()
        cached, fully_cached = await tts.generate(f"{FIRST} {SECOND}", {"gender": "male"})
        # One segment known locally, one new: a status check, a lock, a read and a write.
        mixed, _ = await tts.generate(f"{SECOND} {THIRD}", {"gender": "male"})
        params = tts.key_params({"gender": "male"})
        status = await tts.cache.get_cache_status([FIRST, THIRD, "Never seen."], params)
        took = time.monotonic() - began
        print(f"hung redis-server: {took:.2f} s")
        assert took < BOUND, f"{took:.1f} s with Redis hung"
        assert fully_cached and np.array_equal(cached, expected)
        assert len(mixed) > 0 and model.total_calls == 3
        assert status.segments_to_generate == ["Never seen."]
        assert shared.breaker.is_open and shared.breaker.opened_count == 1
    finally:
        server.proc.send_signal(signal.SIGCONT)
        await shared.aclose()
        await lock.aclose()
        server.stop()


async def test_hung_redis_calls_are_skipped_until_the_cool_down_ends(tmp_path: Path) -> None:
    server = started_redis(tmp_path)
    assert server.proc is not None
    breaker = CircuitBreaker(cooldown=1.0)
    shared = RedisCache(server.url, timeout=0.5, breaker=breaker, sample_rate=16000)
    key = shared.generate_cache_key("hung")
    try:
        assert await shared.cache_data(key, sealed_audio(1, 160), "hung")
        server.proc.send_signal(signal.SIGSTOP)
        began = time.monotonic()
        assert await shared.get_cached_data(key) is None  # waits out the 0.5 s timeout
        assert 0.4 < time.monotonic() - began < 1.5 and breaker.is_open
        began = time.monotonic()
        for _ in range(50):  # skipped: no waiting at all
            assert await shared.get_cached_data(key) is None
            assert await shared.cache_data(key, sealed_audio(2, 160), "hung") is False
        assert time.monotonic() - began < 0.5
        server.proc.send_signal(signal.SIGCONT)
        time.sleep(1.1)  # the cool-down: the next call is a trial, and closes the breaker
        audio = await shared.get_cached_data(key)
        assert is_sealed(audio) and audio is not None and int(audio[0] * 2**24) == 1
        assert (breaker.opened_count, breaker.closed_count, breaker.is_open) == (1, 1, False)
    finally:
        server.proc.send_signal(signal.SIGCONT)
        await shared.aclose()
        server.stop()


async def test_evicted_entries_are_misses_never_errors_or_torn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With maxmemory and allkeys-lru, writing far more than fits evicts old entries: each read
    is the whole entry written or a miss."""
    server = started_redis(tmp_path, ["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"])
    shared = RedisCache(server.url, sample_rate=16000)
    texts = [f"entry {index}" for index in range(300)]  # about 16 KB each: 4.8 MB in all
    keys = [shared.generate_cache_key(text) for text in texts]
    try:
        with caplog.at_level(logging.WARNING, logger="sparktts_cache"):
            for index, (key, text) in enumerate(zip(keys, texts, strict=True)):
                stored = await shared.cache_data(key, sealed_audio(index, 4000), text)
                assert stored, [record.getMessage() for record in caplog.records]
            found = await shared.get_cached_batch(keys)
            status = await shared.get_cache_status(texts)
        hits = [index for index, audio in enumerate(found) if audio is not None]
        assert 0 < len(hits) < len(keys)  # some evicted, some kept
        for index in hits:
            audio = found[index]
            assert is_sealed(audio) and audio is not None and int(audio[0] * 2**24) == index
        assert len(status.cached_keys) <= len(keys) - 1
        # No Redis error and no breaker: eviction is a plain miss.
        assert [record.getMessage() for record in caplog.records] == []
        local = TieredCache(TTSCache(tmp_path / "local", sample_rate=16000), shared)
        evicted = next(key for key, audio in zip(keys, found, strict=True) if audio is None)
        assert await local.get_cached_data(evicted) is None  # a miss through the tiers too
    finally:
        await shared.aclose()
        server.stop()
