"""Entries that are not what their path says: another key's entry, a FLAC header that declares
2**36 samples, metadata with a valid checksum that ``cache_data`` would never have written. Each
is a logged miss for every reader (and removed by the file store), never an error and never
another request's audio. Redis and the tiered cache have theirs in ``test_redis.py``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sparktts_cache import (
    FileSynthesisLock,
    InvalidOptionError,
    SyncTTSCache,
    TTSCache,
    decode_entry,
    generate_cache_key,
)
from sparktts_cache._core.codec import MAX_ENTRY_BYTES, max_flac_samples
from sparktts_cache.testing import sealed_audio

from .crafted import (
    CREATED,
    DAMAGED_ENTRIES,
    FLAC_DECLARATIONS,
    HOSTILE_METADATA,
    crafted_flac,
    crafted_wav,
    hostile_wav,
    key_check_dodges,
    metadata_json,
)
from .test_cli import cli

# -- an entry at another key's path ------------------------------------------------------------


@pytest.mark.parametrize("audio_format", ["wav", "flac"])
def test_an_entry_at_another_keys_path_is_a_logged_miss_and_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, audio_format: str
) -> None:
    cache = SyncTTSCache(tmp_path, audio_format=audio_format, sample_rate=16000)
    mine, other = cache.generate_cache_key("mine"), cache.generate_cache_key("other")
    assert cache.cache_data(mine, sealed_audio(1), "mine")
    wrong = cache.entry_path(other)
    wrong.parent.mkdir(parents=True, exist_ok=True)
    wrong.write_bytes(cache.entry_path(mine).read_bytes())  # a valid entry, at the wrong path
    with caplog.at_level(logging.WARNING, logger="sparktts_cache"):
        assert cache.get_cached_data(other) is None
    assert f"belongs to key {mine}, not {other}" in caplog.text and not wrong.exists()
    wrong.write_bytes(cache.entry_path(mine).read_bytes())
    found = cache.get_cached_batch([other, mine])
    assert found[0] is None and not wrong.exists()
    assert found[1] is not None and len(found[1]) == len(sealed_audio(1))  # its own: a hit
    wrong.write_bytes(cache.entry_path(mine).read_bytes())
    assert cache.get_entry(other) is None and not wrong.exists()


@pytest.mark.anyio
async def test_the_async_front_checks_the_key_too(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path, sample_rate=16000)
    mine, other = cache.generate_cache_key("mine"), cache.generate_cache_key("other")
    assert await cache.cache_data(mine, sealed_audio(1), "mine")
    cache.entry_path(other).parent.mkdir(parents=True, exist_ok=True)
    cache.entry_path(other).write_bytes(cache.entry_path(mine).read_bytes())
    assert await cache.get_cached_batch([other]) == [None]
    np.testing.assert_array_equal(await cache.get_cached_data(mine), sealed_audio(1))


def test_the_key_check_reads_the_bytes_the_checksum_covers(tmp_path: Path) -> None:
    """The fast check compares the key at its fixed place; a crafted entry whose JSON starts
    differently (a space, another order) names no key there and is a miss, as is one whose
    metadata is too short to hold a key."""
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    key = cache.generate_cache_key("hello")
    audio = sealed_audio(1, 160)
    path = cache.entry_path(key)
    path.parent.mkdir(parents=True)
    good = metadata_json(key, len(audio))
    path.write_bytes(crafted_wav(good, audio))
    np.testing.assert_array_equal(cache.get_cached_data(key), audio)  # the crafting is right
    for meta in key_check_dodges(key, len(audio)).values():
        path.write_bytes(crafted_wav(meta, audio))
        assert cache.get_cached_data(key) is None and not path.exists()


# -- a FLAC header that declares more than the file holds ---------------------------------------


@pytest.mark.parametrize(
    ("samples", "declared"), FLAC_DECLARATIONS.values(), ids=FLAC_DECLARATIONS.keys()
)
def test_a_flac_header_cannot_demand_memory(tmp_path: Path, samples: int, declared: int) -> None:
    cache = SyncTTSCache(tmp_path, audio_format="flac", sample_rate=16000)
    key = cache.generate_cache_key("hello")
    data = crafted_flac(key, np.array([7], dtype=np.int16), samples=samples, declared=declared)
    assert len(data) < 400
    path = cache.entry_path(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    report = cache.verify()
    assert report.corrupt == [str(path.relative_to(tmp_path))] and path.exists()
    assert cache.get_cached_data(key) is None and not path.exists()
    path.write_bytes(data)
    assert cache.get_cached_batch([key]) == [None] and not path.exists()
    path.write_bytes(data)
    verify = cli(tmp_path, "verify")
    assert verify.returncode == 1 and "corrupt entry found" in verify.stdout
    assert "Traceback" not in verify.stderr
    show = cli(tmp_path, "show", key)  # damaged: one line naming the file, which stays
    assert show.returncode == 1 and show.stderr.startswith(f"sparktts-cache: damaged entry {path}")
    assert show.stderr.count("\n") == 1 and path.exists()


def test_the_flac_bound_holds_every_real_entry(tmp_path: Path) -> None:
    """Silence is what FLAC codes densest: a minute of it is still far inside the bound."""
    cache = SyncTTSCache(tmp_path, audio_format="flac", sample_rate=16000)
    key = cache.generate_cache_key("a minute of silence")
    silence = np.zeros(60 * 16000, dtype=np.float32)
    assert cache.cache_data(key, silence, "a minute of silence")
    size = cache.entry_path(key).stat().st_size
    assert 60 * 16000 <= max_flac_samples(size) // 8  # room to spare
    np.testing.assert_array_equal(cache.get_cached_data(key), silence)
    data = crafted_flac(key, np.array([7], dtype=np.int16), samples=1)  # and the crafting is right
    cache.entry_path(key).write_bytes(data)
    entry = cache.get_entry(key)
    assert entry is not None and entry.audio.tolist() == [7 / 32768]


def test_the_flac_bound_is_the_file_size_and_what_an_entry_may_hold() -> None:
    assert max_flac_samples(300) == (300 // 8 + 1) * 65536  # 2.4 million: 4.7 MiB of int16
    assert max_flac_samples(MAX_ENTRY_BYTES) == MAX_ENTRY_BYTES // 4


# -- metadata with a valid checksum that cache_data would not have written ----------------------


@pytest.fixture
def crafted_cache(tmp_path: Path) -> tuple[SyncTTSCache, str, Path]:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    key = cache.generate_cache_key("hello")
    path = cache.entry_path(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(crafted_wav(metadata_json(key, 160), sealed_audio(1, 160)))
    entry = cache.get_entry(key)  # ordinary metadata, crafted the same way, is an entry
    assert entry is not None and entry.meta.text == "hello"
    assert entry.meta.created == float(CREATED)
    return cache, key, path


@pytest.mark.parametrize("name", HOSTILE_METADATA)
def test_crafted_metadata_is_a_corrupt_miss_for_every_reader(
    crafted_cache: tuple[SyncTTSCache, str, Path], caplog: pytest.LogCaptureFixture, name: str
) -> None:
    cache, key, path = crafted_cache
    data = hostile_wav(name, key, sealed_audio(1, 160))
    path.write_bytes(data)
    report = cache.verify()
    assert report.corrupt == [str(path.relative_to(cache.cache_dir))]
    with caplog.at_level(logging.WARNING, logger="sparktts_cache"):
        assert cache.get_entry(key) is None
    assert "corrupt" in caplog.text and not path.exists()
    assert decode_entry(key, data) is None  # what a blob backend (Redis) decodes with


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["params nested past the recursion limit", "a 400-digit creation time"]
)
def test_crafted_metadata_is_a_damaged_entry_for_the_command_line(
    crafted_cache: tuple[SyncTTSCache, str, Path], name: str
) -> None:
    cache, key, path = crafted_cache
    data = hostile_wav(name, key, sealed_audio(1, 160))
    path.write_bytes(data)
    listing = cli(cache.cache_dir, "ls")
    assert listing.returncode == 0 and key not in listing.stdout
    assert listing.stderr.startswith(f"ls: damaged entry {path}: ")
    exported = cache.cache_dir / "exported.wav"
    for args, code in [(("show", key), 1), (("export", key, str(exported)), 1), (("verify",), 1)]:
        out = cli(cache.cache_dir, *args)
        assert out.returncode == code, (args, out.stderr)
        assert "Traceback" not in out.stderr and path.exists()
        if args[0] != "verify":
            assert out.stderr.startswith(f"sparktts-cache: damaged entry {path}: ")
            assert out.stderr.count("\n") == 1
    assert not exported.exists()


def test_a_creation_time_beyond_the_calendar_is_shown(
    crafted_cache: tuple[SyncTTSCache, str, Path],
) -> None:
    """A finite time is valid metadata (an entry the library reads), so ``show`` must show it."""
    cache, key, path = crafted_cache
    audio = sealed_audio(1, 160)
    path.write_bytes(crafted_wav(metadata_json(key, len(audio), created="1e300"), audio))
    out = cli(cache.cache_dir, "show", key)
    assert out.returncode == 0 and "1e+300" in out.stdout, out.stderr


# -- the checked reads refuse what get_entry refuses ---------------------------------------------


@pytest.mark.parametrize("name", DAMAGED_ENTRIES)
def test_the_checked_reads_miss_wherever_get_entry_misses(tmp_path: Path, name: str) -> None:
    """``lookup`` and ``get_verified_batch`` serve an entry that records exactly their request
    without parsing its metadata (the fast path); every crafted damaged entry above, made for
    that very request, must still be a miss there wherever ``get_entry`` refuses it (a full
    parse: all of them), and a whole entry crafted the same way a hit for every one of them."""
    key = generate_cache_key("hello")
    audio_format, data = DAMAGED_ENTRIES[name](key)
    cache = SyncTTSCache(tmp_path, audio_format=audio_format, sample_rate=16000)
    path = cache.entry_path(key)
    path.parent.mkdir(parents=True)
    reads: dict[str, Callable[[], object]] = {
        "get_entry": lambda: cache.get_entry(key),
        "lookup": lambda: cache.lookup("hello")[1],
        "get_verified_batch": lambda: cache.get_verified_batch([key], ["hello"])[0],
        "get_verified_batch, a None parameter": lambda: cache.get_verified_batch(
            [key], ["hello"], {"voice": None}
        )[0],  # a None parameter is none: the same request
    }
    served = {}
    for read_name, read in reads.items():
        path.write_bytes(data)  # a refused entry is removed: each read gets it afresh
        served[read_name] = read() is not None
    assert served == dict.fromkeys(reads, False)
    audio = sealed_audio(1, 160)  # the control: the same request's whole entry is a hit for all
    whole = (
        crafted_wav(metadata_json(key, len(audio)), audio)
        if audio_format == "wav"
        else crafted_flac(key, np.array([7], dtype=np.int16), samples=1)
    )
    for read_name, read in reads.items():
        path.write_bytes(whole)
        assert read() is not None, read_name


# -- synthesis locks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"stale_after": 0}, {"stale_after": -1.0}, {"stale_after": math.nan},
     {"stale_after": math.inf}, {"stale_after": True}, {"stale_after": "60"},
     {"stale_after": 10**400}, {"poll": 0}, {"poll": -0.05}, {"poll": math.nan}],
)  # fmt: skip
def test_file_lock_timing_is_validated(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(InvalidOptionError):
        FileSynthesisLock(tmp_path, **options)  # type: ignore[arg-type]
    lock = FileSynthesisLock(tmp_path, stale_after=np.float64(0.5), poll=1)
    assert (lock.stale_after, lock.poll) == (0.5, 1.0)
