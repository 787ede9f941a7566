"""``LongTextTTS``: synthesise long text segment by segment, each segment through the cache."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from .._core.audio import as_mono_float32
from .._core.cache import Cache, SynthesisLock
from .._core.errors import InvalidOptionError, UnsupportedTypeError
from .._file.cache import SyncTTSCache, TTSCache
from .._file.locks import FileSynthesisLock
from ..engines import TTSModel, accepted_params
from .read_ahead import ReadAhead
from .segmenter import TextSegmenter

__all__ = ["LongTextTTS"]

log = logging.getLogger("sparktts_cache")

#: The parameter under which a model's ``cache_identity`` enters the cache key.
ENGINE_PARAM = "_engine"

#: Segments a stream reads and synthesises ahead of its consumer by default (at most this many
#: held at once: about 8 MB of float32 audio for segments of 200 characters at 16 kHz).
DEFAULT_READ_AHEAD = 8


class _Pending:
    """One synthesis in progress in this process, that other requests for the key can wait for."""

    __slots__ = ("audio", "done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.audio: npt.NDArray[np.float32] | None = None
        self.error: BaseException | None = None


#: The cache methods LongTextTTS awaits.
_AWAITED = ("get_cache_status", "get_cached_batch", "get_cached_data", "cache_data")


def _check_async_cache(cache: object, model_rate: int) -> None:
    """Refuse a cache LongTextTTS cannot use, now rather than at the first ``generate``.

    A blocking cache (``SyncTTSCache``, or a backend written with plain ``def``) failed only inside
    ``generate``, with "object ... can't be used in 'await' expression". A cache with a rate of its
    own (``TTSCache``'s default is Spark-TTS's 16,000 Hz) other than the model's is refused too:
    LongTextTTS passes the model's rate with every entry, but a seed-style backend whose
    ``cache_data`` takes none would store the model's audio at the wrong rate, silently, and so
    would any ``cache_data`` of the caller's own through the same cache.
    """
    if isinstance(cache, SyncTTSCache):
        raise UnsupportedTypeError(
            "LongTextTTS awaits its cache, and SyncTTSCache is the blocking one: pass "
            "cache=TTSCache(...) (same arguments, same files), or for blocking calls in a script "
            "use SyncLongTextTTS(model, cache=SyncTTSCache(...))"
        )
    for name in _AWAITED:
        if not inspect.iscoroutinefunction(getattr(cache, name, None)):
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


class LongTextTTS:
    """Long text to speech through a cache: each distinct segment is synthesised once.

    Args:
        model: anything with ``sample_rate`` and a blocking ``inference(text, **params)``; see
            :func:`~sparktts_cache.load_tts_model`.
        cache_dir: a directory for a :class:`TTSCache` at the model's sample rate...
        cache: ...or any async :class:`Cache` (not both). A blocking one (``SyncTTSCache``, or
            methods written with plain ``def``) is refused here with ``UnsupportedTypeError``;
            for blocking calls use :class:`SyncLongTextTTS`. One whose ``sample_rate`` is not the
            model's is refused with ``InvalidOptionError``, naming both rates.
        segmenter: how text is split (default: :class:`TextSegmenter()`).
        pause_seconds: silence between segments.
        max_concurrency: model calls running at once in this process (each in a worker thread).
        cross_process_lock: True for a lock file per key in ``<cache_dir>/locks`` (processes
            sharing a directory synthesise each segment once), or any :class:`SynthesisLock`.

    Example::

        model = load_tts_model("espeak")
        long_text = LongTextTTS(model, cache_dir="tts_cache")
        audio, fully_cached = await long_text.generate("A long text...", {"gender": "female"})

    Notes:
        ``tts_params`` go to ``model.inference`` filtered to the keywords it accepts; all of them
        count in the cache key, and so does the model's ``cache_identity`` if it has one (two
        engines never share entries). Concurrent calls that share segments synthesise each one once.
        A segment is cached as soon as it is made, so an interrupted call resumes where it stopped;
        a model error is raised after the segments already made are cached.
    """

    def __init__(
        self,
        model: TTSModel,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        cache: Cache | None = None,
        segmenter: TextSegmenter | None = None,
        pause_seconds: float = 0.3,
        max_concurrency: int = 1,
        cross_process_lock: bool | SynthesisLock = False,
    ) -> None:
        if not isinstance(getattr(model, "sample_rate", None), int) or not callable(
            getattr(model, "inference", None)
        ):
            raise UnsupportedTypeError(
                "model must have an int sample_rate and an inference(text, ...) method"
            )
        if cache is not None and cache_dir is not None:
            raise InvalidOptionError("pass cache_dir or cache, not both")
        if cache is not None:
            _check_async_cache(cache, model.sample_rate)
        if pause_seconds < 0 or max_concurrency < 1:
            raise InvalidOptionError("pause_seconds must be >= 0 and max_concurrency >= 1")
        self.model = model
        self.cache: Cache = (
            cache if cache is not None else TTSCache(cache_dir, sample_rate=model.sample_rate)
        )
        self.segmenter = segmenter or TextSegmenter()
        self.pause_seconds = pause_seconds
        self.max_concurrency = max_concurrency
        self._limiter = anyio.CapacityLimiter(max_concurrency)
        self._inflight: dict[tuple[str, str], _Pending] = {}
        self._lock: SynthesisLock | None
        if cross_process_lock is True:
            if not isinstance(self.cache, TTSCache):
                raise InvalidOptionError(
                    "cross_process_lock=True needs a TTSCache; pass a SynthesisLock"
                )
            self._lock = FileSynthesisLock(self.cache.cache_dir / "locks")
        else:
            self._lock = cross_process_lock or None
        cache_params = inspect.signature(self.cache.cache_data).parameters
        self._cache_takes_sample_rate = "sample_rate" in cache_params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in cache_params.values()
        )
        #: Model calls made by this instance (for tests, benchmarks and statistics).
        self.synthesis_count = 0

    @property
    def pause(self) -> npt.NDArray[np.float32]:
        return np.zeros(round(self.pause_seconds * self.model.sample_rate), dtype=np.float32)

    def key_params(self, tts_params: Mapping[str, Any] | None) -> dict[str, Any]:
        """The parameters a segment is keyed and stored with: the caller's plus the engine's."""
        params = dict(tts_params or {})
        identity = getattr(self.model, "cache_identity", None)
        if identity is not None:
            params[ENGINE_PARAM] = identity
        return params

    async def generate(
        self, text: str, tts_params: Mapping[str, Any] | None = None, force_regenerate: bool = False
    ) -> tuple[npt.NDArray[np.float32], bool]:
        """Return the whole text's audio and whether all of it came from the cache.

        Missing distinct segments are synthesised concurrently (up to ``max_concurrency``), and
        each is cached as soon as it is made. ``force_regenerate`` synthesises every segment again
        and replaces its entry. Empty text gives an empty array and True.
        """
        plan = await self._plan(text, tts_params)
        if plan is None:
            return np.zeros(0, dtype=np.float32), True
        segments, keys, cached = plan
        if force_regenerate:
            cached = []
        segment_of = dict(zip(reversed(keys), reversed(segments), strict=True))  # first of each
        audio = await self._read_cached(cached, [segment_of[key] for key in cached], tts_params)
        found: dict[str, npt.NDArray[np.float32] | None] = dict(zip(cached, audio, strict=True))
        missing = {key: segment for segment, key in zip(segments, keys, strict=True)
                   if found.get(key) is None}  # fmt: skip
        made: dict[str, npt.NDArray[np.float32]] = {}
        errors: list[Exception] = []
        queue = iter(missing.items())  # shared by the workers: segments are made in text order

        async def worker() -> None:
            for key, segment in queue:
                try:
                    made[key] = await self._synthesise_once(
                        key, segment, tts_params, force_regenerate
                    )
                except Exception as exc:  # the first error stops the rest and reaches the caller
                    errors.append(exc)
                    group.cancel_scope.cancel()
                    return

        async with anyio.create_task_group() as group:
            for _ in range(min(self.max_concurrency, len(missing))):
                group.start_soon(worker)
        if errors:
            raise errors[0]
        pieces = [found.get(key) if key not in made else made[key] for key in keys]
        return await anyio.to_thread.run_sync(self._join, pieces), not missing

    async def stream(
        self,
        text: str,
        tts_params: Mapping[str, Any] | None = None,
        force_regenerate: bool = False,
        *,
        read_ahead: int | None = None,
    ) -> AsyncGenerator[npt.NDArray[np.float32], None]:
        """Yield each segment's audio in order as soon as it is ready (cached ones at once).

        Every chunk after the first starts with the pause, so the chunks joined equal
        :meth:`generate`'s audio. Behind the consumer, a window of ``read_ahead`` segments
        (default: 8, or ``max_concurrency`` if larger) is read from the cache and synthesised
        ahead, in text order, missing ones by up to ``max_concurrency`` model calls at once: at
        most ``read_ahead`` segments past the one last yielded are held, so memory is bounded by
        the window, whatever the length of the text. The first cached segment is read alone, so
        it comes at once; later ones in runs of up to half the window.

        A consumer that stops early (``break``, cancellation, an exception, a disconnected
        client) stops the work ahead: closing the stream, or its garbage collection, waits until
        no worker of it runs. A model call in progress cannot be interrupted: it finishes and its
        segment is cached (so another call waiting for that segment gets it).
        """
        window = self._window(read_ahead)
        plan = await self._plan(text, tts_params)
        if plan is None:
            return
        segments, keys, cached_keys = plan
        cached_set = set() if force_regenerate else set(cached_keys)

        async def read(indices: list[int]) -> list[npt.NDArray[np.float32] | None]:
            return await self._read_cached(
                [keys[i] for i in indices], [segments[i] for i in indices], tts_params
            )

        async def make(index: int, first: bool) -> npt.NDArray[np.float32]:
            # A repeat of a key made by this stream is never forced: it shares or reads that one.
            force = force_regenerate and first
            return await self._synthesise_once(keys[index], segments[index], tts_params, force)

        ahead = ReadAhead(
            [key in cached_set for key in keys],
            keys,
            read=read,
            make=make,
            window=window,
            workers=self.max_concurrency,
        )
        ahead.start()
        try:
            pause = self.pause
            for index in range(len(keys)):
                audio = await ahead.next(index)
                yield np.concatenate([pause, audio]) if index else audio
        finally:
            await ahead.close()

    # -- internals -------------------------------------------------------------------------------

    def _window(self, read_ahead: int | None) -> int:
        if read_ahead is None:
            return max(DEFAULT_READ_AHEAD, self.max_concurrency)
        if isinstance(read_ahead, bool) or not isinstance(read_ahead, int) or read_ahead < 1:
            raise InvalidOptionError(f"read_ahead must be an int >= 1, not {read_ahead!r}")
        return read_ahead

    async def _plan(
        self, text: str, tts_params: Mapping[str, Any] | None
    ) -> tuple[list[str], list[str], list[str]] | None:
        """Segment the text and ask the cache once: the segments, their keys, the cached keys."""
        segments = await anyio.to_thread.run_sync(self.segmenter.segment_text, text)
        if not segments:
            return None
        status = await self.cache.get_cache_status(segments, self.key_params(tts_params))
        return segments, status.cache_keys, status.cached_keys

    async def _read_cached(
        self, keys: list[str], segments: list[str], tts_params: Mapping[str, Any] | None
    ) -> list[npt.NDArray[np.float32] | None]:
        """The cached audio of each key (aligned with ``segments``), None where missing: every
        read of cached audio goes through here.

        Verified: an entry made for another text or other parameters that share its key (a
        crafted collision; XXH3-128 is fast, not collision resistant) is a miss, so the segment
        is synthesised and its entry overwritten.
        """
        return await self.cache.get_verified_batch(keys, segments, self.key_params(tts_params))

    def _join(self, pieces: list[npt.NDArray[np.float32] | None]) -> npt.NDArray[np.float32]:
        pause = self.pause
        joined: list[npt.NDArray[np.float32]] = []
        for piece in pieces:
            assert piece is not None
            if joined and len(pause):
                joined.append(pause)
            joined.append(piece)
        return np.concatenate(joined)

    async def _synthesise_once(
        self, key: str, segment: str, tts_params: Mapping[str, Any] | None, force: bool
    ) -> npt.NDArray[np.float32]:
        """Synthesise ``key`` unless a task of this process already is; then share its result.

        Shared by key and text: a colliding text (another text with the same key) never takes
        the audio of a synthesis in progress for the first.
        """
        inflight = (key, segment)
        while (pending := self._inflight.get(inflight)) is not None:
            await pending.done.wait()
            if pending.audio is not None:
                return pending.audio
            if isinstance(pending.error, Exception):
                raise pending.error
            # The owner was cancelled: try again, maybe as the owner.
        pending = self._inflight[inflight] = _Pending()
        try:
            pending.audio = await self._synthesise(key, segment, tts_params, force)
            return pending.audio
        except BaseException as exc:
            pending.error = exc
            raise
        finally:
            del self._inflight[inflight]
            pending.done.set()

    async def _synthesise(
        self, key: str, segment: str, tts_params: Mapping[str, Any] | None, force: bool
    ) -> npt.NDArray[np.float32]:
        # The status this call started from may be stale: another task (or, with the lock,
        # another process) may have made the segment since. Look again before synthesising.
        async with contextlib.AsyncExitStack() as stack:
            if self._lock is not None:
                await stack.enter_async_context(self._lock.hold(key))
            if not force:
                [audio] = await self._read_cached([key], [segment], tts_params)
                if audio is not None:
                    return audio
            return await self._make(key, segment, tts_params)
        raise AssertionError("unreachable")  # pragma: no cover - for type checkers

    async def _make(
        self, key: str, segment: str, tts_params: Mapping[str, Any] | None
    ) -> npt.NDArray[np.float32]:
        model_params = accepted_params(self.model, tts_params or {})
        audio = await anyio.to_thread.run_sync(
            self._infer, segment, model_params, limiter=self._limiter
        )
        self.synthesis_count += 1
        params = self.key_params(tts_params)
        with anyio.CancelScope(shield=True):  # what was made is kept, even if we are cancelled
            if self._cache_takes_sample_rate:
                rate = self.model.sample_rate
                stored = await self.cache.cache_data(key, audio, segment, params, sample_rate=rate)
            else:  # a backend with the four-argument cache_data of the original Spark-TTS
                # cache module this library re-implements
                stored = await self.cache.cache_data(key, audio, segment, params)
        if not stored:
            log.warning("segment %s was synthesised but could not be cached", key)
        return audio

    def _infer(self, segment: str, params: dict[str, Any]) -> npt.NDArray[np.float32]:
        return as_mono_float32(self.model.inference(segment, **params))
