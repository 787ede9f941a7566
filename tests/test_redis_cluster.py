"""RedisCache, TieredCache and the Redis lock on a real Redis Cluster (six redis-server processes:
three masters, three replicas): the contract, keys spread over the masters, a hung cluster, and a
master killed under load."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from sparktts_cache import (
    CircuitBreaker,
    RedisCache,
    RedisSynthesisLock,
    TieredCache,
    TTSCache,
    generate_cache_key,
)
from sparktts_cache.testing import CacheContract, is_sealed, sealed_audio

from .redis_cluster import RedisClusterNodes, started_cluster

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: Seconds a call may take with every node hung: one 2 s timeout, then the breaker skips Redis.
BOUND = 5.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """One cluster for the tests that leave it as they found it."""
    nodes = started_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def doomed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """Another, for the tests that hang its nodes or kill a master."""
    nodes = started_cluster(tmp_path_factory.mktemp("doomed"))
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_namespaces = iter(range(10**6))


@pytest.fixture
async def cluster_cache(cluster: RedisClusterNodes) -> AsyncIterator[RedisCache]:
    cache = RedisCache(cluster.url, namespace=f"c{os.getpid()}-{next(_namespaces)}",
                       sample_rate=16000)  # fmt: skip
    yield cache
    await cache.clear_cache()
    await cache.aclose()


@pytest.fixture
async def reopen_cluster(
    cluster: RedisClusterNodes, cluster_cache: RedisCache
) -> AsyncIterator[Callable[[], RedisCache]]:
    opened: list[RedisCache] = []

    def reopen() -> RedisCache:
        opened.append(RedisCache(cluster.url, namespace=cluster_cache.namespace, sample_rate=16000))
        return opened[-1]

    yield reopen
    for cache in opened:
        await cache.aclose()


class TestClusterRedisCache(CacheContract):
    cache_classes = (RedisCache,)

    @pytest.fixture
    def cache(self, cluster_cache: RedisCache) -> RedisCache:
        return cluster_cache

    @pytest.fixture
    def reopen(self, reopen_cluster: Callable[[], RedisCache]) -> Callable[[], RedisCache]:
        return reopen_cluster


class TestClusterTieredCache(CacheContract):
    cache_classes = (TieredCache, TTSCache, RedisCache)

    @pytest.fixture
    def cache(self, cluster_cache: RedisCache, tmp_path: Path) -> TieredCache:
        return TieredCache(TTSCache(tmp_path, sample_rate=16000), cluster_cache)

    @pytest.fixture
    def reopen(
        self, reopen_cluster: Callable[[], RedisCache], tmp_path: Path
    ) -> Callable[[], TieredCache]:
        return lambda: TieredCache(TTSCache(tmp_path, sample_rate=16000), reopen_cluster())


def _master_of(masters: dict[int, tuple[int, int]], slot: int) -> int:
    return next(port for port, (first, last) in masters.items() if first <= slot <= last)


async def test_keys_spread_evenly_and_bulk_calls_cross_slots(
    cluster: RedisClusterNodes, cluster_cache: RedisCache
) -> None:
    """Each key in its own slot spreads entries evenly over the masters (a hash tag on the
    namespace would put them all on one); MGET, status and clear still work across slots."""
    from redis.crc import key_slot

    masters = cluster.masters()
    assert len(masters) == 3
    texts = [f"segment {index}" for index in range(3000)]
    keys = [generate_cache_key(text) for text in texts]
    spread = Counter(
        _master_of(masters, key_slot(cluster_cache.redis_key(k).encode())) for k in keys
    )
    assert len(spread) == 3 and all(900 <= count <= 1100 for count in spread.values()), spread
    tagged = {key_slot(f"{{{cluster_cache.namespace}}}:e:{key}".encode()) for key in keys}
    assert len(tagged) == 1  # the alternative: every entry on one master
    for index, (key, text) in enumerate(zip(keys, texts, strict=True)):
        if index % 3 == 0:
            assert await cluster_cache.cache_data(key, sealed_audio(index, 16), text)
    found = await cluster_cache.get_cached_batch(keys)
    assert [index for index, audio in enumerate(found) if audio is not None] == list(
        range(0, 3000, 3)
    )
    assert all(is_sealed(audio) for audio in found if audio is not None)
    status = await cluster_cache.get_cache_status(texts)
    assert len(status.cached_keys) == 1000 and len(status.segments_to_generate) == 2000
    assert await cluster_cache.clear_cache()
    assert await cluster_cache.get_cached_batch(keys) == [None] * 3000


async def test_the_lock_on_a_cluster(cluster: RedisClusterNodes) -> None:
    first = RedisSynthesisLock(cluster.url, namespace="cluster-lock", poll=0.01)
    second = RedisSynthesisLock(cluster.url, namespace="cluster-lock", poll=0.01)
    order: list[str] = []

    async def take(lock: RedisSynthesisLock, name: str) -> None:
        async with lock.hold("c" * 32) as held:
            assert held
            order.append(f"{name} in")
            await anyio.sleep(0.1)
            order.append(f"{name} out")

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(take, first, "a")
            await anyio.sleep(0.02)
            group.start_soon(take, second, "b")
        assert order == ["a in", "a out", "b in", "b out"]
        assert await first.client.get("cluster-lock:lock:" + "c" * 32) is None
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_hung_cluster_is_answered_from_the_local_tier(
    doomed_cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    """Every node stopped (SIGSTOP): the first call waits out one timeout, the breaker opens,
    and the status and reads answer from the local tier (it raised RedisClusterUnreachableError
    before)."""
    shared = RedisCache(doomed_cluster.url, sample_rate=16000)
    tiered = TieredCache(TTSCache(tmp_path, sample_rate=16000), shared)
    known = tiered.generate_cache_key("known here")
    assert await tiered.cache_data(known, sealed_audio(7, 160), "known here")
    procs = list(doomed_cluster.procs.values())
    try:
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)
        began = time.monotonic()
        status = await tiered.get_cache_status(["known here", "unknown"])
        assert status.cached_keys == [known] and status.segments_to_generate == ["unknown"]
        assert is_sealed(await tiered.get_cached_data(known))
        assert await tiered.get_cached_data(tiered.generate_cache_key("unknown")) is None
        assert await tiered.cache_data(tiered.generate_cache_key("new"), sealed_audio(8, 16), "n")
        took = time.monotonic() - began
        assert took < BOUND, f"{took:.1f} s with the cluster hung"
        assert shared.breaker.opened_count == 1
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
        await shared.aclose()
    doomed_cluster.wait_until_ok()


async def test_a_master_killed_under_load(
    doomed_cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    """Writes and reads through two servers' tiers while a master is killed: nothing wrong is
    served, every request completes, and the dead master's entries come back from its replica."""
    from redis.crc import key_slot

    nodes = doomed_cluster
    nodes.wait_until_ok()
    masters = nodes.masters()
    victim = sorted(masters)[0]
    first, last = masters[victim]
    writer_shared = RedisCache(nodes.url, namespace="failover", sample_rate=16000)
    # Server B: a short cool-down so that the test measures the election, not the breaker.
    shared = RedisCache(nodes.url, namespace="failover", sample_rate=16000,
                        breaker=CircuitBreaker(cooldown=0.5))  # fmt: skip
    writer = TieredCache(TTSCache(tmp_path / "a", sample_rate=16000), writer_shared)
    reader = TieredCache(TTSCache(tmp_path / "b", sample_rate=16000), shared)
    seeds: dict[str, int] = {}
    for seed in range(300):
        key = writer.generate_cache_key(f"before {seed}")
        assert await writer.cache_data(key, sealed_audio(seed, 400), f"before {seed}")
        seeds[key] = seed
    on_victim = [k for k in seeds if first <= key_slot(writer_shared.redis_key(k).encode()) <= last]
    assert len(on_victim) > 50
    replica = _wait_for_replica(nodes, victim)

    served = errors = wrong = 0
    killed_at: float | None = None
    recovered_after: float | None = None
    deadline = time.monotonic() + 40
    step = 0
    while time.monotonic() < deadline:
        step += 1
        if step == 30:
            nodes.kill(victim)
            killed_at = time.monotonic()
        try:
            key = list(seeds)[step % len(seeds)]
            audio = await reader.get_cached_data(key)
            if audio is not None and not (is_sealed(audio) and int(audio[0] * 2**24) == seeds[key]):
                wrong += 1
            new_key = reader.generate_cache_key(f"during {step}")
            assert await reader.cache_data(new_key, sealed_audio(1000 + step, 400), "during")
            back = await reader.get_cached_data(new_key)
            if not (is_sealed(back) and back is not None and int(back[0] * 2**24) == 1000 + step):
                wrong += 1
            served += 2
            if killed_at is not None and recovered_after is None:
                probe = on_victim[step % len(on_victim)]
                entry = (await shared.get_entries([probe]))[0]
                if entry is not None:
                    recovered_after = time.monotonic() - killed_at
            if recovered_after is not None and step % 10 == 0:
                break
        except Exception:
            errors += 1
        await anyio.sleep(0.01)
    try:
        assert recovered_after is not None, "the dead master's slots never came back"
        figure = {"requests": served, "errors": errors, "wrong_audio": wrong,
                  "recovered_after_s": round(recovered_after, 2), "replica": replica,
                  "breaker_opened": shared.breaker.opened_count}  # fmt: skip
        print("failover:", json.dumps(figure))
        assert wrong == 0 and errors == 0
        nodes.wait_until_ok()
        fresh = RedisCache(nodes.url, namespace="failover", sample_rate=16000)
        try:  # every entry the dead master held, from the replica that took over
            entries = await fresh.get_entries(on_victim)
            assert all(entry is not None for entry in entries)
            assert all(
                is_sealed(e.audio) and int(e.audio[0] * 2**24) == seeds[k]
                for k, e in zip(on_victim, entries, strict=True)
                if e is not None
            )
        finally:
            await fresh.clear_cache()
            await fresh.aclose()
    finally:
        await shared.aclose()
        await writer_shared.aclose()


def _wait_for_replica(nodes: RedisClusterNodes, master: int) -> int:
    """The port of ``master``'s replica, once it holds as many keys as the master."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = nodes.cli_run(master, "info", "replication")
        replicas = [
            int(line.split("port=")[1].split(",")[0])
            for line in info.splitlines()
            if line.startswith("slave") and "port=" in line
        ]
        size = nodes.cli_run(master, "dbsize").strip()
        if replicas and nodes.cli_run(replicas[0], "dbsize").strip() == size:
            return replicas[0]
        time.sleep(0.1)
    raise AssertionError(f"master {master}'s replica never caught up")
