"""The Cache contract, run against the file store in both formats and against a minimal backend."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sparktts_cache import Cache, TTSCache, as_mono_float32, check_key, generate_cache_key
from sparktts_cache.testing import CacheContract


class TestTTSCacheWav(CacheContract):
    @pytest.fixture
    def cache(self, tmp_path: Path) -> TTSCache:
        return TTSCache(tmp_path / "cache")


class TestTTSCacheFlac(CacheContract):
    lossless = False

    @pytest.fixture
    def cache(self, tmp_path: Path) -> TTSCache:
        return TTSCache(tmp_path / "cache", audio_format="flac")


class MemoryCache(Cache):
    """The "custom cache" example from the README of the original Spark-TTS cache module this
    library re-implements, made async: a dict. Uses the default status."""

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
    @pytest.fixture
    def cache(self) -> MemoryCache:
        return MemoryCache()


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
        from sparktts_cache._status import build_status

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
