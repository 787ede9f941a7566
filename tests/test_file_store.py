"""The file store's on-disk discipline: layout, atomicity, hostile files, faults and clearing."""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from sparktts_cache import SyncTTSCache, TTSCache, default_cache_dir
from sparktts_cache._file.store import FileStore
from sparktts_cache.testing import sealed_audio

from .helpers import files_under, fill


@pytest.fixture
def cache(tmp_path: Path) -> SyncTTSCache:
    return SyncTTSCache(tmp_path / "cache", sample_rate=16000)


def write_one(cache: SyncTTSCache, text: str = "hello", seed: int = 1) -> tuple[str, Path]:
    key = cache.generate_cache_key(text, {})
    assert cache.cache_data(key, sealed_audio(seed), text, {})
    return key, cache.cache_dir / key[:2] / key[2:4] / f"{key}.wav"


def test_layout_is_two_levels_of_shards(cache: SyncTTSCache) -> None:
    key, path = write_one(cache)
    assert files_under(cache.cache_dir) == ["CACHEDIR.TAG", f"{key[:2]}/{key[2:4]}/{key}.wav"]
    tag = (cache.cache_dir / "CACHEDIR.TAG").read_bytes()  # the first write marked the directory
    assert tag.startswith(b"Signature: 8a477f597d28d172789f06886806bc55")
    assert TTSCache(cache.cache_dir).entry_path(key) == path


def test_entry_is_a_standard_wav_with_exact_samples_and_metadata(cache: SyncTTSCache) -> None:
    key, path = write_one(cache, "Grüße")
    samples, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000
    np.testing.assert_array_equal(samples, sealed_audio(1))
    entry = cache.get_entry(key)
    assert entry is not None
    assert (entry.meta.key, entry.meta.text, entry.meta.sample_rate) == (key, "Grüße", 16000)
    assert entry.meta.created > 0


def test_sample_rate_is_recorded(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=22050)
    key = cache.generate_cache_key("x")
    assert cache.cache_data(key, sealed_audio(1), "x")
    assert cache.cache_data(key.replace(key[0], "f" if key[0] != "f" else "e", 1),
                            sealed_audio(2), "y", sample_rate=44100)  # fmt: skip
    entry = cache.get_entry(key)
    assert entry is not None and entry.meta.sample_rate == 22050
    assert (
        soundfile.info(str(cache.cache_dir / key[:2] / key[2:4] / f"{key}.wav")).samplerate == 22050
    )
    with pytest.raises(ValueError):
        cache.cache_data(key, sealed_audio(1), "x", sample_rate=0)


def test_no_temp_file_is_left_and_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        cache = SyncTTSCache(tmp_path / "cache", sample_rate=16000)
        _key, path = write_one(cache)
    finally:
        os.umask(old)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    for item in (path, path.parent, path.parent.parent):
        assert not item.stat().st_mode & stat.S_IWOTH, f"{item} is world-writable"
    old = os.umask(0o077)
    try:
        _key, private = write_one(SyncTTSCache(tmp_path / "private", sample_rate=16000))
    finally:
        os.umask(old)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(private.parent.stat().st_mode) == 0o700


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPARKTTS_CACHE_DIR", str(tmp_path / "from-env"))
    assert TTSCache(sample_rate=16000).cache_dir == tmp_path / "from-env"
    monkeypatch.delenv("SPARKTTS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sparktts_cache"


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="audio_format"):
        TTSCache("x", audio_format="mp3", sample_rate=16000)
    with pytest.raises(TypeError):
        TTSCache(42, sample_rate=16000)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TTSCache("x", sample_rate=-1)


# -- corrupt, truncated and foreign files -----------------------------------------------------


def _flipped(good: bytes, offset: int, bits: int = 0x10) -> bytes:
    damaged = bytearray(good)
    damaged[offset] ^= bits
    return bytes(damaged)


def _plain_wav() -> bytes:
    plain = io.BytesIO()
    soundfile.write(plain, sealed_audio(1), 16000, format="WAV", subtype="FLOAT")
    return plain.getvalue()


#: Ways to damage a good entry: each one must make it a miss. Offsets and cuts land in every part
#: of the layout (RIFF header, fmt, fact, sptc with its digest and JSON, data).
DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda good: b"",
    "foreign text": lambda good: b"not audio at all\n" * 10,
    "truncated to 1": lambda good: good[:1],
    "truncated to 4": lambda good: good[:4],
    "truncated to 12": lambda good: good[:12],
    "truncated to 40": lambda good: good[:40],
    "truncated to 60": lambda good: good[:60],
    "truncated to 100": lambda good: good[:100],
    "truncated to half": lambda good: good[: len(good) // 2],
    "truncated by 4": lambda good: good[:-4],
    "truncated by 1": lambda good: good[:-1],
    "extended": lambda good: good + b"\0\0\0\0",
    "bit flip at 0": lambda good: _flipped(good, 0),
    "bit flip at 5": lambda good: _flipped(good, 5),
    "bit flip at 8": lambda good: _flipped(good, 8),
    "bit flip at 22": lambda good: _flipped(good, 22),
    "bit flip at 40": lambda good: _flipped(good, 40),
    "bit flip at 62": lambda good: _flipped(good, 62),
    "bit flip at 70": lambda good: _flipped(good, 70),
    "bit flip at 100": lambda good: _flipped(good, 100),
    "bit flip at half": lambda good: _flipped(good, len(good) // 2),
    "bit flip in the last byte": lambda good: _flipped(good, len(good) - 1),
    "plain wav from another program": lambda good: _plain_wav(),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_every_kind_of_damage_is_a_logged_miss_and_removed(
    cache: SyncTTSCache, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    key, path = write_one(cache)
    good = path.read_bytes()
    path.write_bytes(DAMAGE[damage](good))
    with caplog.at_level(logging.WARNING, logger="sparktts_cache"):
        assert cache.get_cached_data(key) is None
    assert "corrupt" in caplog.text
    assert not path.exists(), "the damaged file was not removed"
    assert cache.get_cache_status(["hello"]).segments_to_generate == ["hello"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(good)
    np.testing.assert_array_equal(cache.get_cached_data(key), sealed_audio(1))


FLAC_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda good: b"",
    "truncated to 10": lambda good: good[:10],
    "truncated to 100": lambda good: good[:100],
    "truncated to half": lambda good: good[: len(good) // 2],
    "truncated by 1": lambda good: good[:-1],
    "byte flipped at half": lambda good: _flipped(good, len(good) // 2, 0xFF),
}


@pytest.mark.parametrize("damage", FLAC_DAMAGE)
def test_flac_damage_is_a_miss(tmp_path: Path, damage: str) -> None:
    cache = SyncTTSCache(tmp_path, audio_format="flac", sample_rate=16000)
    key = cache.generate_cache_key("hello")
    assert cache.cache_data(key, sealed_audio(1), "hello")
    path = cache.cache_dir / key[:2] / key[2:4] / f"{key}.flac"
    path.write_bytes(FLAC_DAMAGE[damage](path.read_bytes()))
    assert cache.get_cached_data(key) is None


def test_entry_under_the_wrong_key_is_a_miss(cache: SyncTTSCache) -> None:
    _key, path = write_one(cache, "first")
    other = cache.generate_cache_key("second", {})
    target = cache.cache_dir / other[:2] / other[2:4] / f"{other}.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    assert cache.get_entry(other) is None


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink"])
def test_directory_fifo_and_symlink_at_entry_path_are_misses(
    cache: SyncTTSCache, tmp_path: Path, kind: str
) -> None:
    outside = tmp_path / "outside.wav"
    _key, good_path = write_one(cache, "good")
    outside.write_bytes(good_path.read_bytes())
    key = cache.generate_cache_key(f"hostile {kind}", {})
    path = cache.cache_dir / key[:2] / key[2:4] / f"{key}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(outside)
    assert cache.get_cached_data(key) is None
    assert cache.get_entry(key) is None
    assert os.path.lexists(path), f"the {kind} should be left alone"
    assert outside.read_bytes() == good_path.read_bytes()


def test_symlinked_shard_is_never_followed(cache: SyncTTSCache, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    key = cache.generate_cache_key("escape", {})
    first, _path = write_one(cache, "first")  # a cache (marked by its first write) ...
    assert first[:2] != key[:2]
    (cache.cache_dir / key[:2]).symlink_to(outside, target_is_directory=True)  # ... then attacked
    assert cache.cache_data(key, sealed_audio(1), "escape", {}) is False
    assert cache.get_cached_data(key) is None
    assert list(outside.iterdir()) == []
    # A planted entry outside, reachable only through the link, is not read either.
    (outside / key[2:4]).mkdir()
    other = SyncTTSCache(tmp_path / "real", sample_rate=16000)
    _k, real_path = write_one(other, "escape")
    (outside / key[2:4] / f"{key}.wav").write_bytes(real_path.read_bytes())
    assert cache.get_cached_data(key) is None
    assert cache.clear_cache() is True
    assert (outside / key[2:4] / f"{key}.wav").exists(), "clear followed a symlink"


def test_clear_keeps_files_the_cache_did_not_write(cache: SyncTTSCache) -> None:
    keys = fill(cache, 20)
    root = cache.cache_dir
    user_files = ["notes.txt", "ab/readme.md", f"{keys[0][:2]}/{keys[0][2:4]}/mine.wav",
                  f"{keys[0][:2]}/{keys[0][2:4]}/{'f' * 32}.wav.bak", "zz/00/" + "0" * 32 + ".wav",
                  f"{keys[1][:2]}/" + "0" * 32 + ".wav"]  # fmt: skip
    for name in user_files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("user data")
    orphan = root / keys[2][:2] / keys[2][2:4] / f"{keys[2]}.0123456789abcdef.tmp"
    orphan.write_bytes(b"half written")
    assert cache.clear_cache() is True
    assert files_under(root) == sorted([*user_files, "CACHEDIR.TAG"])
    assert all(cache.get_cached_data(key) is None for key in keys)


def test_clear_removes_empty_shards(cache: SyncTTSCache) -> None:
    fill(cache, 30)
    assert cache.clear_cache()
    assert [p.name for p in cache.cache_dir.iterdir()] == ["CACHEDIR.TAG"]  # still a cache


def test_clear_of_a_missing_directory_is_fine(tmp_path: Path) -> None:
    assert SyncTTSCache(tmp_path / "never-created", sample_rate=16000).clear_cache() is True


# -- faults -----------------------------------------------------------------------------------


def test_disk_full_returns_false_and_leaves_nothing(
    cache: SyncTTSCache, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_writev = os.writev
    calls = {"n": 0}

    def full(fd: int, buffers: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_writev(fd, [bytes(memoryview(buffers[0])[:10])])  # a partial write first
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", full)
    key = cache.generate_cache_key("full", {})
    with caplog.at_level(logging.ERROR, logger="sparktts_cache"):
        assert cache.cache_data(key, sealed_audio(1), "full", {}) is False
    assert "No space left" in caplog.text
    assert files_under(cache.cache_dir) == ["CACHEDIR.TAG"]
    monkeypatch.setattr(os, "writev", real_writev)
    assert cache.cache_data(key, sealed_audio(1), "full", {}) is True


def test_rename_failure_returns_false_and_leaves_nothing(
    cache: SyncTTSCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", broken)
    key = cache.generate_cache_key("io", {})
    assert cache.cache_data(key, sealed_audio(1), "io", {}) is False
    assert files_under(cache.cache_dir) == ["CACHEDIR.TAG"]


def test_read_only_directory_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = SyncTTSCache(tmp_path / "ro", sample_rate=16000)
    key, _path = write_one(cache, "ro")
    if os.geteuid() == 0:  # root ignores permission bits: inject the refusal instead
        real_open = os.open

        def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & os.O_CREAT:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    else:
        for directory in (
            cache.cache_dir,
            *cache.cache_dir.glob("*"),
            *cache.cache_dir.glob("*/*"),
        ):
            directory.chmod(0o555)
    try:
        assert cache.cache_data(key, sealed_audio(2), "ro", {}) is False
        np.testing.assert_array_equal(cache.get_cached_data(key), sealed_audio(1))
    finally:
        monkeypatch.undo()
        for directory in (
            cache.cache_dir,
            *cache.cache_dir.glob("*"),
            *cache.cache_dir.glob("*/*"),
        ):
            directory.chmod(0o755)
    assert cache.cache_data(key, sealed_audio(2), "ro", {}) is True


def test_cache_dir_that_is_a_file_returns_false(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    cache = SyncTTSCache(tmp_path / "file", sample_rate=16000)
    key = cache.generate_cache_key("x", {})
    assert cache.cache_data(key, sealed_audio(1), "x", {}) is False
    assert cache.get_cached_data(key) is None
    assert cache.clear_cache() is False


def test_write_survives_a_concurrent_clear_of_its_shard(
    cache: SyncTTSCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    store: FileStore = cache._core.store
    real_publish = store._publish.__func__  # type: ignore[attr-defined]
    attempts = {"n": 0}

    def publish_after_clear(self: FileStore, dir_fd: int, *args: Any) -> tuple[int, int]:
        attempts["n"] += 1
        if attempts["n"] == 1:
            for name in os.listdir(dir_fd):
                os.unlink(name, dir_fd=dir_fd)
            raise FileNotFoundError(errno.ENOENT, "temp file removed by clear")
        return real_publish(self, dir_fd, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(FileStore, "_publish", publish_after_clear)
    key, _path = write_one(cache)
    assert attempts["n"] == 2
    np.testing.assert_array_equal(cache.get_cached_data(key), sealed_audio(1))


def test_fsync_option_writes_the_same_entry(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, fsync=True, sample_rate=16000)
    key, _path = write_one(cache)
    np.testing.assert_array_equal(cache.get_cached_data(key), sealed_audio(1))


def test_writes_replace_a_symlink_at_the_entry_path_and_never_follow_it(
    cache: SyncTTSCache, tmp_path: Path
) -> None:
    outside = tmp_path / "precious.wav"
    outside.write_bytes(b"not the cache's")
    key = cache.generate_cache_key("link")
    path = cache.cache_dir / key[:2] / key[2:4] / f"{key}.wav"
    path.parent.mkdir(parents=True)
    path.symlink_to(outside)
    assert cache.cache_data(key, sealed_audio(1), "link")
    assert outside.read_bytes() == b"not the cache's"
    assert not path.is_symlink()
    np.testing.assert_array_equal(cache.get_cached_data(key), sealed_audio(1))


def test_maintenance_never_touches_anything_outside(cache: SyncTTSCache, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "cd").mkdir(parents=True)
    victim_key = "ab" + "cd" + "0" * 28
    victim = outside / "cd" / f"{victim_key}.wav"
    fill(cache, 5)
    victim.write_bytes((cache.cache_dir / files_under(cache.cache_dir)[0]).read_bytes())
    (cache.cache_dir / "ab").symlink_to(outside, target_is_directory=True)
    old = victim.parent / f"{victim_key}.0123456789abcdef.tmp"
    old.write_bytes(b"x")
    os.utime(old, (0, 0))
    assert cache.prune(max_size_bytes=0).entries == 5
    assert cache.verify(fix=True).checked == 0
    assert cache.clear_cache()
    assert victim.exists() and old.exists()
    assert (cache.cache_dir / "ab").is_symlink()
