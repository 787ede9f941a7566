"""The server's store of finished responses: only whole, intact responses are ever served."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparktts_cache.server.audio_formats import tempo_factors
from sparktts_cache.server.responses import READ_WHOLE_BYTES, ResponseStore

KEY = "ab" + "0" * 30


def publish(store: ResponseStore, key: str, body: bytes) -> str | None:
    writer = store.begin(key, "mp3")
    for start in range(0, len(body), 1000):
        writer.write(body[start : start + 1000])
    return writer.commit()


def test_a_committed_response_reads_back_with_its_etag(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    etag = publish(store, KEY, b"abc" * 1000)
    stored = store.open(KEY, "mp3")
    assert stored is not None and stored.etag == etag and etag is not None
    assert b"".join(stored.chunks()) == b"abc" * 1000
    assert store.open(KEY, "opus") is None  # the format is part of the name


def test_a_large_response_streams_from_its_file(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    body = os.urandom(READ_WHOLE_BYTES + 12345)
    publish(store, KEY, body)
    stored = store.open(KEY, "mp3")
    assert stored is not None and stored.body is None and stored.length == len(body)
    assert b"".join(stored.chunks()) == body
    assert stored.fd is None  # closed once sent


def test_an_uncommitted_response_is_never_visible_and_leaves_nothing(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    writer = store.begin(KEY, "mp3")
    writer.write(b"half a response")
    assert store.open(KEY, "mp3") is None
    writer.discard()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],  # truncated trailer
        lambda data: data[:10] + data[-32:],  # truncated body
        lambda data: data[:5] + bytes([data[5] ^ 1]) + data[6:],  # a flipped bit
        lambda data: b"",  # empty
        lambda data: data + b"x",  # grown
    ],
    ids=["trailer cut", "body cut", "bit flip", "empty", "appended"],
)
def test_a_damaged_response_is_a_miss_and_is_removed(tmp_path: Path, damage: object) -> None:
    store = ResponseStore(tmp_path)
    publish(store, KEY, b"intact response " * 100)
    path = Path(store.path(KEY, "mp3"))
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    assert store.open(KEY, "mp3") is None
    assert not path.exists()


def test_eviction_keeps_the_store_under_its_limit_least_recently_used_first(
    tmp_path: Path,
) -> None:
    store = ResponseStore(tmp_path, max_bytes=10_000)
    keys = [f"{n:02x}" + "0" * 30 for n in range(8)]
    for age, key in enumerate(keys):
        publish(store, key, bytes(2000))
        os.utime(store.path(key, "mp3"), (1_000_000 + age, 1_000_000 + age))
    kept = [key for key in keys if os.path.exists(store.path(key, "mp3"))]
    sizes = sum(os.path.getsize(store.path(key, "mp3")) for key in kept)
    assert sizes <= 10_000
    assert kept == keys[-len(kept) :]  # the oldest went first
    assert store.open(keys[-1], "mp3") is not None


def test_tempo_factors_stay_within_atempos_range() -> None:
    for speed in (0.25, 0.3, 0.5, 1.0, 1.7, 2.0, 3.9, 4.0):
        factors = tempo_factors(speed)
        assert all(0.5 <= f <= 2.0 for f in factors)
        product = 1.0
        for factor in factors:
            product *= factor
        assert product == pytest.approx(speed)
