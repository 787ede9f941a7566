"""Two machines' tiers sharing a Redis Cluster against two sharing one redis-server.

Command: ``.venv/bin/python -m benchmarks.redis_tiers`` (about a minute; needs redis-server and
redis-cli; prints the figures and writes ``benchmarks/results/redis_tiers.json``).

At the cache level, not through the speech server (whose synthesis time would hide Redis's):
each round is one long text of 40 segments of 2 s of audio at 16 kHz (128 KB entries), and two
``TieredCache`` objects with their own local directories, "machine A" and "machine B", share the
Redis under test. Per round, with fresh keys:

- uncached, on A: the status check (all missing), then the 40 entries written (as a server does
  once it has synthesised them);
- cached, on B: the status check (all in Redis) and the 40 entries read from Redis (and copied to
  B's disk), the path of a text another machine made;
- cached again, on B: the same from B's own disk (the baseline: no Redis at all).

The figures are medians over the rounds, the better of two runs taken in turn (the first run of
a process pays for its warm-up: run first, the single server looked 1.7 times slower); each ratio
is the cluster's time over the single server's in the same run. Everything runs on one machine
over loopback: the cluster's extra cost here is its client's (slot routing, one pipeline per
master), not the network's.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sparktts_cache import RedisCache, TieredCache, TTSCache
from sparktts_cache.testing import sealed_audio
from tests.redis_cluster import RedisClusterNodes
from tests.redis_server import RedisServer

SEGMENTS = 40
SAMPLES = 32000  # 2 s at 16 kHz
ROUNDS = 9
RESULTS = Path(__file__).resolve().parent / "results" / "redis_tiers.json"


async def _rounds(url: str, work: Path) -> dict[str, float]:
    timings: dict[str, list[float]] = {"uncached_a": [], "cached_from_redis_b": [],
                                       "cached_local_b": []}  # fmt: skip
    shared_a = RedisCache(url, namespace="bench", sample_rate=16000)
    shared_b = RedisCache(url, namespace="bench", sample_rate=16000)
    audio = [sealed_audio(seed, SAMPLES) for seed in range(SEGMENTS)]
    try:
        for round_ in range(ROUNDS):
            a = TieredCache(TTSCache(work / f"a{round_}", sample_rate=16000), shared_a)
            b = TieredCache(TTSCache(work / f"b{round_}", sample_rate=16000), shared_b)
            texts = [f"round {round_} {work} segment {index}" for index in range(SEGMENTS)]
            keys = [a.generate_cache_key(text) for text in texts]
            began = time.perf_counter()
            status = await a.get_cache_status(texts)
            assert len(status.segments_to_generate) == SEGMENTS
            for key, text, samples in zip(keys, texts, audio, strict=True):
                assert await a.cache_data(key, samples, text)
            timings["uncached_a"].append(time.perf_counter() - began)
            for name in ("cached_from_redis_b", "cached_local_b"):
                began = time.perf_counter()
                status = await b.get_cache_status(texts)
                assert len(status.cached_keys) == SEGMENTS
                found = await b.get_verified_batch(keys, texts)
                assert all(entry is not None for entry in found)
                timings[name].append(time.perf_counter() - began)
        assert shared_a.breaker.opened_count == shared_b.breaker.opened_count == 0
        await shared_a.clear_cache()
    finally:
        await shared_a.aclose()
        await shared_b.aclose()
    return {name: statistics.median(runs) for name, runs in timings.items()}


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "single").mkdir()
        (work / "cluster").mkdir()
        single = RedisServer(work / "single")
        cluster = RedisClusterNodes(work / "cluster")
        try:
            single.start()
            cluster.start()
            # Twice each, alternating, so that neither gains from going second (warm caches).
            runs: dict[str, list[dict[str, float]]] = {"one redis-server": [],
                                                        "cluster of 3 masters": []}  # fmt: skip
            for turn in range(4):
                label = ("one redis-server", "cluster of 3 masters")[turn % 2]
                url = single.url if turn % 2 == 0 else cluster.url
                runs[label].append(asyncio.run(_rounds(url, work / f"t{turn}")))
            figures = {label: {name: min(run[name] for run in both) for name in both[0]}
                       for label, both in runs.items()}  # fmt: skip
        finally:
            single.stop()
            cluster.stop()
    one, many = figures["one redis-server"], figures["cluster of 3 masters"]
    result: dict[str, Any] = {
        "segments": SEGMENTS, "entry_bytes": SAMPLES * 4, "rounds": ROUNDS,
        "median_seconds": figures,
        "cluster_over_single": {name: round(many[name] / one[name], 2) for name in one},
    }  # fmt: skip
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':24}" + "".join(f"{name:>22}" for name in one))
    for label, values in figures.items():
        print(f"{label:24}" + "".join(f"{values[name] * 1000:>19.1f} ms" for name in one))
    print(f"{'cluster / one':24}" + "".join(
        f"{result['cluster_over_single'][name]:>22}" for name in one))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
