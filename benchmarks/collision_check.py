"""What a hit pays for being verified against its request: an in-process A/B.

Command: ``.venv/bin/python -m benchmarks.collision_check`` (about a minute; prints the figures and
writes ``benchmarks/results/collision_check.json``).

A verified read (``get_verified_batch``, what ``LongTextTTS`` does) parses each hit's metadata and
compares the recorded text and parameters with the request, where a read by key
(``get_cached_batch``) checks only the layout, the digest and the key. Both read the same entries,
interleaved round by round (A B C, B C A, ...) so that the drift of a shared machine hits every
variant alike, as plain calls of the blocking core (which isolates the comparison's cost):

- ``raw``: one file read and ``np.frombuffer`` per entry (the floor, as in ``benchmarks.run``);
- ``by key``: ``SyncTTSCache.get_cached_batch``;
- ``verified``: ``SyncTTSCache.get_verified_batch`` with the texts and parameters.

For one entry of 1 s and of 20 s of 16 kHz audio, and for a batch of 200 entries of 1 s (a long
text's segments, with the benchmark suite's eight parameters).
"""

from __future__ import annotations

import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparktts_cache import SyncTTSCache

from ._harness import RESULTS, machine_info
from .baselines import read_raw
from .run import PARAMS

RATE = 16000
#: (seconds per entry, entries per read, rounds, reads per timing)
CASES = ((1, 1, 200, 20), (20, 1, 200, 20), (1, 200, 40, 1))


def _interleaved(
    variants: dict[str, Callable[[], object]], rounds: int, reads: int
) -> dict[str, float]:
    """Median seconds per call of each variant, interleaved round by round."""
    names = list(variants)
    runs: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            call = variants[name]
            began = time.perf_counter()
            for _ in range(reads):
                call()
            runs[name].append((time.perf_counter() - began) / reads)
    return {name: statistics.median(runs[name]) for name in names}


def _entries(root: Path, seconds: int, count: int) -> tuple[list[str], list[str], list[str]]:
    """Write ``count`` entries of ``seconds`` of audio; their keys, texts and raw copies."""
    cache = SyncTTSCache(root / "cache")
    keys, texts, raws = [], [], []
    for index in range(count):
        rng = np.random.default_rng(index + 1000 * seconds)
        audio = (rng.standard_normal(seconds * RATE) * 0.1).astype(np.float32)
        text = f"Sentence number {index} of a long book, {seconds} s of it, read aloud."
        key = cache.generate_cache_key(text, PARAMS)
        assert cache.cache_data(key, audio, text, PARAMS)
        raw = root / f"raw-{seconds}-{index}.bin"
        raw.write_bytes(audio.tobytes())
        keys.append(key)
        texts.append(text)
        raws.append(str(raw))
    return keys, texts, raws


def _read_all_raw(paths: list[str]) -> None:
    for path in paths:
        read_raw(path)


def main() -> int:
    figures: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as work:
        root = Path(work)
        cache = SyncTTSCache(root / "cache")
        for seconds, count, rounds, reads in CASES:
            keys, texts, raws = _entries(root, seconds, count)
            assert all(audio is not None for audio in cache.get_verified_batch(keys, texts, PARAMS))
            medians = _interleaved({
                "raw": functools.partial(_read_all_raw, raws),
                "by key": functools.partial(cache.get_cached_batch, keys),
                "verified": functools.partial(cache.get_verified_batch, keys, texts, PARAMS),
            }, rounds, reads)  # fmt: skip
            row = {
                "seconds": seconds,
                "entries": count,
                "median_us_per_read": {name: value * 1e6 for name, value in medians.items()},
                "verified_over_by_key": medians["verified"] / medians["by key"],
                "verified_over_raw": medians["verified"] / medians["raw"],
                "by_key_over_raw": medians["by key"] / medians["raw"],
            }
            figures.append(row)
            print(
                f"{seconds:>2} s x {count:>3}  raw {medians['raw'] * 1e6:9.1f} us  "
                f"by key {medians['by key'] * 1e6:9.1f} us  "
                f"verified {medians['verified'] * 1e6:9.1f} us  "
                f"verified/by key {row['verified_over_by_key']:.3f}  "
                f"verified/raw {row['verified_over_raw']:.3f}",
                flush=True,
            )
        info = machine_info(root)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "collision_check.json").write_text(
        json.dumps({"machine": info, "figures": figures}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
