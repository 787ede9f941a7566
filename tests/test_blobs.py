"""Blobs (the speech server's finished responses) are kept by the file store itself: one atomic
writer, one size limit across processes, the same refusal of symlinks and special files, and
``stats``, ``verify``, ``prune`` and ``clear`` know them. Each adversarial reproducer found in the
server's former response store is a test here."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import xxhash

from sparktts_cache import BlobWriter, InvalidOptionError, SyncTTSCache
from sparktts_cache._file import layout
from sparktts_cache._file.blobs import BLOB_TRAILER, CHUNK_BYTES

from .helpers import Worker, files_under

KEY = "0123456789abcdef0123456789abcdef"


def blob_path(root: Path, key: str, kind: str = "mp3") -> Path:
    return root / key[:2] / key[2:4] / layout.blob_name(key, kind)


def write_in_pieces(cache: SyncTTSCache, key: str, data: bytes, kind: str = "flac") -> BlobWriter:
    writer = cache.begin_blob(key, kind)
    for start in range(0, len(data), 1000):
        writer.write(data[start : start + 1000])
    return writer


def store(cache: SyncTTSCache, key: str, data: bytes, kind: str = "mp3") -> str | None:
    return write_in_pieces(cache, key, data, kind).commit()


def key_of(number: int) -> str:
    return f"{number:032x}"


def test_a_blob_round_trips_and_is_published_only_whole(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path)
    writer = cache.begin_blob(KEY, "mp3")
    writer.write(b"first part, ")
    assert cache.open_blob(KEY, "mp3") is None  # not yet published: nothing to read
    assert [name for name in files_under(tmp_path) if name.endswith(".tmp")]
    writer.write(b"second part")
    digest = writer.commit()
    stored = cache.open_blob(KEY, "mp3")
    assert stored is not None and stored.digest == digest and stored.length == 23
    assert b"".join(stored.chunks()) == b"first part, second part"
    assert not [name for name in files_under(tmp_path) if name.endswith(".tmp")]
    # Another kind is another blob; a discarded writer leaves nothing.
    assert cache.open_blob(KEY, "opus") is None
    discarded = cache.begin_blob(KEY, "opus")
    discarded.write(b"abandoned")
    discarded.discard()
    assert cache.open_blob(KEY, "opus") is None
    assert not [name for name in files_under(tmp_path) if name.endswith(".tmp")]


def temp_files(root: Path) -> list[str]:
    return [name for name in files_under(root) if name.endswith(".tmp")]


def test_commit_replaces_the_header_and_the_digest_is_of_the_bytes_as_stored(
    tmp_path: Path,
) -> None:
    # A FLAC or WAV response's header is known only at the end (its lengths); it is written over
    # the streamed one at commit, and the digest (the ETag, checked by every read) covers it.
    cache = SyncTTSCache(tmp_path)
    data = os.urandom(3 * CHUNK_BYTES + 5)  # read back in several pieces
    header = b"fLaC, the length now known"
    digest = write_in_pieces(cache, KEY, data).commit(header)
    stored_bytes = header + data[len(header) :]
    assert digest == xxhash.xxh3_128_hexdigest(stored_bytes)
    raw = blob_path(tmp_path, KEY, "flac").read_bytes()
    assert raw[: -BLOB_TRAILER.size] == stored_bytes
    assert BLOB_TRAILER.unpack(raw[-BLOB_TRAILER.size :])[:2] == (
        bytes.fromhex(digest),
        len(stored_bytes),
    )
    stored = cache.open_blob(KEY, "flac")
    assert stored is not None and stored.digest == digest and stored.length == len(data)
    assert b"".join(stored.chunks()) == stored_bytes
    assert temp_files(tmp_path) == []
    # A header as long as the blob replaces all of it; no header is the streamed digest.
    assert store(cache, KEY, b"streamed", "wav") == xxhash.xxh3_128_hexdigest(b"streamed")
    assert write_in_pieces(cache, KEY, b"streamed", "wav").commit(b"REPLACED") == (
        xxhash.xxh3_128_hexdigest(b"REPLACED")
    )
    small = cache.open_blob(KEY, "wav")
    assert small is not None and small.body == b"REPLACED"


def test_a_damaged_header_in_a_committed_blob_is_caught(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path)
    assert write_in_pieces(cache, KEY, bytes(5000)).commit(b"\x01" * 44)
    path = blob_path(tmp_path, KEY, "flac")
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    assert cache.open_blob(KEY, "flac") is None
    assert not path.exists()


def test_a_header_commit_keeps_nothing_it_cannot_check(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path)
    # Longer than what was written: a caller's mistake, refused; discard still cleans up.
    writer = write_in_pieces(cache, KEY, b"short")
    with pytest.raises(AssertionError):
        writer.commit(b"a header longer than the blob")
    writer.discard()
    assert temp_files(tmp_path) == [] and cache.open_blob(KEY, "flac") is None
    # Nothing written: nothing kept.
    assert cache.begin_blob(KEY, "flac").commit(b"header") is None
    # The temp file is read back by its name: another file put there is not hashed as the blob.
    writer = write_in_pieces(cache, KEY, b"x" * 3000)
    (temp,) = temp_files(tmp_path)
    planted = tmp_path / "planted"
    planted.write_bytes(b"y" * 3000)
    os.replace(planted, tmp_path / temp)
    assert writer.commit(b"header") is None
    assert cache.open_blob(KEY, "flac") is None and temp_files(tmp_path) == []


def test_bad_keys_and_kinds_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path)
    for key, kind in [("../../etc/passwd", "mp3"), (KEY, "../x"), (KEY, "MP3"), (KEY, "")]:
        with pytest.raises(ValueError):
            cache.begin_blob(key, kind)
        with pytest.raises(ValueError):
            cache.open_blob(key, kind)
    with pytest.raises(InvalidOptionError):
        cache.begin_blob(KEY, "a" * 9)
    assert not tmp_path.exists() or files_under(tmp_path) == []


def test_a_large_blob_is_read_in_pieces(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path)
    data = os.urandom(3 * CHUNK_BYTES + 123)
    assert store(cache, KEY, data)
    stored = cache.open_blob(KEY, "mp3")
    assert stored is not None and stored.body is None  # not held: read as it is sent
    pieces = list(stored.chunks())
    assert max(len(piece) for piece in pieces) <= CHUNK_BYTES and b"".join(pieces) == data
    small = cache.open_blob(KEY, "mp3")
    assert small is not None
    small.close()


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "wrong magic", "empty"])
def test_a_damaged_blob_is_a_miss_and_removed(tmp_path: Path, damage: str) -> None:
    cache = SyncTTSCache(tmp_path)
    assert store(cache, KEY, b"x" * 5000)
    path = blob_path(tmp_path, KEY)
    data = bytearray(path.read_bytes())
    if damage == "flip a byte":
        data[100] ^= 0xFF
    elif damage == "truncate":
        del data[-10:]
    elif damage == "wrong magic":
        data[-1] ^= 0xFF
    else:
        data.clear()
    path.write_bytes(bytes(data))
    assert cache.open_blob(KEY, "mp3") is None
    assert not path.exists()


def test_a_fifo_at_a_blobs_path_does_not_hang_a_reader(tmp_path: Path) -> None:
    # The server's former store opened responses without O_NONBLOCK: each request for a planted
    # FIFO hung a worker thread for good (45 such requests took every thread).
    cache = SyncTTSCache(tmp_path)
    assert store(cache, KEY, b"stored")
    path = blob_path(tmp_path, KEY)
    path.unlink()
    os.mkfifo(path)
    done = threading.Event()
    result: list[object] = []

    def read() -> None:
        result.append(cache.open_blob(KEY, "mp3"))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(30), "open_blob blocked on a FIFO"
    assert result == [None] and path.exists()  # a miss, left alone
    assert store(cache, KEY, b"again")  # a write replaces it
    stored = cache.open_blob(KEY, "mp3")
    assert stored is not None and b"".join(stored.chunks()) == b"again"


def test_symlinked_shards_are_neither_written_through_nor_read(tmp_path: Path) -> None:
    # Planted shard symlinks got responses written into another directory, and served from
    # there as hits.
    root, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    cache = SyncTTSCache(root)
    assert store(cache, key_of(1), b"makes the cache")
    (elsewhere / KEY[2:4]).mkdir(parents=True)
    (root / KEY[:2]).symlink_to(elsewhere, target_is_directory=True)
    assert store(cache, KEY, b"must not land elsewhere") is None
    assert files_under(elsewhere) == []
    # A blob planted where the symlink leads is not served.
    planted = SyncTTSCache(tmp_path / "planter")
    assert store(planted, KEY, b"planted")
    os.replace(
        blob_path(tmp_path / "planter", KEY), elsewhere / KEY[2:4] / layout.blob_name(KEY, "mp3")
    )
    assert cache.open_blob(KEY, "mp3") is None


def test_an_eviction_failure_does_not_fail_a_commit(tmp_path: Path) -> None:
    # An OSError in eviction, raised by commit() after the whole body was sent, cut the response.
    cache = SyncTTSCache(tmp_path, max_size_bytes=10_000)
    (tmp_path / "cleanup.lock").mkdir(parents=True)  # eviction cannot take its lock
    (tmp_path / "cleanup.lock" / "a user's file").write_text("keep me")
    for number in range(8):
        assert store(cache, key_of(number), b"y" * 4000) is not None
    assert (tmp_path / "cleanup.lock" / "a user's file").read_text() == "keep me"


def write_blobs(cache_dir: str, first: int, count: int, limit: int) -> None:
    cache = SyncTTSCache(cache_dir, max_size_bytes=limit)
    for number in range(first, first + count):
        assert store(cache, key_of(number), bytes([number % 256]) * 20_000) is not None


def on_disk(root: Path) -> int:
    return sum((root / name).stat().st_size for name in files_under(root) if name.endswith(".blob"))


def test_one_size_limit_holds_across_processes(tmp_path: Path) -> None:
    # Each worker process kept its own running total of the response budget: with 4 workers the
    # store reached 3.8x its budget.
    limit = 1_000_000
    workers = [Worker(write_blobs, str(tmp_path), 1000 * n, 150, limit) for n in range(4)]
    for worker in workers:
        with worker:
            worker.result()
    written = 4 * 150 * (20_000 + BLOB_TRAILER.size)
    assert written > 10 * limit
    # The limit is shared, not exact: after a check finds the cache at T, each process may write
    # the headroom it saw (limit - T) before it checks again (within 2 s), and counts its last
    # blob after writing it. 0.88-1.38x in 12 runs of this test here; the old store's 3.8x came
    # from each process counting only its own writes.
    assert on_disk(tmp_path) <= 2 * limit, on_disk(tmp_path)


def test_stats_verify_prune_and_clear_know_blobs(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path)
    for number in range(6):
        assert store(cache, key_of(number), b"z" * 3000)
    stats = cache.stats()
    assert stats.blobs == 6 and stats.blob_bytes == 6 * (3000 + BLOB_TRAILER.size)
    damaged = blob_path(tmp_path, key_of(0))
    damaged.write_bytes(damaged.read_bytes()[:-1])
    report = cache.verify()
    assert report.foreign_files == [] and len(report.corrupt) == 1
    report = cache.verify(fix=True)
    assert not damaged.exists()
    pruned = cache.prune(max_size_bytes=2 * (3000 + BLOB_TRAILER.size))
    assert pruned.entries >= 3 and cache.stats().blobs <= 2
    assert cache.clear_cache()
    assert [name for name in files_under(tmp_path) if name.endswith(".blob")] == []


def test_eviction_removes_the_least_recently_used_blobs_first(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, max_size_bytes=10_000)
    keys = [key_of(number) for number in range(8)]
    for age, key in enumerate(keys):
        assert store(cache, key, bytes(2000))
        os.utime(blob_path(tmp_path, key), (1_000_000 + age, 1_000_000 + age))
    kept = [key for key in keys if blob_path(tmp_path, key).exists()]
    assert on_disk(tmp_path) <= 10_000
    assert kept == keys[-len(kept) :]  # the oldest went first
    assert cache.open_blob(keys[-1], "mp3") is not None
