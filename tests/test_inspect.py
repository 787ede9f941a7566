"""``inspect``: an entry file as it is, in either format, without touching it (the command line's
``ls``, ``show`` and ``export`` read through it)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sparktts_cache import Inspection, InvalidKeyError, InvalidOptionError, SyncTTSCache, TTSCache
from sparktts_cache.testing import sealed_audio


def age(path: Path, seconds: float) -> float:
    """Make ``path`` last used ``seconds`` ago; return that time."""
    stamp = path.stat().st_mtime - seconds
    os.utime(path, (stamp, stamp))
    return stamp


@pytest.mark.parametrize("audio_format", ["wav", "flac"])
def test_a_whole_entry_is_read_without_refreshing_its_recency(
    tmp_path: Path, audio_format: str
) -> None:
    cache = SyncTTSCache(tmp_path, audio_format=audio_format, sample_rate=16000)
    key = cache.generate_cache_key("hello")
    assert cache.cache_data(key, sealed_audio(1), "hello", {"voice": "en"})
    path = cache.entry_path(key)
    stamp = age(path, 3600)
    found = cache.inspect(key)
    assert found is not None and found.damage is None and found.path == str(path)
    entry = found.entry
    assert entry is not None and (entry.meta.key, entry.meta.text) == (key, "hello")
    assert entry.meta.params == {"voice": "en"} and entry.meta.sample_rate == 16000
    assert path.stat().st_mtime == stamp  # looking is not using: its place in the LRU order stays
    assert cache.get_entry(key) is not None and path.stat().st_mtime > stamp  # a read is using


def test_an_entry_of_the_other_format_is_found_wav_first(tmp_path: Path) -> None:
    flac = SyncTTSCache(tmp_path, audio_format="flac", sample_rate=16000)
    key = flac.generate_cache_key("hello")
    assert flac.cache_data(key, sealed_audio(1), "hello")
    wav = SyncTTSCache(tmp_path, sample_rate=16000)
    found = wav.inspect(key)
    assert found is not None and found.path == str(flac.entry_path(key))
    assert wav.inspect(key, "wav") is None  # only the format asked for
    assert wav.cache_data(key, sealed_audio(2), "hello")  # now both formats hold one
    both = [wav.inspect(key), wav.inspect(key, "flac")]
    assert [found.path for found in both if found] == [str(wav.entry_path(key)), found.path]


def test_a_damaged_entry_says_what_is_wrong_and_stays(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    key = cache.generate_cache_key("hello")
    assert cache.cache_data(key, sealed_audio(1), "hello")
    path = cache.entry_path(key)
    whole = path.read_bytes()
    data = bytearray(whole)
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cache.inspect(key) == Inspection(str(path), None, "checksum mismatch")
    assert path.read_bytes() == data  # left for verify --fix
    other = cache.generate_cache_key("other")  # a whole entry, of another key
    cache.entry_path(other).parent.mkdir(parents=True, exist_ok=True)
    cache.entry_path(other).write_bytes(whole)
    found = cache.inspect(other)
    assert found is not None and found.entry is None
    assert found.damage == f"entry belongs to key {key}, not {other}"
    cache.entry_path(other).unlink()
    cache.entry_path(other).mkdir()
    found = cache.inspect(other)
    assert found is not None and found.damage is not None
    assert found.damage.startswith("not a regular file")
    assert cache.entry_path(other).is_dir()


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path / "cache", sample_rate=16000)
    key = cache.generate_cache_key("hello")
    assert cache.cache_data(key, sealed_audio(1), "hello")
    path = cache.entry_path(key)
    outside = tmp_path / "outside.wav"
    os.replace(path, outside)
    path.symlink_to(outside)  # at the entry's path: damage, named
    found = cache.inspect(key)
    assert found is not None and found.entry is None and found.damage
    shard = path.parent.parent
    os.replace(shard, tmp_path / "shard")
    shard.symlink_to(tmp_path / "shard", target_is_directory=True)  # at a shard's: no entry
    assert cache.inspect(key) is None
    assert cache.get_cached_data(key) is None  # as the cache's own readers see it


def test_nothing_there_and_bad_arguments(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path / "none", sample_rate=16000)
    key = cache.generate_cache_key("hello")
    assert cache.inspect(key) is None
    with pytest.raises(InvalidKeyError):
        cache.inspect("not a key")
    with pytest.raises(InvalidOptionError, match="audio_format must be one of"):
        cache.inspect(key, "mp3")


@pytest.mark.anyio
async def test_the_async_front_inspects_in_a_worker_thread(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path, sample_rate=16000)
    key = cache.generate_cache_key("hello")
    assert await cache.cache_data(key, sealed_audio(1), "hello")
    found = await cache.inspect(key)
    assert found is not None and found.entry is not None
    np.testing.assert_array_equal(found.entry.audio, sealed_audio(1))
    with pytest.raises(InvalidKeyError):
        await cache.inspect("nope")
