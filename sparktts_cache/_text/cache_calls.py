"""``CacheCalls``: the three cache calls ``LongTextTTS`` makes, in one shape for any async cache."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._core.cache import CacheStatus
from .._core.errors import InvalidOptionError, UnsupportedTypeError
from .._core.matching import check_aligned
from .._file.cache import SyncTTSCache

__all__ = ["CacheCalls"]

Audio = npt.NDArray[np.float32]

#: The methods every cache LongTextTTS takes has, as coroutine functions (the seed's names).
_REQUIRED = ("get_cache_status", "get_cached_data", "cache_data")


def _is_async(method: object) -> bool:
    return inspect.iscoroutinefunction(method)


def _takes_keyword(method: Callable[..., Any], name: str) -> bool:
    parameters = inspect.signature(method).parameters
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


class CacheCalls:
    """Status, verified read and write on ``cache``, chosen once, when ``LongTextTTS`` is made.

    A :class:`~sparktts_cache.Cache` has all three as they are. A backend written against the
    seed module's interface (``async def`` methods, no ``Cache`` base) may lack
    ``get_verified_batch`` and ``get_cached_batch`` (reads then go key by key through
    ``get_cached_data``, unverified: such a backend records no text to compare) and take no
    ``sample_rate`` in ``cache_data`` (its own rate is the model's, or it is refused here).

    Raises:
        UnsupportedTypeError: for a blocking cache (``SyncTTSCache``, or ``def`` methods).
        InvalidOptionError: for a cache whose ``sample_rate`` is not ``model_rate``.
    """

    __slots__ = ("read_verified", "status", "write")

    def __init__(self, cache: object, model_rate: int) -> None:
        if isinstance(cache, SyncTTSCache):
            raise UnsupportedTypeError(
                "LongTextTTS awaits its cache, and SyncTTSCache is the blocking one: pass "
                "cache=TTSCache(...) (same arguments, same files), or for blocking calls in a "
                "script use SyncLongTextTTS(model, cache=SyncTTSCache(...))"
            )
        for name in _REQUIRED:
            if not _is_async(getattr(cache, name, None)):
                raise UnsupportedTypeError(
                    f"LongTextTTS awaits its cache, and {type(cache).__name__}.{name} is not an "
                    "async method: give it a Cache whose methods are 'async def' (see Cache)"
                )
        cache_rate = getattr(cache, "sample_rate", None)
        if isinstance(cache_rate, int) and cache_rate != model_rate:
            raise InvalidOptionError(
                f"the cache's sample rate is {cache_rate} Hz and the model's is {model_rate} Hz: "
                f"make the cache with the model's, {type(cache).__name__}(..., "
                "sample_rate=model.sample_rate), so that what is stored through it directly is "
                "labelled right too"
            )
        methods: Any = cache  # checked above: the attributes below exist and are coroutines
        #: ``status(segments, key_params)``: the cache's ``get_cache_status``.
        self.status: Callable[[Sequence[str], Mapping[str, Any]], Awaitable[CacheStatus]] = (
            methods.get_cache_status
        )
        #: ``read_verified(keys, texts, key_params)``: audio made for that request, else None.
        self.read_verified: Callable[
            [Sequence[str], Sequence[str], Mapping[str, Any]], Awaitable[list[Audio | None]]
        ]
        if _is_async(getattr(cache, "get_verified_batch", None)):
            self.read_verified = methods.get_verified_batch
        else:
            self.read_verified = _unverified_reader(methods)
        #: ``write(key, audio, text, key_params)``: stored at the model's rate; False if not.
        self.write: Callable[[str, Audio, str, Mapping[str, Any]], Awaitable[bool]]
        if _takes_keyword(methods.cache_data, "sample_rate"):

            async def write(key: str, audio: Audio, text: str, params: Mapping[str, Any]) -> bool:
                stored: bool = await methods.cache_data(
                    key, audio, text, params, sample_rate=model_rate
                )
                return stored

            self.write = write
        else:  # the seed's four-argument cache_data: the rate is its own, checked above
            self.write = methods.cache_data


def _unverified_reader(
    cache: Any,
) -> Callable[[Sequence[str], Sequence[str], Mapping[str, Any]], Awaitable[list[Audio | None]]]:
    """Reads for a seed-style backend: its bulk read if it has one, else key by key."""

    async def read(
        keys: Sequence[str], texts: Sequence[str], params: Mapping[str, Any]
    ) -> list[Audio | None]:
        check_aligned(keys, texts)
        if _is_async(getattr(cache, "get_cached_batch", None)):
            found: list[Audio | None] = await cache.get_cached_batch(keys)
            return found
        return [await cache.get_cached_data(key) for key in keys]

    return read
