"""Faults: a full disk, a read-only file system, permission denied, failing rename and fsync.

Each operation must fail cleanly (``cache_data`` returns False and logs; reads are misses), leave
no partial entry, and work again once the fault is gone. Disk full and read-only use a real small
tmpfs where the machine allows mounting one (root on Linux), and are skipped with a reason
otherwise; the injected versions in ``test_file_store.py`` run everywhere.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktts_cache import SyncTTSCache
from sparktts_cache.testing import is_sealed, sealed_audio

from .helpers import Worker, attempts_as_nobody, files_under
from .system_programs import unavailable


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards (skipped where none can be mounted; CI fails)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        unavailable("mount is not installed (Debian package mount)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def temp_files(root: Path) -> list[str]:
    return [name for name in files_under(root) if name.endswith(".tmp")]


def test_disk_full_on_a_real_file_system(small_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = SyncTTSCache(small_fs / "cache", sample_rate=16000)
    written: list[tuple[str, int]] = []
    with caplog.at_level(logging.ERROR, logger="sparktts_cache"):
        for seed in range(100):  # 64 KiB each: the 2 MiB file system fills up
            key = cache.generate_cache_key(f"entry {seed}")
            if not cache.cache_data(key, sealed_audio(seed, 16_000), f"entry {seed}"):
                break
            written.append((key, seed))
        else:
            pytest.fail("the small file system never filled up")
    assert "No space left on device" in caplog.text
    assert written and temp_files(small_fs) == []  # no partial file left behind
    for key, _seed in written:
        audio = cache.get_cached_data(key)
        assert audio is not None and is_sealed(audio)
    assert cache.verify().clean
    # The fault goes away: space is freed, and writing works again.
    assert cache.prune(max_size_bytes=0).entries == len(written)
    key = cache.generate_cache_key("after")
    assert cache.cache_data(key, sealed_audio(7, 16_000), "after")


def test_read_only_file_system(small_fs: Path) -> None:
    cache = SyncTTSCache(small_fs / "cache", sample_rate=16000)
    key = cache.generate_cache_key("kept")
    assert cache.cache_data(key, sealed_audio(1, 1600), "kept")
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        other = cache.generate_cache_key("refused")
        assert cache.cache_data(other, sealed_audio(2, 1600), "refused") is False
        audio = cache.get_cached_data(key)
        assert audio is not None and is_sealed(audio)  # reads still work
        assert cache.get_cached_data(other) is None
        assert cache.clear_cache() is False  # it could not remove the entry, and says so
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert cache.cache_data(other, sealed_audio(2, 1600), "refused") is True
    assert temp_files(small_fs) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_permission_denied_for_another_user() -> None:
    shared = Path(tempfile.mkdtemp(prefix="sparktts-perm-"))  # pytest's own tmp is root-only
    os.chmod(shared, 0o755)
    try:
        _permission_denied(shared)
    finally:
        shutil.rmtree(shared)


def _permission_denied(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path / "cache", sample_rate=16000)
    key = cache.generate_cache_key("root's entry")
    assert cache.cache_data(key, sealed_audio(1, 1600), "root's entry")
    other = cache.generate_cache_key("nobody's entry")
    with Worker(attempts_as_nobody, str(cache.cache_dir), key, other) as nobody:
        seen = nobody.result()
    assert seen == {"write refused": True, "entry read whole": True, "refused entry missing": True}
    assert temp_files(tmp_path) == [] and not cache.entry_path(other).exists()


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failing_rename_or_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    cache = SyncTTSCache(tmp_path, fsync=True, sample_rate=16000)
    real = getattr(os, failing)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, failing, broken)
    key = cache.generate_cache_key("x")
    assert cache.cache_data(key, sealed_audio(3, 1600), "x") is False
    assert files_under(tmp_path) == ["CACHEDIR.TAG"]
    assert cache.get_cached_data(key) is None
    monkeypatch.setattr(os, failing, real)
    assert cache.cache_data(key, sealed_audio(3, 1600), "x") is True
    audio = cache.get_cached_data(key)
    assert audio is not None and is_sealed(audio)
    np.testing.assert_array_equal(audio, sealed_audio(3, 1600))
