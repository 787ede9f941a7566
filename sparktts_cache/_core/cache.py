"""The abstract async ``Cache`` interface that every backend implements."""

from __future__ import annotations

import abc
import contextlib
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import anyio.to_thread
import numpy as np
import numpy.typing as npt

from .codec import Entry, EntryMeta
from .errors import InvalidOptionError
from .gil import CHUNK, GilYielder
from .keys import keys_for_segments
from .matching import matching_audio

__all__ = [
    "Cache",
    "CacheStatus",
    "SynthesisLock",
    "build_status",
    "check_lock_timing",
    "first_occurrences",
]


class CacheStatus(NamedTuple):
    """The answer of ``get_cache_status``.

    Attributes:
        cache_keys: the key of every segment, aligned one-to-one with the segments.
        cached_keys: the distinct keys that are cached, in first-occurrence order.
        segments_to_generate: the distinct segments (by key) that are not cached, in
            first-occurrence order, so that no segment is synthesised twice.
    """

    cache_keys: list[str]
    cached_keys: list[str]
    segments_to_generate: list[str]


def build_status(segments: list[str], keys: list[str], found: Mapping[str, bool]) -> CacheStatus:
    """Assemble a :class:`CacheStatus` from segment keys and the presence of each distinct key."""
    cached: list[str] = []
    missing: list[str] = []
    for first in first_occurrences(keys).tolist():
        if found[keys[first]]:
            cached.append(keys[first])
        else:
            missing.append(segments[first])
    return CacheStatus(keys, cached, missing)


def first_occurrences(keys: list[str]) -> npt.NDArray[np.int64]:
    """The index of the first occurrence of each distinct key, in order.

    Safe for a worker thread next to an event loop at any size: what holds the GIL (and so stalls
    the loop) is a chunk of keys at a time, with a pause between chunks. Keys are grouped by their
    ``hash`` with NumPy, whose sorts and passes over integers run without the GIL; a group's later
    members are then compared with its first, so a hash collision of distinct keys is found and
    resolved (in a small dict). Dicts of a million keys cost more: one dict's resize held the GIL
    137 ms, and 256 smaller ones, freed at the end, made glibc return their memory to the system
    in a single free (7 ms).
    """
    if not keys:
        return np.empty(0, np.int64)
    yielder = GilYielder()
    hashes = np.empty(len(keys), np.int64)
    for start in range(0, len(keys), CHUNK * 16):
        piece = keys[start : start + CHUNK * 16]
        hashes[start : start + len(piece)] = np.fromiter(map(hash, piece), np.int64, len(piece))
        yielder.pause_if_due()
    order = np.argsort(hashes, kind="stable")  # within a group, by index
    ordered = hashes[order]
    del hashes
    starts = np.empty(len(keys), np.bool_)  # whether each sorted position starts a group
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    del ordered
    group_starts = np.flatnonzero(starts)  # sorted positions where a group starts
    firsts = order[group_starts]
    later = np.flatnonzero(~starts)  # sorted positions of later members of a group
    # Each later member's group starts at the last start before it. (Not a cumsum of ``starts``:
    # summing a million bools into integers holds the GIL, 15 ms measured.)
    group_firsts = firsts[np.searchsorted(group_starts, later, side="right") - 1]
    later_indexes = order[later]
    del order, starts, group_starts, later
    colliding: dict[int, dict[str, int]] = {}  # group's first index -> its other keys' firsts
    for start in range(0, len(later_indexes), CHUNK):
        stop = start + CHUNK
        for index, first in zip(
            later_indexes[start:stop].tolist(), group_firsts[start:stop].tolist(), strict=True
        ):
            key = keys[index]
            if key != keys[first]:  # a collision of two distinct keys' hashes
                colliding.setdefault(first, {}).setdefault(key, index)
        yielder.pause_if_due()
    if colliding:
        extra = [index for others in colliding.values() for index in others.values()]
        firsts = np.concatenate((firsts, np.array(extra, np.int64)))
    return np.sort(firsts)


class Cache(abc.ABC):
    """An async cache of synthesised audio, addressed by keys derived from text and parameters.

    Implementers provide :meth:`generate_cache_key` (synchronous and pure), :meth:`get_cached_data`,
    :meth:`cache_data` and :meth:`clear_cache`. The other methods have correct defaults built on
    those, one key after the other; a backend should override them where it can do better:
    :meth:`get_cached_batch` with a bulk read, :meth:`get_entries` if it keeps the text, parameters
    and sample rate (the defaults cannot know them), :meth:`get_cache_status` with a bulk presence
    check (keying with :meth:`segment_keys` and answering with ``build_status``).
    ``encode_entry`` and ``decode_entry`` turn ``cache_data``'s arguments into the self-checking
    entry bytes and back, for a backend that stores blobs; ``sparktts_cache.testing.CacheContract``
    is the test every backend passes.

    Notes:
        A backend must be safe to call from many tasks at once, and ``cache_data`` must publish an
        entry atomically: a concurrent ``get_cached_data`` returns the whole entry or ``None``.
    """

    __slots__ = ()

    #: The anyio backends (event loops) this class runs on. A backend whose client library works
    #: on one event loop only declares it here, for example ``("asyncio",)``; the contract tests
    #: run on exactly these.
    async_backends: ClassVar[tuple[str, ...]] = ("asyncio", "trio")

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

        Returns False if the storage refused the write. A backend with no default rate (a
        ``TTSCache`` made without one) raises ``InvalidOptionError`` when none is given.
        """

    @abc.abstractmethod
    async def clear_cache(self) -> bool:
        """Remove every entry; return False if some could not be removed."""

    async def get_cached_batch(self, keys: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        """Return the cached audio of each key (None where missing), in order.

        This default reads one key after the other; a backend should override it with a bulk read.
        """
        return [await self.get_cached_data(key) for key in keys]

    async def get_entry(self, key: str) -> Entry | None:
        """Return the audio of ``key`` with its metadata, or None if it is not cached.

        This default calls :meth:`get_entries`; override that one, not this.
        """
        [entry] = await self.get_entries([key])
        return entry

    async def get_entries(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return :meth:`get_entry` of each key (None where missing), in order.

        This default reads the audio with :meth:`get_cached_batch` and knows nothing else: each
        entry's metadata has the key, an empty text, empty parameters, sample rate 0 and creation
        time 0.0, meaning "not recorded". A backend that keeps them overrides this method (with
        ``decode_entry``, a blob backend gets them back as stored).
        """
        audio = await self.get_cached_batch(keys)
        return [
            None if samples is None else Entry(samples, EntryMeta(key, "", {}, 0, 0.0))
            for key, samples in zip(keys, audio, strict=True)
        ]

    async def get_verified_batch(
        self,
        keys: Sequence[str],
        texts: Sequence[str],
        tts_params: Mapping[str, Any] | None = None,
    ) -> list[npt.NDArray[np.float32] | None]:
        """Return the cached audio of each key, only where its entry was made for that text and
        these parameters (None elsewhere), in order.

        A key is a fast hash, not a proof: a crafted text can share another's key. This read
        compares what each entry records (the normalised text and the canonical parameters) with
        the request, so an entry made for another request is a miss (logged), which the caller
        fills with :meth:`cache_data` and so overwrites. ``texts`` are aligned with ``keys`` and
        ``tts_params`` are those the keys were made with.

        This default reads with :meth:`get_entries` and compares in a worker thread (a speaker
        file recorded under another path is read to compare its content). A backend whose
        entries do not record their text and parameters (the ``get_entries`` default) cannot
        compare them, and its hits are served as they are.

        Raises:
            InvalidOptionError: if ``texts`` is not aligned with ``keys``.
            InvalidKeyError, UnsupportedTypeError, InvalidTextError, InvalidParamsError: for a
                bad key, text or parameters.
        """
        entries = await self.get_entries(keys)
        return await anyio.to_thread.run_sync(
            matching_audio, list(keys), list(texts), tts_params, entries
        )

    async def lookup(
        self, text: str, tts_params: Mapping[str, Any] | None = None
    ) -> tuple[str, npt.NDArray[np.float32] | None]:
        """Return the key of ``text`` with ``tts_params`` and its cached audio (None on a miss).

        The key is computed in a worker thread (keying reads a speaker file that
        ``prompt_speech_path`` names), and the read is :meth:`get_verified_batch`'s: audio made
        for another text or other parameters that share the key is a miss. On a miss, synthesise
        and store it under the key returned::

            key, audio = await cache.lookup(text, params)
            if audio is None:
                audio = model.inference(text, **params)
                await cache.cache_data(key, audio, text, params)

        Raises:
            as :meth:`generate_cache_key`.
        """
        key = await anyio.to_thread.run_sync(self.generate_cache_key, text, tts_params)
        [audio] = await self.get_verified_batch([key], [text], tts_params)
        return key, audio

    def segment_keys(
        self, segments: Sequence[str], tts_params: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Return the key of each segment (aligned with ``segments``) by :meth:`generate_cache_key`.

        For a ``get_cache_status`` of a backend's own: an error names the failing segment's index
        (``"segment 3: text is blank"``). CPU work: run it in a worker thread for long lists.
        """
        return keys_for_segments(segments, tts_params, key_of=self.generate_cache_key)

    async def get_cache_status(
        self, segments: Sequence[str], tts_params: Mapping[str, Any] | None = None
    ) -> CacheStatus:
        """Key every segment and find which distinct keys are cached.

        This default keys the segments in a worker thread (a speaker file named in the parameters
        is read to key it), then reads each distinct entry in turn; override it with a bulk
        presence check.
        """
        segments = list(segments)
        keys = await anyio.to_thread.run_sync(self.segment_keys, segments, tts_params)
        found: dict[str, bool] = {}
        for key in keys:
            if key not in found:
                found[key] = await self.get_cached_data(key) is not None
        return build_status(segments, keys, found)


class SynthesisLock(Protocol):
    """Mutual exclusion per key between processes (or machines) that share a cache."""

    def hold(self, key: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold the lock of ``key``; the context value is False if it was given up as stale."""
        ...


def check_lock_timing(stale_after: object, poll: object) -> tuple[float, float]:
    """Return a synthesis lock's ``stale_after`` and ``poll`` (seconds) as floats, if valid.

    Both must be positive, finite numbers: a ``stale_after`` of zero or less gave up every lock at
    once (each synthesis went ahead without one), and a ``poll`` of zero or less spins.

    Raises:
        InvalidOptionError: for anything else (a bool, NaN, infinity, zero, a negative number).
    """
    checked: list[float] = []
    for name, value in (("stale_after", stale_after), ("poll", poll)):
        seconds = math.nan
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            with contextlib.suppress(OverflowError):  # an int beyond float's range
                seconds = float(value)
        if not (math.isfinite(seconds) and seconds > 0):
            raise InvalidOptionError(f"{name} must be a positive number of seconds, got {value!r}")
        checked.append(seconds)
    return checked[0], checked[1]
