"""The cache directory is the cache's, and only its files are touched.

Marking (``CACHEDIR.TAG``), refusing to clear, prune or repair a directory holding a user's files,
adopting a cache made before the tag, eviction that never removes a user's directory, processes
that clear while others maintain, and squatters (a FIFO, a directory, a symlink or a hard link
where the cache keeps a counter or a lock file).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from sparktts_cache import (
    FileSynthesisLock,
    InvalidAudioError,
    InvalidOptionError,
    LongTextTTS,
    NotACacheDirectoryError,
    SyncTTSCache,
    TTSCache,
)
from sparktts_cache._file import layout as layout
from sparktts_cache.testing import sealed_audio

from .helpers import files_under, fill
from .models import CountingModel

REPO = Path(__file__).resolve().parent.parent
TAG = "CACHEDIR.TAG"
SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
COUNTER = layout.COUNTER_NAME
LIMIT_FOR_COUNTERS = 10**12  # a size limit that never evicts, so that writers keep counters
ENTRY_BYTES = 16_400  # an entry of sealed_audio (0.25 s of float32 at 16 kHz), roughly
_ENTRY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}\.wav")


def entry_files(root: Path) -> list[str]:
    return [name for name in files_under(root) if _ENTRY.fullmatch(name)]


def disk_bytes(root: Path) -> int:
    return sum((root / name).stat().st_size for name in entry_files(root))


def keys_in_shard(cache: SyncTTSCache, outer: str, count: int = 1) -> list[tuple[str, str]]:
    """``count`` texts (and their keys) whose entries live under the top-level shard ``outer``."""
    found = []
    for index in range(count * 256 * 20):
        text = f"text {outer} {index}"
        key = cache.generate_cache_key(text)
        if key.startswith(outer):
            found.append((text, key))
            if len(found) == count:
                return found
    raise AssertionError("not enough keys found")


def key_in_shard(cache: SyncTTSCache, outer: str) -> tuple[str, str]:
    return keys_in_shard(cache, outer)[0]


def write(cache: SyncTTSCache, text: str, seed: int = 1) -> bool:
    return cache.cache_data(cache.generate_cache_key(text), sealed_audio(seed), text)


def users_directory(root: Path) -> dict[str, bytes]:
    """Give ``root`` a user's files, some shaped like the cache's; return them by path."""
    files = {
        "notes.txt": b"my notes",
        "db/stats": b"user database statistics",  # two hex letters, and the old counter's name
        "ab/cd/mine.wav": b"a recording of mine",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "ee").mkdir()  # a user's empty directory, named like a shard
    (root / "ff" / "00").mkdir(parents=True)
    return files


def assert_users_files_intact(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (root / name).read_bytes() == data, name
    assert (root / "ee").is_dir() and (root / "ff" / "00").is_dir()
    assert not (root / TAG).exists(), "a directory holding a user's files was marked"


# -- marking and refusing -------------------------------------------------------------------------


def test_the_first_write_marks_an_empty_directory_and_no_other(tmp_path: Path) -> None:
    fresh = SyncTTSCache(tmp_path / "fresh", sample_rate=16000)
    assert write(fresh, "hello")
    assert (tmp_path / "fresh" / TAG).read_bytes().startswith(SIGNATURE)
    shared = tmp_path / "shared"
    shared.mkdir()
    files = users_directory(shared)
    assert write(SyncTTSCache(shared, sample_rate=16000), "hello")
    assert_users_files_intact(shared, files)
    assert len(entry_files(shared)) == 1


@pytest.mark.anyio
async def test_a_synthesis_lock_taken_before_the_first_write_still_lets_it_mark(
    tmp_path: Path,
) -> None:
    root = tmp_path / "cache"
    tts = LongTextTTS(CountingModel(), cache_dir=root, cross_process_lock=True)
    await tts.generate("One sentence. And another one.", {})  # locks/ exists before any entry
    assert (root / TAG).read_bytes().startswith(SIGNATURE)


def run_operation(cache: SyncTTSCache, operation: str) -> object:
    if operation == "clear":
        return cache.clear_cache()
    if operation == "prune":
        return cache.prune(max_size_bytes=0)
    return cache.verify(fix=True)


@pytest.mark.parametrize("operation", ["clear", "prune", "verify --fix"])
def test_maintenance_refuses_an_unmarked_directory_holding_a_users_files(
    tmp_path: Path, operation: str
) -> None:
    files = users_directory(tmp_path)
    cache = SyncTTSCache(tmp_path, max_size_bytes=LIMIT_FOR_COUNTERS, sample_rate=16000)
    fill(cache, 20)
    assert len(entry_files(tmp_path)) == 20
    with pytest.raises(NotACacheDirectoryError) as refused:
        run_operation(cache, operation)
    assert isinstance(refused.value, ValueError)
    message = str(refused.value)
    assert "CACHEDIR.TAG" in message and "notes.txt" in message and "move them" in message
    assert refused.value.path == str(tmp_path)
    assert_users_files_intact(tmp_path, files)
    assert len(entry_files(tmp_path)) == 20  # nothing at all was removed
    report = cache.verify()  # reporting is never refused
    assert {"notes.txt", "db/stats", "ab/cd/mine.wav"} <= set(report.foreign_files)


def test_a_tag_without_the_signature_is_neither_a_mark_nor_replaced(tmp_path: Path) -> None:
    (tmp_path / TAG).write_bytes(b"my own file that happens to have this name")
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    fill(cache, 3)
    with pytest.raises(NotACacheDirectoryError, match=r"CACHEDIR\.TAG"):
        cache.clear_cache()
    assert (tmp_path / TAG).read_bytes() == b"my own file that happens to have this name"


def test_writes_never_write_a_users_file_in_a_two_letter_directory(tmp_path: Path) -> None:
    files = users_directory(tmp_path)
    cache = SyncTTSCache(tmp_path, max_size_bytes=LIMIT_FOR_COUNTERS, sample_rate=16000)
    text, key = key_in_shard(cache, "db")
    assert cache.cache_data(key, sealed_audio(1), text)
    assert_users_files_intact(tmp_path, files)
    assert (tmp_path / "db" / COUNTER).is_file()  # the counter has a name of its own
    np.testing.assert_array_equal(cache.get_cached_data(key), sealed_audio(1))


def test_a_failed_write_removes_only_the_directories_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = users_directory(tmp_path)
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    text, key = key_in_shard(cache, "ee")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "replace", broken)
    assert cache.cache_data(key, sealed_audio(1), text) is False
    assert_users_files_intact(tmp_path, files)  # the user's empty "ee" was there before
    assert list((tmp_path / "ee").iterdir()) == []  # and "ee/<k[2:4]>", the write's own, is gone


def test_eviction_in_an_unmarked_directory_keeps_the_limit_and_the_users_directories(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = users_directory(tmp_path)
    limit = 30 * ENTRY_BYTES
    cache = SyncTTSCache(tmp_path, max_size_bytes=limit, sample_rate=16000)
    with caplog.at_level(logging.WARNING, logger="sparktts_cache"):
        fill(cache, 150)
    assert disk_bytes(tmp_path) <= limit
    assert len(entry_files(tmp_path)) >= 20  # trimmed, not emptied
    assert_users_files_intact(tmp_path, files)
    assert "not marked as a cache directory" in caplog.text  # said once, not silently


# -- caches made before the tag -------------------------------------------------------------------


def make_old_cache(root: Path, entries: int = 30) -> list[str]:
    """A cache as versions before ``CACHEDIR.TAG`` left it: ``stats`` counters, no tag, a cleanup
    lock, an empty locks directory and an empty shard."""
    keys = fill(SyncTTSCache(root, max_size_bytes=LIMIT_FOR_COUNTERS, sample_rate=16000), entries)
    (root / TAG).unlink()
    for counter in root.glob(f"*/{COUNTER}"):
        counter.rename(counter.parent / "stats")
    (root / "cleanup.lock").touch()
    (root / "locks").mkdir()
    (root / "0f" / "0e").mkdir(parents=True, exist_ok=True)
    return keys


def counted(root: Path) -> tuple[int, int]:
    size = count = 0
    for counter in root.glob(f"*/{COUNTER}"):
        fields = counter.read_text().split()
        size, count = size + int(fields[0]), count + int(fields[1])
    return size, count


@pytest.mark.parametrize("operation", ["clear", "prune", "verify --fix", "eviction"])
def test_a_cache_made_before_the_tag_is_adopted(tmp_path: Path, operation: str) -> None:
    keys = make_old_cache(tmp_path)
    old_size = disk_bytes(tmp_path)
    assert list(tmp_path.glob("*/stats")) and not (tmp_path / TAG).exists()
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    if operation == "eviction":
        limited = SyncTTSCache(tmp_path, max_size_bytes=old_size // 2, sample_rate=16000)
        assert write(limited, "one more")  # a process's first write checks the size
        on_disk = disk_bytes(tmp_path)
        assert on_disk <= old_size // 2
        assert counted(tmp_path) == (on_disk, len(entry_files(tmp_path)))
    elif operation == "prune":
        assert cache.prune(max_size_bytes=10**12).entries == 0
        assert counted(tmp_path) == (old_size, len(keys))  # recounted under the new name
    elif operation == "verify --fix":
        report = cache.verify(fix=True)
        assert report.checked == len(keys) and report.foreign_files == []
        assert counted(tmp_path) == (old_size, len(keys))
    else:
        assert cache.clear_cache()
        assert entry_files(tmp_path) == []
    assert (tmp_path / TAG).read_bytes().startswith(SIGNATURE)
    assert list(tmp_path.glob("*/stats")) == []


def test_an_old_cache_holding_a_users_file_named_stats_is_not_adopted(tmp_path: Path) -> None:
    make_old_cache(tmp_path)
    (tmp_path / "3a" / "stats").parent.mkdir(exist_ok=True)
    (tmp_path / "3a" / "stats").write_text("not a counter\n")  # a user's file, the old name
    with pytest.raises(NotACacheDirectoryError, match="3a/stats"):
        SyncTTSCache(tmp_path, sample_rate=16000).clear_cache()
    assert (tmp_path / "3a" / "stats").read_text() == "not a counter\n"
    assert not (tmp_path / TAG).exists()


# -- the command line -------------------------------------------------------------------------


def cli(cache_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(cache_dir), *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


@pytest.mark.slow
def test_the_command_line_refuses_with_one_line_and_exit_2(tmp_path: Path) -> None:
    shared, old = tmp_path / "shared", tmp_path / "old"
    shared.mkdir()
    old.mkdir()
    files = users_directory(shared)
    fill(SyncTTSCache(shared, sample_rate=16000), 5)
    make_old_cache(old, 5)
    for args in (["clear", "--yes"], ["prune", "--max-size", "1"], ["verify", "--fix"]):
        refused = cli(shared, *args)
        assert refused.returncode == 2, refused
        assert refused.stdout == "" and len(refused.stderr.splitlines()) == 1
        assert "not marked as a cache directory" in refused.stderr
        assert_users_files_intact(shared, files)
        assert len(entry_files(shared)) == 5
        done = cli(old, *args)
        assert done.returncode == 0, done.stderr  # a cache made before the tag is adopted
    assert (old / TAG).exists() and entry_files(old) == []


# -- maintenance racing clear -----------------------------------------------------------------


ROUNDS = 120


def race_worker(role: str, root: str, rounds: int, barrier: Any, results: Any) -> None:
    """One process of the race below: each round, every process starts its operation at once."""
    cache = SyncTTSCache(root, max_size_bytes=LIMIT_FOR_COUNTERS, sample_rate=16000)
    failures: list[str] = []
    for round_ in range(rounds):
        if role == "clear":  # refill while the others wait at the barrier
            fill(cache, 24, prefix=f"round {round_}")
        barrier.wait()
        try:
            if role == "clear":
                cache.clear_cache()
            elif role == "prune":
                cache.prune(max_size_bytes=0)
            elif role == "verify":
                cache.verify(fix=True)
            else:
                cache.stats()
        except Exception as exc:  # the test counts every kind
            failures.append(f"{role}: {exc!r}")
        barrier.wait()
    results.put(failures)


@pytest.mark.slow
def test_no_maintenance_operation_raises_while_another_process_clears(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    roles = ["clear", "prune", "verify", "stats"]
    barrier = context.Barrier(len(roles), timeout=120)
    results = context.Queue()
    procs = [
        context.Process(target=race_worker, args=(role, str(tmp_path), ROUNDS, barrier, results))
        for role in roles
    ]
    for proc in procs:
        proc.start()
    failures = [failure for _ in procs for failure in results.get(timeout=300)]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert failures == []
    assert SyncTTSCache(tmp_path, sample_rate=16000).verify().ok


# -- squatters: counters ----------------------------------------------------------------------


def finishes(operation: Callable[[], object], unblock: Path | None = None) -> object:
    """Run ``operation`` in a thread and fail if it has not finished within 30 s (a FIFO that
    blocks an open would hang it: it is then opened for writing, to let the thread go)."""
    outcome: dict[str, object] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", operation()))
    thread.daemon = True
    thread.start()
    thread.join(timeout=30)
    if thread.is_alive() and unblock is not None:
        fd = os.open(unblock, os.O_RDWR | os.O_NONBLOCK)
        os.close(fd)
    assert not thread.is_alive(), "the operation hung"
    return outcome["result"]


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[SyncTTSCache]:
    cache = SyncTTSCache(tmp_path, max_size_bytes=LIMIT_FOR_COUNTERS, sample_rate=16000)
    fill(cache, 5)
    yield cache


def test_a_fifo_at_a_counter_hangs_nothing_and_is_replaced(
    limited: SyncTTSCache, tmp_path: Path
) -> None:
    (tmp_path / "5c").mkdir(exist_ok=True)
    fifo = tmp_path / "5c" / COUNTER
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    assert limited.verify().squatters == [f"5c/{COUNTER}"]
    small = SyncTTSCache(
        tmp_path, max_size_bytes=1, sample_rate=16000
    )  # a write elsewhere sums every counter
    text, key = key_in_shard(small, "6a")
    assert finishes(lambda: small.cache_data(key, sealed_audio(1), text), fifo) is True
    assert not fifo.is_fifo()
    if not fifo.exists():
        os.mkfifo(fifo)
    text, key = key_in_shard(limited, "5c")  # a write in the FIFO's own shard
    assert finishes(lambda: limited.cache_data(key, sealed_audio(2), text), fifo) is True
    assert fifo.is_file()
    fifo.unlink()
    os.mkfifo(fifo)
    assert finishes(lambda: limited.prune(max_size_bytes=0), fifo) is not None
    assert not fifo.is_fifo() and entry_files(tmp_path) == []


@pytest.mark.parametrize("squatter", ["empty directory", "symlink", "hard link"])
def test_a_counter_squatter_is_replaced_and_nothing_is_written_through_it(
    limited: SyncTTSCache, tmp_path: Path, squatter: str
) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_bytes(b"precious")
    text, key = key_in_shard(limited, "6d")
    (tmp_path / "6d").mkdir(exist_ok=True)
    counter = tmp_path / "6d" / COUNTER
    counter.unlink(missing_ok=True)
    if squatter == "empty directory":
        counter.mkdir()
    elif squatter == "symlink":
        counter.symlink_to(outside)
    else:
        os.link(outside, counter)
    assert limited.cache_data(key, sealed_audio(1), text)
    assert outside.read_bytes() == b"precious"
    assert counter.is_file() and not counter.is_symlink() and counter.stat().st_nlink == 1
    assert counter.read_text().split()[1] == "1"
    if squatter == "hard link":  # prune's exact counts are not written through one either
        counter.unlink()
        os.link(outside, counter)
        limited.prune(max_size_bytes=10**12)
        assert outside.read_bytes() == b"precious"


def test_a_directory_at_a_counter_is_reported_and_the_limit_still_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 30 * ENTRY_BYTES
    cache = SyncTTSCache(tmp_path, max_size_bytes=limit, sample_rate=16000)
    fill(cache, 5)
    blocked = tmp_path / "7e" / COUNTER / "something"
    blocked.mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="sparktts_cache"):
        for index, (text, key) in enumerate(keys_in_shard(cache, "7e", 60)):
            assert cache.cache_data(key, sealed_audio(index), text)
            assert write(cache, f"elsewhere {index}", index)
    assert "cannot be used" in caplog.text
    assert disk_bytes(tmp_path) <= limit
    assert len(entry_files(tmp_path / "7e")) < 30  # the blocked shard was trimmed too
    report = cache.verify(fix=True)
    assert report.squatters == [f"7e/{COUNTER}"] and not report.ok
    assert blocked.is_dir()  # a directory that is not empty is never removed


# -- squatters: the cleanup lock and per-key locks --------------------------------------------


@pytest.mark.parametrize("squatter", ["empty directory", "FIFO"])
def test_a_cleanup_lock_squatter_in_a_cache_is_removed(tmp_path: Path, squatter: str) -> None:
    limit = 30 * ENTRY_BYTES
    cache = SyncTTSCache(tmp_path, max_size_bytes=limit, sample_rate=16000)
    fill(cache, 2)
    lock = tmp_path / "cleanup.lock"
    lock.unlink(missing_ok=True)
    if squatter == "FIFO":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    assert cache.verify().squatters == ["cleanup.lock"]
    fill(SyncTTSCache(tmp_path, max_size_bytes=limit, sample_rate=16000), 100, prefix="more")
    assert disk_bytes(tmp_path) <= limit
    assert lock.is_file()


def test_a_cleanup_lock_that_cannot_be_removed_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = SyncTTSCache(tmp_path, max_size_bytes=30 * ENTRY_BYTES, sample_rate=16000)
    fill(cache, 2)
    (tmp_path / "cleanup.lock").unlink(missing_ok=True)
    (tmp_path / "cleanup.lock" / "inside").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="sparktts_cache"):
        fill(
            SyncTTSCache(tmp_path, max_size_bytes=30 * ENTRY_BYTES, sample_rate=16000),
            60,
            prefix="more",
        )
    assert "size limit is not enforced" in caplog.text and "cleanup.lock" in caplog.text
    assert cache.verify().squatters == ["cleanup.lock"]
    with pytest.raises(OSError, match=r"cleanup\.lock"):
        cache.prune(max_size_bytes=0)


@pytest.mark.anyio
@pytest.mark.parametrize("squatter", ["empty directory", "FIFO", "full directory"])
async def test_a_lock_file_squatter_never_fails_a_synthesis(tmp_path: Path, squatter: str) -> None:
    key = "a" * 32
    path = tmp_path / "locks" / f"{key}.lock"
    path.parent.mkdir()
    if squatter == "FIFO":
        os.mkfifo(path)
    elif squatter == "empty directory":
        path.mkdir()
    else:
        (path / "inside").mkdir(parents=True)
    lock = FileSynthesisLock(tmp_path / "locks", stale_after=60)
    with anyio.fail_after(20):
        async with lock.hold(key) as held:
            assert held is (squatter != "full directory")  # a full one: going ahead without
    assert path.is_dir() if squatter == "full directory" else not path.exists()


@pytest.mark.anyio
async def test_a_symlinked_locks_directory_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    key = "b" * 32
    (outside / f"{key}.lock").write_text("not the cache's")
    root = tmp_path / "cache"
    root.mkdir()
    (root / "locks").symlink_to(outside, target_is_directory=True)
    async with FileSynthesisLock(root / "locks").hold(key) as held:
        assert held is False  # going ahead without the lock, never through the link
    tts = LongTextTTS(CountingModel(), cache_dir=root, cross_process_lock=True)
    audio, fully_cached = await tts.generate("One sentence. And another one.", {})
    assert not fully_cached and len(audio) > 0
    assert sorted(os.listdir(outside)) == [f"{key}.lock"]
    assert (outside / f"{key}.lock").read_text() == "not the cache's"


# -- limits of the format, and the cache directory's name -------------------------------------


def test_an_entry_larger_than_the_format_holds_is_refused_before_writing(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    for samples in (layout.MAX_ENTRY_BYTES // 4 + 1, (1 << 30) + 1):  # over 1 GiB, over 4 GiB
        huge = np.zeros(samples, np.float32)  # pages never touched: no memory is used
        with pytest.raises(InvalidAudioError, match="1 GiB"):
            cache.cache_data(cache.generate_cache_key("long"), huge, "long")
        del huge
    assert files_under(tmp_path) == []


def test_a_cache_dir_with_a_nul_byte_is_refused_at_construction(tmp_path: Path) -> None:
    for front in (SyncTTSCache, TTSCache):
        with pytest.raises(InvalidOptionError, match="NUL"):
            front(f"{tmp_path}/a\0b")
        with pytest.raises(InvalidOptionError):
            front(Path(f"{tmp_path}/a\0b"))
