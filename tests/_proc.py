"""Worker processes for the multi-process tests: ``python -m tests._proc ROLE CACHE_DIR ...``.

Every entry written carries its own seed in its stored parameters, and its samples are generated
from that seed, so a reader can tell a whole entry from a torn or mixed one.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import numpy as np

from sparktts_cache import SyncTTSCache
from sparktts_cache.testing import self_checking_audio


def shared_key(cache: SyncTTSCache, index: int) -> str:
    return cache.generate_cache_key(f"shared sentence {index}", {})


def write_checked(cache: SyncTTSCache, key: str, seed: int, seconds: float) -> bool:
    audio = self_checking_audio(seed, seconds)
    return cache.cache_data(key, audio, "self-checking", {"seed": seed, "seconds": seconds})


def read_checked(cache: SyncTTSCache, key: str) -> bool | None:
    """None on a miss, True for a whole entry; raises AssertionError for anything else."""
    entry = cache.get_entry(key)
    if entry is None:
        return None
    params: dict[str, Any] = entry.meta.params
    expected = self_checking_audio(int(params["seed"]), float(params["seconds"]))
    assert np.array_equal(entry.audio, expected), f"torn or mixed entry at {key}"
    return True


def mixed(
    cache_dir: str, worker: int, operations: int, keys: int, limit: int | None = None
) -> None:
    """Write and read overlapping keys; print counts as JSON."""
    cache = SyncTTSCache(cache_dir, max_size_bytes=limit)
    rnd = random.Random(worker)
    counts = {"writes": 0, "hits": 0, "misses": 0}
    for _ in range(operations):
        key = shared_key(cache, rnd.randrange(keys))
        if rnd.random() < 0.5:
            seed = worker * 1_000_000 + rnd.randrange(1_000_000)
            assert write_checked(cache, key, seed, rnd.choice([0.05, 0.5, 2.0]))
            counts["writes"] += 1
        elif read_checked(cache, key):
            counts["hits"] += 1
        else:
            counts["misses"] += 1
    print(json.dumps(counts))


def writer_forever(cache_dir: str, seed: int, keys: int) -> None:
    """Write large and small entries until killed."""
    cache = SyncTTSCache(cache_dir)
    rnd = random.Random(seed)
    print("ready", flush=True)
    while True:
        seed += 1
        write_checked(
            cache, shared_key(cache, rnd.randrange(keys)), seed, rnd.choice([0.1, 5.0, 20.0])
        )


def long_text(cache_dir: str, locked: int) -> None:
    """Generate the test text with a slow counting model; print its calls as JSON."""
    import anyio

    from sparktts_cache import LongTextTTS, TextSegmenter

    from .models import CountingModel
    from .test_long_text import PARAMS, TEXT

    model = CountingModel(delay=0.05)
    tts = LongTextTTS(
        model, cache_dir=cache_dir, segmenter=TextSegmenter(max_chars=40),
        cross_process_lock=bool(locked),
    )  # fmt: skip
    anyio.run(tts.generate, TEXT, PARAMS)
    print(json.dumps(dict(model.calls)))


def hold_lock(directory: str, key: str) -> None:
    """Take a synthesis lock and hang until killed."""
    import time

    from sparktts_cache._locks import _try_lock

    assert _try_lock(directory, f"{key}.lock") is not None
    print("locked", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    role, directory, *numbers = sys.argv[1:]
    if role == "mixed":
        mixed(directory, *map(int, numbers))
    elif role == "mixed-limited":
        mixed(directory, *map(int, numbers))
    elif role == "writer":
        writer_forever(directory, *map(int, numbers))
    elif role == "long-text":
        long_text(directory, int(numbers[0]))
    elif role == "hold-lock":
        hold_lock(directory, numbers[0])
    else:
        raise SystemExit(f"unknown role {role}")
