"""``TieredCache``: a fast local cache in front of a shared one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np
import numpy.typing as npt

from .._core.cache import Cache, CacheStatus, build_status
from .._core.codec import Entry
from .._core.errors import CacheError
from .._core.matching import check_aligned, matching_audio

__all__ = ["TieredCache"]

log = logging.getLogger("sparktts_cache")

_T = TypeVar("_T")


def _audio_of(entry: Entry) -> npt.NDArray[np.float32]:
    return entry.audio


def _itself(entry: Entry) -> Entry:
    return entry


class TieredCache(Cache):
    """Reads try ``local`` then ``shared`` (copying a shared hit to local); writes go to both.

    Example::

        cache = TieredCache(local=TTSCache("tts_cache"), shared=RedisCache("redis://cache:6379"))

    Both tiers must use the same keys (every cache here uses :func:`generate_cache_key`).
    ``cache_data`` returns True if at least one tier stored the entry. A shared hit is copied to
    the local tier with the text, parameters and sample rate ``shared.get_entries`` gives (from a
    shared tier that does not record them, the :class:`Cache` default: an empty text, no
    parameters, and the local tier's default rate).

    Notes:
        Runs on the event loops both tiers run on (``async_backends`` of the class says asyncio and
        trio; over :class:`RedisCache`, asyncio only).
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
        local = await self.local.get_cached_batch(keys)
        return await self._fill_from_shared(keys, local, _audio_of)

    async def get_entries(self, keys: Sequence[str]) -> list[Entry | None]:
        """Entries from the local tier, then from the shared tier for the local misses."""
        local = await self.local.get_entries(keys)
        return await self._fill_from_shared(keys, local, _itself)

    async def get_verified_batch(
        self,
        keys: Sequence[str],
        texts: Sequence[str],
        tts_params: Mapping[str, Any] | None = None,
    ) -> list[npt.NDArray[np.float32] | None]:
        """Verified reads of the local tier, then of the shared tier for what is still missing.

        A shared entry is copied to the local tier only if it was made for the request (see
        :meth:`Cache.get_verified_batch`), so a colliding entry never spreads; it may replace a
        local entry made for another request.
        """
        key_list, text_list = list(keys), list(texts)
        check_aligned(key_list, text_list)
        results = await self.local.get_verified_batch(key_list, text_list, tts_params)
        missing = [index for index, result in enumerate(results) if result is None]
        if not missing:
            return results
        missing_keys = [key_list[index] for index in missing]
        missing_texts = [text_list[index] for index in missing]
        fetched = await self.shared.get_entries(missing_keys)
        verified = await anyio.to_thread.run_sync(
            matching_audio, missing_keys, missing_texts, tts_params, fetched
        )
        for index, entry, audio in zip(missing, fetched, verified, strict=True):
            if entry is not None and audio is not None:
                results[index] = audio
                await self._copy_to_local(key_list[index], entry)
        return results

    async def _fill_from_shared(
        self, keys: Sequence[str], results: list[_T | None], pick: Callable[[Entry], _T]
    ) -> list[_T | None]:
        """Fill the local misses in ``results`` from the shared tier, copying its hits to local."""
        missing = [index for index, result in enumerate(results) if result is None]
        if missing:
            fetched = await self.shared.get_entries([keys[index] for index in missing])
            for index, entry in zip(missing, fetched, strict=True):
                if entry is not None:
                    results[index] = pick(entry)
                    await self._copy_to_local(keys[index], entry)
        return results

    async def _copy_to_local(self, key: str, entry: Entry) -> None:
        """Copy a shared hit to the local tier; a refusal is logged, never raised.

        Decoding checks an entry's metadata to the standard ``cache_data`` applies, so a shared
        hit is one the local tier accepts; a local tier with narrower limits of its own (a FLAC
        tier's highest rate is below a WAV entry's) still must not turn a hit into an error.
        """
        meta = entry.meta
        rate = meta.sample_rate or None  # unknown: the local tier's default
        try:
            copied = await self.local.cache_data(
                key, entry.audio, meta.text, meta.params, sample_rate=rate
            )
        except CacheError as exc:
            log.warning("the local tier refuses shared entry %s (%s); not copied", key, exc)
            return
        if not copied:
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
