"""``TieredCache``: a fast local cache in front of a shared one."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._cache import Cache
from ._codec import Entry, EntryMeta
from ._status import CacheStatus, build_status

__all__ = ["TieredCache"]

log = logging.getLogger("sparktts_cache")


class TieredCache(Cache):
    """Reads try ``local`` then ``shared`` (copying a shared hit to local); writes go to both.

    Example::

        cache = TieredCache(local=TTSCache("tts_cache"), shared=RedisCache("redis://cache:6379"))

    Both tiers must use the same keys (every cache here uses :func:`generate_cache_key`).
    ``cache_data`` returns True if at least one tier stored the entry.
    """

    def __init__(self, local: Cache, shared: Cache) -> None:
        self.local = local
        self.shared = shared

    def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
        return self.local.generate_cache_key(text, tts_params)

    async def get_cached_data(self, key: str) -> npt.NDArray[np.float32] | None:
        [audio] = await self.get_cached_batch([key])
        return audio

    async def get_cached_batch(self, keys: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        results = await self.local.get_cached_batch(keys)
        missing = [index for index, audio in enumerate(results) if audio is None]
        if missing:
            fetched = await self._shared_entries([keys[i] for i in missing])
            for index, entry in zip(missing, fetched, strict=True):
                if entry is not None:
                    results[index] = entry.audio
                    await self._copy_to_local(keys[index], entry)
        return results

    async def _shared_entries(self, keys: list[str]) -> list[Entry | None]:
        """Entries with their metadata where the shared tier can give it (text, sample rate)."""
        get_entries = getattr(self.shared, "get_entries", None)
        if get_entries is not None:
            entries: list[Entry | None] = await get_entries(keys)
            return entries
        audio = await self.shared.get_cached_batch(keys)
        return [
            None if a is None else Entry(a, EntryMeta(k, "", {}, 0, 0.0))
            for k, a in zip(keys, audio, strict=True)
        ]

    async def _copy_to_local(self, key: str, entry: Entry) -> None:
        meta = entry.meta
        rate = meta.sample_rate or None  # unknown: the local tier's default
        if not await self.local.cache_data(
            key, entry.audio, meta.text, meta.params, sample_rate=rate
        ):
            log.warning("could not copy shared entry %s to the local tier", key)

    async def cache_data(
        self,
        key: str,
        audio: npt.NDArray[Any],
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        sample_rate: int | None = None,
    ) -> bool:
        # One tier after the other, so that a bad argument raises its own error (not a group).
        local = await self.local.cache_data(key, audio, text, params, sample_rate=sample_rate)
        shared = await self.shared.cache_data(key, audio, text, params, sample_rate=sample_rate)
        return local or shared

    async def get_cache_status(
        self, segments: Sequence[str], tts_params: Mapping[str, Any] | None = None
    ) -> CacheStatus:
        """The local tier first; the shared tier is asked only about what is missing locally."""
        segments = list(segments)
        local = await self.local.get_cache_status(segments, tts_params)
        found = dict.fromkeys(local.cache_keys, False)
        found.update(dict.fromkeys(local.cached_keys, True))
        if local.segments_to_generate:
            shared = await self.shared.get_cache_status(local.segments_to_generate, tts_params)
            found.update(dict.fromkeys(shared.cached_keys, True))
        return build_status(segments, local.cache_keys, found)

    async def clear_cache(self) -> bool:
        results = [await self.local.clear_cache(), await self.shared.clear_cache()]
        return all(results)
