"""The abstract async ``Cache`` interface that every backend implements."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._keys import keys_for_segments
from ._status import CacheStatus, build_status

__all__ = ["Cache"]


class Cache(abc.ABC):
    """An async cache of synthesised audio, addressed by keys derived from text and parameters.

    Implementers provide :meth:`generate_cache_key` (synchronous and pure), :meth:`get_cached_data`,
    :meth:`cache_data` and :meth:`clear_cache`. :meth:`get_cache_status` has a correct default that
    reads every distinct entry one after the other; a backend should override it with a bulk check.

    Notes:
        A backend must be safe to call from many tasks at once, and ``cache_data`` must publish an
        entry atomically: a concurrent ``get_cached_data`` returns the whole entry or ``None``.
    """

    __slots__ = ()

    @abc.abstractmethod
    def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
        """Return the key of ``text`` synthesised with ``tts_params``."""

    @abc.abstractmethod
    async def get_cached_data(self, key: str) -> npt.NDArray[np.float32] | None:
        """Return the cached audio of ``key`` (1-D float32), or None if it is not cached."""

    @abc.abstractmethod
    async def cache_data(
        self,
        key: str,
        audio: npt.NDArray[Any],
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        sample_rate: int | None = None,
    ) -> bool:
        """Store ``audio`` (at ``sample_rate``, or the backend's default) under ``key``.

        Returns False if the storage refused the write.
        """

    @abc.abstractmethod
    async def clear_cache(self) -> bool:
        """Remove every entry; return False if some could not be removed."""

    async def get_cached_batch(self, keys: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        """Return the cached audio of each key (None where missing), in order.

        This default reads one key after the other; a backend should override it with a bulk read.
        """
        return [await self.get_cached_data(key) for key in keys]

    async def get_cache_status(
        self, segments: Sequence[str], tts_params: Mapping[str, Any] | None = None
    ) -> CacheStatus:
        """Key every segment and find which distinct keys are cached.

        This default reads each distinct entry in turn; override it with a bulk presence check.
        """
        segments = list(segments)
        keys = keys_for_segments(segments, tts_params, key_of=self.generate_cache_key)
        found: dict[str, bool] = {}
        for key in keys:
            if key not in found:
                found[key] = await self.get_cached_data(key) is not None
        return build_status(segments, keys, found)
