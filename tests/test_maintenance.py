"""Size limits, LRU eviction, prune, verify and stats."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sparktts_cache import SyncTTSCache, TTSCache
from sparktts_cache._file import eviction as eviction
from sparktts_cache._file import walk as walk
from sparktts_cache._file.layout import CLEANUP_LOCK
from sparktts_cache.testing import sealed_audio

from .helpers import files_under, fill

ENTRY_BYTES = 16_000 * 4 // 4 + 400  # 0.25 s of float32 audio plus the header, roughly


def disk_bytes(root: Path) -> int:
    return sum((root / name).stat().st_size for name in files_under(root) if name.endswith(".wav"))


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def entry_path(cache: SyncTTSCache, key: str) -> Path:
    return cache.cache_dir / key[:2] / key[2:4] / f"{key}.wav"


def test_cache_stays_under_its_limit(tmp_path: Path) -> None:
    limit = 60 * ENTRY_BYTES
    cache = SyncTTSCache(tmp_path, max_size_bytes=limit, sample_rate=16000)
    fill(cache, 300)
    assert disk_bytes(tmp_path) <= limit
    assert disk_bytes(tmp_path) >= 0.5 * limit  # trimmed to about 90 %, not emptied
    stats = cache.stats()
    assert stats.bytes == disk_bytes(tmp_path) and stats.max_size_bytes == limit


def test_least_recently_used_entries_go_first(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    keys = fill(cache, 40)
    for index, key in enumerate(keys):  # entry 0 is the oldest
        age(entry_path(cache, key), 10_000 - index * 100)
    for key in keys[:5]:  # reading the five oldest makes them the most recent
        assert cache.get_cached_data(key) is not None
    entry_size = entry_path(cache, keys[0]).stat().st_size
    report = cache.prune(max_size_bytes=20 * entry_size)
    assert report.entries == 20
    survivors = [key for key in keys if entry_path(cache, key).exists()]
    assert survivors == keys[:5] + keys[25:]


def test_a_hit_refreshes_recency_at_most_once_a_minute(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    [key] = fill(cache, 1)
    path = entry_path(cache, key)
    age(path, 30)
    before = path.stat().st_mtime
    assert cache.get_cached_data(key) is not None
    assert path.stat().st_mtime == before  # touched less than a minute ago: left alone
    age(path, 120)
    assert cache.get_cached_data(key) is not None
    assert time.time() - path.stat().st_mtime < 5


def test_prune_by_age_and_orphan_temp_files(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    keys = fill(cache, 10)
    for key in keys[:4]:
        age(entry_path(cache, key), 40 * 86400)
    shard = entry_path(cache, keys[0]).parent
    old_temp = shard / f"{keys[0]}.0123456789abcdef.tmp"
    new_temp = shard / f"{keys[0]}.fedcba9876543210.tmp"
    old_temp.write_bytes(b"dead writer")
    new_temp.write_bytes(b"live writer")
    age(old_temp, 2 * 3600)
    report = cache.prune(max_age=30 * 86400)
    assert (report.entries, report.temp_files) == (4, 1)
    assert not old_temp.exists() and new_temp.exists()
    assert [entry_path(cache, key).exists() for key in keys] == [False] * 4 + [True] * 6


def test_prune_removes_empty_shards_and_validates_arguments(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    fill(cache, 10)
    report = cache.prune(max_size_bytes=0)
    assert report.entries == 10 and report.empty_dirs > 0
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []
    with pytest.raises(ValueError):
        cache.prune(max_size_bytes=-1)
    with pytest.raises(ValueError):
        SyncTTSCache(tmp_path, max_size_bytes=0, sample_rate=16000)


def test_eviction_keeps_foreign_files_and_open_readers_keep_their_data(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    keys = fill(cache, 5)
    foreign = entry_path(cache, keys[0]).parent / "notes.txt"
    foreign.write_text("mine")
    with open(entry_path(cache, keys[1]), "rb") as reader:  # a reader in the middle of a read
        head = reader.read(100)
        cache.prune(max_size_bytes=0)
        rest = reader.read()
    assert foreign.read_text() == "mine"
    from sparktts_cache._core.codec import WavCodec

    entry = WavCodec().decode(bytearray(head + rest), keys[1])  # whole and checksum-valid
    np.testing.assert_array_equal(entry.audio, sealed_audio(1))


def test_cleanup_is_skipped_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    limit = 20 * ENTRY_BYTES
    cache = SyncTTSCache(tmp_path, max_size_bytes=limit, sample_rate=16000)
    tmp_path.mkdir(exist_ok=True)
    lock = os.open(tmp_path / CLEANUP_LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fill(cache, 60)  # a writer waiting for this thread's lock would never return
        assert disk_bytes(tmp_path) > limit  # and nobody cleaned
    finally:
        os.close(lock)
    fill(cache, 5, prefix="after")
    assert disk_bytes(tmp_path) <= limit


def test_large_caches_trim_the_fullest_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eviction, "FULL_SCAN_ENTRIES", 10)  # take the million-entry path
    limit = 100 * ENTRY_BYTES
    cache = SyncTTSCache(tmp_path, max_size_bytes=limit, sample_rate=16000)
    fill(cache, 400)
    assert disk_bytes(tmp_path) <= limit
    assert cache.verify().clean


def test_counters_follow_writes_replacements_and_clear(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, max_size_bytes=10**9, sample_rate=16000)
    keys = fill(cache, 30)
    fill(cache, 10)  # replaces ten entries with the same sizes
    from sparktts_cache._file.counters import read_counter

    def counted() -> tuple[int, int]:
        total = [0, 0]
        for outer in os.listdir(tmp_path):
            if len(outer) == 2:
                fd = os.open(tmp_path / outer, os.O_RDONLY | os.O_DIRECTORY)
                size, count = read_counter(fd)
                os.close(fd)
                total = [total[0] + size, total[1] + count]
        return total[0], total[1]

    assert counted() == (disk_bytes(tmp_path), len(keys))
    assert cache.clear_cache()
    assert counted() == (0, 0)


def test_verify_finds_and_fixes_each_kind_of_damage(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    keys = fill(cache, 8)
    corrupt = entry_path(cache, keys[0])
    corrupt.write_bytes(corrupt.read_bytes()[:-10])
    flipped = entry_path(cache, keys[1])
    data = bytearray(flipped.read_bytes())
    data[-100] ^= 1
    flipped.write_bytes(bytes(data))
    misplaced = entry_path(cache, keys[2])  # a whole entry under another key's name
    other = keys[3]
    entry_path(cache, keys[2]).write_bytes(entry_path(cache, other).read_bytes())
    orphan = corrupt.parent / f"{keys[0]}.00000000000000aa.tmp"
    orphan.write_bytes(b"x")
    age(orphan, 7200)
    empty = tmp_path / "ff" / "ee"
    empty.mkdir(parents=True, exist_ok=True)
    foreign = corrupt.parent / "README.txt"
    foreign.write_text("mine")
    report = cache.verify()
    assert report.checked == 8 and not report.ok
    assert sorted(report.corrupt) == sorted(
        str(p.relative_to(tmp_path)) for p in (corrupt, flipped, misplaced)
    )
    assert report.orphan_temp_files == [str(orphan.relative_to(tmp_path))]
    assert "ff/ee" in report.empty_dirs
    assert report.foreign_files == [str(foreign.relative_to(tmp_path))]
    assert corrupt.exists()  # reporting removes nothing
    fixed = cache.verify(fix=True)
    assert fixed.fixed and not corrupt.exists() and not orphan.exists() and not empty.exists()
    assert foreign.read_text() == "mine"
    again = cache.verify()
    assert again.clean and again.checked == 5


def test_stats_and_traffic(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    empty = cache.stats()
    assert (empty.entries, empty.bytes, empty.oldest, empty.newest) == (0, 0, None, None)
    keys = fill(cache, 6)
    age(entry_path(cache, keys[0]), 5000)
    cache.get_cached_data(keys[1])
    cache.get_cached_data("0" * 32)
    stats = cache.stats()
    assert (stats.entries, stats.bytes) == (6, disk_bytes(tmp_path))
    assert stats.oldest is not None and stats.newest is not None
    assert stats.newest - stats.oldest > 4000
    assert (stats.hits, stats.misses, stats.writes) == (1, 1, 6)


@pytest.mark.anyio
async def test_async_front_offers_the_same(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path, max_size_bytes=10**6, sample_rate=16000)
    key = cache.generate_cache_key("x")
    assert await cache.cache_data(key, sealed_audio(1), "x")
    assert (await cache.stats()).entries == 1
    assert (await cache.verify()).clean
    assert (await cache.prune(max_size_bytes=0)).entries == 1
    entry = await cache.get_entry(key)
    assert entry is None


@pytest.mark.anyio
async def test_iter_entries_lists_every_entry_on_both_fronts(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    keys = fill(cache, 40)
    (tmp_path / "user-file.txt").write_text("not an entry")
    listed = {info.key: info for info in cache.iter_entries()}
    assert set(listed) == set(keys)
    for key, info in listed.items():
        assert info.path == f"{key[:2]}/{key[2:4]}/{key}.wav"
        assert info.size == (tmp_path / info.path).stat().st_size
    async_listed = [info.key async for info in TTSCache(tmp_path, sample_rate=16000).iter_entries()]
    assert sorted(async_listed) == sorted(keys)
    assert [
        info.key for info in SyncTTSCache(tmp_path / "none", sample_rate=16000).iter_entries()
    ] == []


@pytest.mark.parametrize("operation", ["prune", "verify --fix", "eviction"])
def test_maintenance_never_follows_a_shard_swapped_for_a_symlink_after_its_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    """A racing process swaps a scanned shard for a symlink to outside files that look exactly
    like the scanned ones (same names, sizes and times): nothing outside may be removed."""
    import shutil

    root = tmp_path / "cache"
    cache = SyncTTSCache(root, sample_rate=16000)
    keys = fill(cache, 30)
    for key in keys[:10]:  # damaged, so that verify --fix has something to remove
        path = entry_path(cache, key)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        stamp = path.stat()
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    outside = tmp_path / "outside"
    real_scan = walk.scan_shard

    def scan_then_swap(root_fd: int, outer: str) -> walk.ShardScan:
        scan = real_scan(root_fd, outer)
        if not (outside / outer).exists():
            shutil.copytree(root / outer, outside / outer)  # copies keep sizes and times
            shutil.rmtree(root / outer)
            (root / outer).symlink_to(outside / outer, target_is_directory=True)
        return scan

    monkeypatch.setattr(walk, "scan_shard", scan_then_swap)
    if operation == "prune":
        cache.prune(max_size_bytes=0)
    elif operation == "verify --fix":
        cache.verify(fix=True)
    else:
        limited = SyncTTSCache(root, max_size_bytes=1, sample_rate=16000)
        monkeypatch.setattr(eviction, "FULL_SCAN_ENTRIES", 0)  # the shard-by-shard path too
        limited.cache_data(limited.generate_cache_key("trigger"), sealed_audio(1), "x")
        cache.prune(max_size_bytes=0)
    copied = [name for name in files_under(outside) if name.endswith(".wav")]
    assert len(copied) >= 30
    for name in copied:
        assert (outside / name).is_file()
