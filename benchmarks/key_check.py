"""What a hit pays for checking that the entry names its own key: an in-process A/B.

Command: ``.venv/bin/python -m benchmarks.key_check`` (about a minute; prints the figures and
writes ``benchmarks/results/key_check.json``).

The same 1 s and 20 s entries of 16 kHz audio are read, interleaved round by round (A B C, B C A,
...) so that the drift of a shared machine hits every variant alike:

- ``raw``: one file read and ``np.frombuffer`` (the floor of a read, as in ``benchmarks.run``);
- ``unchecked``: the cache's read with the WAV layout and digest checks but not the key's (the
  read as it was before every read checked the key): a codec whose ``decode_audio`` skips it;
- ``checked``: the cache's read as it is.

Twice: as plain calls of the blocking core (which isolates the check's cost) and as
``await TTSCache.get_cached_data`` against one worker-thread call of the raw read
(docs/performance.md's "hit within 1.5x of a raw read" figure).
"""

from __future__ import annotations

import functools
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from sparktts_cache import SyncTTSCache, TTSCache
from sparktts_cache._core.codec import EntryBytes, WavCodec

from ._harness import RESULTS, machine_info, time_interleaved
from .baselines import read_raw

RATE = 16000
SECONDS = (1, 20)
ROUNDS = 300
READS_PER_TIMING = 20


class UncheckedWavCodec(WavCodec):
    """The WAV codec without the key check: the hot read before it existed."""

    def decode_audio(self, data: EntryBytes, key: str) -> npt.NDArray[np.float32]:
        _rate, samples, _meta, offset, _n = self._parse(data)
        return np.frombuffer(data, dtype="<f4", count=samples, offset=offset)


def _interleaved(variants: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median seconds per read of each variant, interleaved round by round."""
    names = list(variants)
    runs: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(ROUNDS):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            read = variants[name]
            began = time.perf_counter()
            for _ in range(READS_PER_TIMING):
                read()
            runs[name].append((time.perf_counter() - began) / READS_PER_TIMING)
    return {name: statistics.median(runs[name]) for name in names}


async def _interleaved_async(
    variants: dict[str, Callable[[], Awaitable[object]]],
) -> dict[str, float]:
    async def repeat(make: Callable[[], Awaitable[object]]) -> None:
        for _ in range(READS_PER_TIMING):
            await make()

    timed = await time_interleaved(
        {name: functools.partial(repeat, make) for name, make in variants.items()}, ROUNDS
    )
    return {
        name: statistics.median(runs) / READS_PER_TIMING for name, (runs, _stall) in timed.items()
    }


def _entry(root: Path, seconds: int) -> tuple[str, str]:
    """Write an entry of ``seconds`` of audio, and the same samples as a raw file."""
    audio = (np.random.default_rng(seconds).standard_normal(seconds * RATE) * 0.1).astype(
        np.float32
    )
    cache = SyncTTSCache(root / "cache", sample_rate=16000)
    key = cache.generate_cache_key(f"{seconds} seconds")
    assert cache.cache_data(key, audio, "text")
    raw = root / f"raw-{seconds}.bin"
    raw.write_bytes(audio.tobytes())
    return key, str(raw)


def main() -> int:
    figures: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as work:
        root = Path(work)
        checked, unchecked = (
            SyncTTSCache(root / "cache", sample_rate=16000),
            SyncTTSCache(root / "cache", sample_rate=16000),
        )
        unchecked._core.store.codec = UncheckedWavCodec()
        front, old_front = (
            TTSCache(root / "cache", sample_rate=16000),
            TTSCache(root / "cache", sample_rate=16000),
        )
        old_front._core.store.codec = UncheckedWavCodec()
        for seconds in SECONDS:
            key, raw = _entry(root, seconds)
            assert checked.get_cached_data(key) is not None
            assert unchecked.get_cached_data(key) is not None
            sync = _interleaved({
                "raw": functools.partial(read_raw, raw),
                "unchecked": functools.partial(unchecked.get_cached_data, key),
                "checked": functools.partial(checked.get_cached_data, key),
            })  # fmt: skip

            async def hits(key: str = key, raw: str = raw) -> dict[str, float]:
                return await _interleaved_async({
                    "raw": lambda: anyio.to_thread.run_sync(read_raw, raw),
                    "unchecked": lambda: old_front.get_cached_data(key),
                    "checked": lambda: front.get_cached_data(key),
                })  # fmt: skip

            async_ = anyio.run(hits)
            for mode, medians in (("blocking core", sync), ("get_cached_data", async_)):
                row = {
                    "seconds": seconds,
                    "mode": mode,
                    "median_us": {name: value * 1e6 for name, value in medians.items()},
                    "checked_over_unchecked": medians["checked"] / medians["unchecked"],
                    "checked_over_raw": medians["checked"] / medians["raw"],
                    "unchecked_over_raw": medians["unchecked"] / medians["raw"],
                }
                figures.append(row)
                print(
                    f"{seconds:>2} s  {mode:<16} raw {medians['raw'] * 1e6:8.1f} us  "
                    f"unchecked {medians['unchecked'] * 1e6:8.1f} us  "
                    f"checked {medians['checked'] * 1e6:8.1f} us  "
                    f"checked/unchecked {row['checked_over_unchecked']:.3f}  "
                    f"checked/raw {row['checked_over_raw']:.3f}  "
                    f"unchecked/raw {row['unchecked_over_raw']:.3f}",
                    flush=True,
                )
        info = machine_info(root)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "key_check.json").write_text(
        json.dumps(
            {"machine": info, "rounds": ROUNDS, "per_timing": READS_PER_TIMING, "figures": figures},
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
