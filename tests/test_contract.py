"""The Cache contract, run against the file store in both formats, the backend of
docs/backends.md and a minimal backend; the backend kit (entry bytes, the defaults of ``Cache``)
on its own."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sparktts_cache import (
    Cache,
    EntryMeta,
    TieredCache,
    TTSCache,
    as_mono_float32,
    check_key,
    decode_entry,
    encode_entry,
    generate_cache_key,
)
from sparktts_cache.testing import CacheContract, sealed_audio

PARAMS: dict[str, Any] = {"gender": "female", "pitch": "moderate"}


class TestTTSCacheWav(CacheContract):
    cache_classes = (TTSCache,)

    @pytest.fixture
    def cache(self, tmp_path: Path) -> TTSCache:
        return TTSCache(tmp_path / "cache", sample_rate=16000)

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[], Cache]:
        return lambda: TTSCache(tmp_path / "cache", sample_rate=16000)


class TestTTSCacheFlac(CacheContract):
    cache_classes = (TTSCache,)
    lossless = False

    @pytest.fixture
    def cache(self, tmp_path: Path) -> TTSCache:
        return TTSCache(tmp_path / "cache", audio_format="flac", sample_rate=16000)

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[], Cache]:
        return lambda: TTSCache(tmp_path / "cache", audio_format="flac", sample_rate=16000)


#: The page whose "Your own backend" example this module runs the contract on.
BACKEND_PAGE = "docs/backends.md"


def readme_backend() -> Any:
    """The class defined by the code block after the ``contract-tested`` marker of
    docs/backends.md (the documents' "Your own backend" example)."""
    page = (Path(__file__).resolve().parent.parent / BACKEND_PAGE).read_text(encoding="utf-8")
    marker = "<!-- contract-tested: DirectoryCache -->\n"
    assert page.count(marker) == 1, f"{BACKEND_PAGE} lost the marker of its backend example"
    block = re.match(r"```python\n(.*?)\n```\n", page.split(marker)[1], re.DOTALL)
    assert block is not None, f"no python code block right after the marker in {BACKEND_PAGE}"
    namespace: dict[str, Any] = {"__name__": "readme_backend"}
    exec(compile(block.group(1), f"{BACKEND_PAGE} (DirectoryCache)", "exec"), namespace)
    backend = namespace["DirectoryCache"]
    assert isinstance(backend, type) and issubclass(backend, Cache)
    return backend


DirectoryCache = readme_backend()


class TestReadmeBackend(CacheContract):
    """The "Your own backend" example of docs/backends.md, exactly as written there."""

    cache_classes = (DirectoryCache,)

    @pytest.fixture
    def cache(self, tmp_path: Path) -> Cache:
        backend: Cache = DirectoryCache(tmp_path / "blobs")
        return backend

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[], Cache]:
        return lambda: DirectoryCache(tmp_path / "blobs")


class MemoryCache(Cache):
    """A dict, with the four required methods only: every other method is the default.

    It keeps samples only, and only in memory: the tests of metadata and of reopening are expected
    to fail (strictly: should they pass, the run fails).
    """

    def __init__(self) -> None:
        self.entries: dict[str, npt.NDArray[np.float32]] = {}

    def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
        return generate_cache_key(text, tts_params)

    async def get_cached_data(self, key: str) -> npt.NDArray[np.float32] | None:
        return self.entries.get(check_key(key))

    async def cache_data(
        self,
        key: str,
        audio: npt.NDArray[Any],
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        sample_rate: int | None = None,
    ) -> bool:
        self.entries[check_key(key)] = as_mono_float32(audio).copy()
        return True

    async def clear_cache(self) -> bool:
        self.entries.clear()
        return True


class TestCustomCache(CacheContract):
    cache_classes = (MemoryCache,)

    @pytest.fixture
    def cache(self) -> MemoryCache:
        return MemoryCache()

    @pytest.fixture
    def reopen(self) -> Callable[[], Cache]:
        return MemoryCache

    @pytest.mark.xfail(strict=True, raises=AssertionError, reason="keeps no text or parameters")
    async def test_get_entry_gives_text_and_params_as_stored(self, cache: Cache) -> None:
        await super().test_get_entry_gives_text_and_params_as_stored(cache)

    @pytest.mark.xfail(strict=True, raises=AssertionError, reason="keeps no sample rate")
    async def test_sample_rate_round_trips_through_get_entry(self, cache: Cache) -> None:
        await super().test_sample_rate_round_trips_through_get_entry(cache)

    @pytest.mark.xfail(strict=True, raises=AssertionError, reason="keeps no text: cannot verify")
    async def test_verified_read_serves_only_the_request_an_entry_was_made_for(
        self, cache: Cache
    ) -> None:
        await super().test_verified_read_serves_only_the_request_an_entry_was_made_for(cache)

    @pytest.mark.xfail(strict=True, raises=AssertionError, reason="in memory: a new one is empty")
    async def test_a_reopened_backend_sees_what_the_first_wrote(
        self, cache: Cache, reopen: Callable[[], Cache]
    ) -> None:
        await super().test_a_reopened_backend_sees_what_the_first_wrote(cache, reopen)


class SeedShapedCache(Cache):
    """That README's "Extending" example as written there, with ``async def``."""

    def __init__(self, cache_dir: str) -> None:
        self.cache_dir = cache_dir
        self.store: dict[str, npt.NDArray[np.float32]] = {}

    def generate_cache_key(self, data, params):  # type: ignore[no-untyped-def,override]
        return generate_cache_key(data, params)

    async def get_cached_data(self, cache_key):  # type: ignore[no-untyped-def]
        return self.store.get(check_key(cache_key))

    async def cache_data(self, cache_key, data, original_input, params):  # type: ignore[no-untyped-def,override]
        self.store[check_key(cache_key)] = as_mono_float32(data).copy()
        return True

    async def clear_cache(self):  # type: ignore[no-untyped-def]
        self.store.clear()
        return True

    async def get_cache_status(self, items, params):  # type: ignore[no-untyped-def,override]
        keys = [self.generate_cache_key(item, params) for item in items]  # type: ignore[no-untyped-call]
        found = {key: key in self.store for key in keys}
        from sparktts_cache._core.cache import build_status

        return build_status(list(items), keys, found)


@pytest.mark.anyio
async def test_the_seed_shaped_backend_works_with_long_text() -> None:
    from sparktts_cache import LongTextTTS, TextSegmenter

    from .models import CountingModel

    cache = SeedShapedCache("unused")
    long_text = LongTextTTS(CountingModel(), cache=cache, segmenter=TextSegmenter(max_chars=30))
    audio, fully_cached = await long_text.generate("One sentence. Another one here.", {})
    assert fully_cached is False and len(audio) > 0
    again, fully_cached = await long_text.generate("One sentence. Another one here.", {})
    assert fully_cached is True
    np.testing.assert_array_equal(again, audio)


# -- the defaults of Cache ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_default_get_entry_gives_the_audio_and_marks_the_rest_not_recorded() -> None:
    cache = MemoryCache()
    key = cache.generate_cache_key("default entry", PARAMS)
    audio = sealed_audio(50)
    assert await cache.cache_data(key, audio, "default entry", PARAMS, sample_rate=22050)
    entry = await cache.get_entry(key)
    assert entry is not None and entry.meta == EntryMeta(key, "", {}, 0, 0.0)
    np.testing.assert_array_equal(entry.audio, audio)
    missing = cache.generate_cache_key("not there", PARAMS)
    entries = await cache.get_entries([missing, key])
    assert entries[0] is None and entries[1] is not None and entries[1].meta.key == key


@pytest.mark.anyio
async def test_tiered_copies_what_a_shared_tier_without_metadata_gives(tmp_path: Path) -> None:
    shared = MemoryCache()
    key = shared.generate_cache_key("shared only", PARAMS)
    audio = sealed_audio(51)
    assert await shared.cache_data(key, audio, "shared only", PARAMS)
    local = TTSCache(tmp_path, sample_rate=22050)
    tiered = TieredCache(local, shared)
    np.testing.assert_array_equal(await tiered.get_cached_data(key), audio)
    copied = await local.get_entry(key)
    assert copied is not None and copied.meta.text == "" and copied.meta.params == {}
    assert copied.meta.sample_rate == 22050  # not recorded: the local tier's default
    np.testing.assert_array_equal(copied.audio, audio)


# -- entry bytes -------------------------------------------------------------------------------


def test_entry_bytes_round_trip_with_their_metadata() -> None:
    key = generate_cache_key("blob", PARAMS)
    audio = sealed_audio(52)
    data = encode_entry(key, audio, "blob", PARAMS, sample_rate=22050)
    assert isinstance(data, bytes) and data[:4] == b"RIFF"
    entry = decode_entry(key, data)
    assert entry is not None
    np.testing.assert_array_equal(entry.audio, audio)
    assert (entry.meta.key, entry.meta.text, entry.meta.params) == (key, "blob", PARAMS)
    assert entry.meta.sample_rate == 22050
    entry.audio[0] = 1.0  # a copy of immutable bytes: the caller owns it
    assert decode_entry(key, data) is not None
    default = decode_entry(key, encode_entry(key, audio, "blob", default_rate=8000))
    assert default is not None and default.meta.sample_rate == 8000
    buffer = bytearray(data)
    shared = decode_entry(key, buffer)
    assert shared is not None and np.shares_memory(shared.audio, np.frombuffer(buffer, np.uint8))


def test_damaged_or_foreign_entry_bytes_are_a_logged_miss(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = generate_cache_key("blob", PARAMS)
    other = generate_cache_key("another blob", PARAMS)
    data = encode_entry(key, sealed_audio(53), "blob", PARAMS)
    flipped = bytearray(data)
    flipped[-3] ^= 0x10
    damaged = {
        "truncated": data[:-4], "extended": data + b"\0", "bit flip": bytes(flipped),
        "empty": b"", "not an entry": b"RIFF" + bytes(200), "another key's entry": data,
    }  # fmt: skip
    assert decode_entry(key, None) is None
    with caplog.at_level(logging.WARNING, logger="sparktts_cache"):
        for name, blob in damaged.items():
            asked = other if name == "another key's entry" else key
            assert decode_entry(asked, blob) is None, name
    assert len([r for r in caplog.records if "corrupt entry" in r.getMessage()]) == len(damaged)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"key": "../" * 10 + "etc/passwd"}, ValueError),
        ({"audio": np.zeros(0, np.float32)}, ValueError),
        ({"audio": [0.1]}, TypeError),
        ({"text": "\ud800"}, ValueError),
        ({"text": b"blob"}, TypeError),
        ({"params": {"speed": float("nan")}}, ValueError),
        ({"sample_rate": 0}, ValueError),
        ({"default_rate": -1}, ValueError),
    ],
)
def test_entry_bytes_refuse_what_cache_data_refuses(
    change: dict[str, Any], error: type[Exception]
) -> None:
    from sparktts_cache import CacheError

    arguments: dict[str, Any] = {
        "key": generate_cache_key("blob", PARAMS), "audio": sealed_audio(54),
        "text": "blob", "params": PARAMS, **change,
    }  # fmt: skip
    with pytest.raises(error) as raised:
        encode_entry(**arguments)
    assert isinstance(raised.value, CacheError)
