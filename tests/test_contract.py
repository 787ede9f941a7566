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
    """The seed README's "custom cache" example, made async: a dict. Uses the default status."""

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
