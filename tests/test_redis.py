"""RedisCache, TieredCache and the Redis synthesis lock, against a real redis-server."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from sparktts_cache import (
    CacheError,
    CircuitBreaker,
    InvalidOptionError,
    LongTextTTS,
    MissingDependencyError,
    RedisCache,
    RedisSynthesisLock,
    TextSegmenter,
    TieredCache,
    TTSCache,
)
from sparktts_cache.testing import CacheContract, is_sealed, sealed_audio

from .crafted import crafted_wav, hostile_wav, metadata_json
from .models import CountingModel
from .redis_server import started_redis


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server .ci/run started (SPARKTTS_REDIS_URL), or one started here."""
    if url := os.environ.get("SPARKTTS_REDIS_URL"):
        yield url
        return
    server = started_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


_namespaces = iter(range(10**6))


@pytest.fixture(params=RedisCache.async_backends)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def redis_cache(redis_url: str) -> AsyncIterator[RedisCache]:
    cache = RedisCache(
        redis_url, namespace=f"test{os.getpid()}-{next(_namespaces)}", sample_rate=16000
    )
    yield cache
    await cache.clear_cache()
    await cache.aclose()


@pytest.fixture
async def reopen_redis(
    redis_url: str, redis_cache: RedisCache
) -> AsyncIterator[Callable[[], RedisCache]]:
    """Make new clients of ``redis_cache``'s namespace (closed at the end of the test)."""
    opened: list[RedisCache] = []

    def reopen() -> RedisCache:
        opened.append(RedisCache(redis_url, namespace=redis_cache.namespace, sample_rate=16000))
        return opened[-1]

    yield reopen
    for cache in opened:
        await cache.aclose()


class TestRedisCache(CacheContract):
    cache_classes = (RedisCache,)

    @pytest.fixture
    def cache(self, redis_cache: RedisCache) -> RedisCache:
        return redis_cache

    @pytest.fixture
    def reopen(self, reopen_redis: Callable[[], RedisCache]) -> Callable[[], RedisCache]:
        return reopen_redis


class TestTieredCache(CacheContract):
    cache_classes = (TieredCache, TTSCache, RedisCache)

    @pytest.fixture
    def cache(self, redis_cache: RedisCache, tmp_path: Path) -> TieredCache:
        return TieredCache(TTSCache(tmp_path, sample_rate=16000), redis_cache)

    @pytest.fixture
    def reopen(
        self, reopen_redis: Callable[[], RedisCache], tmp_path: Path
    ) -> Callable[[], TieredCache]:
        return lambda: TieredCache(TTSCache(tmp_path, sample_rate=16000), reopen_redis())


pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "options",
    [{"namespace": ""}, {"namespace": "a*b"}, {"namespace": "a\\"}, {"namespace": "a:e:b"},
     {"namespace": "a b"}, {"namespace": "x" * 201}, {"ttl": 0}, {"ttl": -1.5}],
)  # fmt: skip
def test_bad_options_raise_invalid_option_error(options: dict[str, object]) -> None:
    with pytest.raises(InvalidOptionError) as raised:
        RedisCache("redis://127.0.0.1:1/0", **options)  # type: ignore[arg-type]
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, CacheError)


def test_missing_redis_package_raises_missing_dependency_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [name for name in sys.modules if name == "redis" or name.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)  # what "import redis" finds uninstalled
    for make in (RedisCache, RedisSynthesisLock):
        with pytest.raises(MissingDependencyError, match=r"pip install .*\[redis\]") as raised:
            make("redis://127.0.0.1:1/0")
        assert isinstance(raised.value, ImportError) and isinstance(raised.value, CacheError)


async def test_entries_are_the_file_store_bytes_and_keys(
    redis_cache: RedisCache, tmp_path: Path
) -> None:
    key = redis_cache.generate_cache_key("same", {"gender": "male"})
    assert key == TTSCache(tmp_path).generate_cache_key("same", {"gender": "male"})
    assert await redis_cache.cache_data(key, sealed_audio(5, 800), "same", {"gender": "male"},
                                        sample_rate=22050)  # fmt: skip
    raw = await redis_cache.client.get(redis_cache.redis_key(key))
    assert isinstance(raw, bytes) and raw[:4] == b"RIFF" and b"sptc" in raw[:64]
    entry = await redis_cache.get_entry(key)
    assert entry is not None and entry.meta.sample_rate == 22050 and entry.meta.text == "same"


async def test_status_is_one_round_trip_per_batch(redis_cache: RedisCache) -> None:
    segments = [f"segment {i}" for i in range(2500)]
    for text in segments[::5]:
        assert await redis_cache.cache_data(
            redis_cache.generate_cache_key(text), sealed_audio(1, 16), text
        )
    calls = {"execute": 0, "exists": 0}
    real_pipeline = redis_cache.client.pipeline

    def counting_pipeline(*args: object, **kwargs: object) -> object:
        pipe = real_pipeline(*args, **kwargs)  # type: ignore[arg-type]
        real_execute = pipe.execute

        async def execute(*a: object, **k: object) -> object:
            calls["execute"] += 1
            calls["exists"] += len(pipe.command_stack)  # type: ignore[union-attr]
            return await real_execute(*a, **k)  # type: ignore[arg-type]

        pipe.execute = execute  # type: ignore[method-assign,assignment]
        return pipe

    redis_cache.client.pipeline = counting_pipeline  # type: ignore[method-assign,assignment]
    status = await redis_cache.get_cache_status(segments + segments[:10])
    assert len(status.cached_keys) == 500 and len(status.segments_to_generate) == 2000
    assert calls == {"execute": 3, "exists": 2500}


async def test_clear_removes_only_its_namespace(redis_url: str) -> None:
    mine, other = (
        RedisCache(redis_url, namespace="mine", sample_rate=16000),
        RedisCache(redis_url, namespace="other", sample_rate=16000),
    )
    try:
        for cache in (mine, other):
            for index in range(30):
                key = cache.generate_cache_key(f"t{index}")
                assert await cache.cache_data(key, sealed_audio(index, 16), "t")
        await mine.client.set("unrelated-user-key", b"keep me")
        assert await mine.clear_cache()
        assert await mine.get_cached_data(mine.generate_cache_key("t1")) is None
        assert await other.get_cached_data(other.generate_cache_key("t1")) is not None
        assert await mine.client.get("unrelated-user-key") == b"keep me"
    finally:
        await other.clear_cache()
        await mine.client.delete("unrelated-user-key")
        await mine.aclose()
        await other.aclose()


async def test_ttl_expires_entries(redis_url: str) -> None:
    cache = RedisCache(redis_url, namespace="ttl", ttl=0.3, sample_rate=16000)
    key = cache.generate_cache_key("short-lived")
    assert await cache.cache_data(key, sealed_audio(1, 16), "short-lived")
    assert 0 < await cache.client.pttl(cache.redis_key(key)) <= 300
    await cache.aclose()


async def test_corrupt_redis_value_is_a_miss(redis_cache: RedisCache) -> None:
    key = redis_cache.generate_cache_key("damaged")
    assert await redis_cache.cache_data(key, sealed_audio(1, 160), "damaged")
    raw = await redis_cache.client.get(redis_cache.redis_key(key))
    assert isinstance(raw, bytes)
    await redis_cache.client.set(redis_cache.redis_key(key), raw[:-5])
    assert await redis_cache.get_cached_data(key) is None


async def test_unreachable_redis_is_a_miss_and_false(tmp_path: Path) -> None:
    from .redis_server import free_port

    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", sample_rate=16000)
    key = cache.generate_cache_key("nobody home")
    assert await cache.get_cached_data(key) is None
    assert await cache.cache_data(key, sealed_audio(1, 16), "x") is False
    status = await cache.get_cache_status(["nobody home"])
    assert status.segments_to_generate == ["nobody home"]
    assert await cache.clear_cache() is False
    await cache.aclose()


async def test_redis_restart_mid_run(tmp_path: Path) -> None:
    server = started_redis(tmp_path)
    breaker = CircuitBreaker(cooldown=0.3)
    cache = RedisCache(server.url, sample_rate=16000, breaker=breaker)
    try:
        key = cache.generate_cache_key("before")
        assert await cache.cache_data(key, sealed_audio(1, 160), "before")
        server.stop()  # Redis goes away (and, with no persistence, forgets everything)
        assert await cache.get_cached_data(key) is None
        assert breaker.is_open and breaker.opened_count == 1
        assert await cache.cache_data(key, sealed_audio(1, 160), "before") is False
        server.start()  # back on the same port: the first call after the cool-down reconnects
        assert await cache.cache_data(key, sealed_audio(2, 160), "after") is False  # skipped
        await anyio.sleep(0.35)
        assert await cache.cache_data(key, sealed_audio(2, 160), "after")
        assert not breaker.is_open and (breaker.opened_count, breaker.closed_count) == (1, 1)
        audio = await cache.get_cached_data(key)
        assert audio is not None and is_sealed(audio)
    finally:
        await cache.aclose()
        server.stop()


async def test_tiered_copies_shared_hits_and_asks_shared_only_for_local_misses(
    redis_cache: RedisCache, tmp_path: Path
) -> None:
    machine_a, machine_b = (
        TTSCache(tmp_path / "a", sample_rate=16000),
        TTSCache(tmp_path / "b", sample_rate=16000),
    )
    tier_a, tier_b = TieredCache(machine_a, redis_cache), TieredCache(machine_b, redis_cache)
    key = tier_a.generate_cache_key("shared sentence")
    assert await tier_a.cache_data(key, sealed_audio(3, 800), "shared sentence", sample_rate=22050)
    assert await machine_b.get_cached_data(key) is None
    audio = await tier_b.get_cached_data(key)  # from Redis, copied to b's disk
    assert audio is not None and is_sealed(audio)
    entry = await machine_b.get_entry(key)
    assert entry is not None and entry.meta.sample_rate == 22050
    assert entry.meta.text == "shared sentence"
    asked: list[list[str]] = []
    real = redis_cache.get_cache_status

    async def spy(segments: list[str], params: object = None) -> object:
        asked.append(list(segments))
        return await real(segments, params)  # type: ignore[arg-type]

    redis_cache.get_cache_status = spy  # type: ignore[method-assign,assignment]
    status = await tier_b.get_cache_status(["shared sentence", "new one"])
    assert asked == [["new one"]]
    assert status.cached_keys == [key] and status.segments_to_generate == ["new one"]


async def test_long_text_over_tiers_with_a_redis_lock(redis_url: str, tmp_path: Path) -> None:
    text = "First sentence here. Second one follows. Third closes."
    shared = RedisCache(redis_url, namespace="tiers-lock")
    servers: list[LongTextTTS] = []
    try:
        models = [CountingModel(delay=0.02), CountingModel(delay=0.02)]
        servers = [
            LongTextTTS(model, cache=TieredCache(TTSCache(tmp_path / f"m{i}"), shared),
                        segmenter=TextSegmenter(max_chars=25),
                        cross_process_lock=RedisSynthesisLock(redis_url, namespace="tiers-lock"))
            for i, model in enumerate(models)
        ]  # fmt: skip

        results: list[np.ndarray] = []

        async def request(server: LongTextTTS) -> None:
            results.append((await server.generate(text, {"gender": "female"}))[0])

        async with anyio.create_task_group() as group:
            for server in servers:
                group.start_soon(request, server)
        segments = TextSegmenter(max_chars=25).segment_text(text)
        assert models[0].total_calls + models[1].total_calls == len(segments)
        np.testing.assert_array_equal(results[0], results[1])
    finally:
        await shared.clear_cache()
        await shared.aclose()
        for server in servers:
            lock = server._lock
            assert isinstance(lock, RedisSynthesisLock)
            await lock.aclose()


async def test_redis_lock_expires_for_a_dead_holder(redis_url: str) -> None:
    lock = RedisSynthesisLock(redis_url, namespace="lock-test", stale_after=0.3, poll=0.01)
    key = "a" * 32
    import anyio

    began = anyio.current_time()  # before the lock is set: it expires at least 0.3 s after this
    await lock.client.set(f"lock-test:lock:{key}", "someone who died", px=300)
    async with lock.hold(key) as held:
        assert held is True
        assert anyio.current_time() - began >= 0.2
    assert await lock.client.get(f"lock-test:lock:{key}") is None
    await lock.client.aclose()


#: Namespaces that reached another's entries: Redis's pattern escape, the separator, glob
#: characters, and a character outside ASCII.
HOSTILE_NAMESPACES = ["\\", ":e:b", ":e", "*", "?", "[a]", "[^x]", "\\*", " ", "\n", "\u00e9"]
#: Neighbours that must stay apart from each other.
SAFE_NAMESPACES = ["", ".e", "-1", "_e_b", "a", ".", "-", "_"]


async def test_namespaces_cannot_reach_each_other(redis_url: str) -> None:
    base = f"ns{os.getpid()}"
    for suffix in HOSTILE_NAMESPACES:
        with pytest.raises(InvalidOptionError):
            RedisCache(redis_url, namespace=base + suffix)
        with pytest.raises(InvalidOptionError):
            RedisSynthesisLock(redis_url, namespace=base + suffix)
    caches = [
        RedisCache(redis_url, namespace=base + suffix, sample_rate=16000)
        for suffix in SAFE_NAMESPACES
    ]
    try:
        for cache in caches:
            for index in range(3):
                key = cache.generate_cache_key(f"t{index}")
                assert await cache.cache_data(key, sealed_audio(index, 16), "t")
        for cleared, cache in enumerate(caches):
            assert await cache.clear_cache()
            for index, other in enumerate(caches):
                found = await other.get_cached_data(other.generate_cache_key("t1"))
                assert (found is None) == (index <= cleared), (cache.namespace, other.namespace)
    finally:
        for cache in caches:
            await cache.clear_cache()
            await cache.aclose()


@pytest.mark.parametrize("options", [
    {"stale_after": 0}, {"stale_after": -5}, {"stale_after": math.nan},
    {"stale_after": math.inf}, {"poll": 0}, {"poll": -1},
])  # fmt: skip
def test_redis_lock_timing_is_validated(options: dict[str, object]) -> None:
    with pytest.raises(InvalidOptionError):
        RedisSynthesisLock("redis://127.0.0.1:1/0", **options)  # type: ignore[arg-type]


async def test_redis_lock_of_under_a_millisecond_still_locks(redis_url: str) -> None:
    lock = RedisSynthesisLock(redis_url, namespace="tiny-lock", stale_after=0.0004)
    try:
        async with lock.hold("b" * 32) as held:  # PX 0 would be refused: the lock given up
            assert held is True
    finally:
        await lock.aclose()


POISONS = ["a lone surrogate in the text", "NaN in a parameter", "a 1 MHz rate",
           "params nested past the recursion limit", "a 400-digit creation time"]  # fmt: skip


@pytest.mark.parametrize("poison", POISONS)
async def test_a_poisoned_shared_entry_is_a_miss_everywhere(
    redis_cache: RedisCache, tmp_path: Path, poison: str
) -> None:
    text = "First sentence here. Second one follows."
    segmenter = TextSegmenter(max_chars=25)
    first = LongTextTTS(CountingModel(), cache=TieredCache(TTSCache(tmp_path / "a"), redis_cache),
                        segmenter=segmenter)  # fmt: skip
    expected, _ = await first.generate(text, {"gender": "female"})
    names = [name async for name in redis_cache.client.scan_iter(f"{redis_cache.namespace}:e:*")]
    assert len(names) == len(segmenter.segment_text(text))
    for name in names:  # the same keys, audio and a valid checksum; metadata nobody accepts
        key = name.decode().rpartition(":")[2]
        await redis_cache.client.set(name, hostile_wav(poison, key, sealed_audio(1, 160)))
        assert await redis_cache.get_cached_data(key) is None
        tiered = TieredCache(TTSCache(tmp_path / f"b-{key}", sample_rate=16000), redis_cache)
        assert await tiered.get_cached_data(key) is None
    model = CountingModel()
    second = LongTextTTS(model, cache=TieredCache(TTSCache(tmp_path / "c"), redis_cache),
                         segmenter=segmenter)  # fmt: skip
    audio, fully_cached = await second.generate(text, {"gender": "female"})
    assert not fully_cached and model.total_calls == len(names)  # every poisoned one remade
    np.testing.assert_array_equal(audio, expected)
    for name in names:  # and replaced in the shared tier
        key = name.decode().rpartition(":")[2]
        assert await redis_cache.get_entry(key) is not None


async def test_a_shared_hit_the_local_tier_cannot_store_is_served(
    redis_cache: RedisCache, tmp_path: Path
) -> None:
    """A WAV entry may be 700 kHz; a FLAC tier stores at most 655,350 Hz. The hit is served,
    logged as not copied, and never an error."""
    key = redis_cache.generate_cache_key("ultrasound")
    audio = sealed_audio(4, 160)
    meta = metadata_json(key, len(audio), text='"ultrasound"', rate="700000")
    await redis_cache.client.set(redis_cache.redis_key(key), crafted_wav(meta, audio, 700000))
    local = TTSCache(tmp_path, audio_format="flac", sample_rate=16000)
    tiered = TieredCache(local, redis_cache)
    np.testing.assert_array_equal(await tiered.get_cached_data(key), audio)
    assert await local.get_cached_data(key) is None


def test_cluster_urls_name_any_nodes() -> None:
    cache = RedisCache("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/0", timeout=0.5)
    assert cache.is_cluster and not RedisCache("redis://127.0.0.1:1/0").is_cluster
    nodes = cache.client.nodes_manager.startup_nodes  # type: ignore[union-attr]
    assert sorted(nodes) == ["127.0.0.1:7000", "127.0.0.1:7001"]
    assert RedisSynthesisLock("rediss+cluster://127.0.0.1:7000").is_cluster
    for bad in ("redis+cluster://127.0.0.1:7000,nowhere", "redis+cluster://a:1,b:port"):
        with pytest.raises(InvalidOptionError, match="host:port"):
            RedisCache(bad)
    for timeout in (0, -1, math.inf, math.nan):
        with pytest.raises(InvalidOptionError, match="timeout"):
            RedisCache("redis://127.0.0.1:1/0", timeout=timeout)
    with pytest.raises(InvalidOptionError, match="cooldown"):
        CircuitBreaker(cooldown=0)
