"""``LongTextTTS``: synthesise long text segment by segment, each segment through the cache."""

from __future__ import annotations

import contextlib
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
from .._file.cache import TTSCache
from .._file.locks import FileSynthesisLock
from ..engines import TTSModel, accepted_params
from .cache_calls import CacheCalls
from .normalize import NORMALIZER_VERSION, normalize_for_speech
from .plan import Plan
from .read_ahead import ReadAhead
from .segmenter import TextSegmenter

__all__ = ["LongTextTTS", "Plan"]

log = logging.getLogger("sparktts_cache")

#: The parameter under which a model's ``cache_identity`` enters the cache key.
ENGINE_PARAM = "_engine"

#: The parameter under which ``NORMALIZER_VERSION`` enters the key of a normalised text's segments.
NORMALIZER_PARAM = "_normalizer"

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
        normalize: whether :meth:`plan` turns a text into speech-ready text first
            (:func:`normalize_for_speech`: Markdown to its words, URLs as their domain, emoji
            dropped); default False, the text is read as given. ``plan(..., normalize=)``
            overrides it for one request.

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
        normalize: bool = False,
    ) -> None:
        if not isinstance(getattr(model, "sample_rate", None), int) or not callable(
            getattr(model, "inference", None)
        ):
            raise UnsupportedTypeError(
                "model must have an int sample_rate and an inference(text, ...) method"
            )
        if cache is not None and cache_dir is not None:
            raise InvalidOptionError("pass cache_dir or cache, not both")
        if pause_seconds < 0 or max_concurrency < 1:
            raise InvalidOptionError("pause_seconds must be >= 0 and max_concurrency >= 1")
        self.model = model
        self.cache: Cache = (
            cache if cache is not None else TTSCache(cache_dir, sample_rate=model.sample_rate)
        )
        #: The cache's status, verified read and write, in one call shape whatever the cache.
        self._calls = CacheCalls(self.cache, model.sample_rate)
        self.segmenter = segmenter or TextSegmenter()
        self.pause_seconds = pause_seconds
        self.normalize = normalize
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

    async def plan(
        self,
        text: str,
        tts_params: Mapping[str, Any] | None = None,
        normalize: bool | None = None,
    ) -> Plan:
        """Segment ``text`` and ask the cache once which segments it holds.

        With ``normalize`` (None: the instance's setting) the text is normalised for speech
        before it is segmented, and ``NORMALIZER_VERSION`` enters the key parameters (as
        ``"_normalizer"``): a new normaliser never serves the audio of the old one's text, and
        text read as given never shares entries with normalised text.

        A front end that reports on a request before running it (a header, a progress bar)
        plans it and hands the plan to :meth:`generate` or :meth:`stream`, so the text is
        segmented and the cache asked once per request. Segmentation runs in a worker thread.

        Raises:
            UnsupportedTypeError, InvalidTextError, InvalidParamsError: for a text or parameters
                that cannot be keyed (nothing is written).
        """
        params = dict(tts_params or {})
        key_params = self.key_params(params)
        normalizing = self.normalize if normalize is None else normalize
        if normalizing:
            key_params[NORMALIZER_PARAM] = NORMALIZER_VERSION
        segments = await anyio.to_thread.run_sync(self._segments, text, normalizing)
        if not segments:
            return Plan(text, params, key_params, [], [], frozenset(), self)
        status = await self._calls.status(segments, key_params)
        return Plan(
            text, params, key_params, segments, status.cache_keys,
            frozenset(status.cached_keys), self,
        )  # fmt: skip

    async def generate(
        self,
        text: str | Plan,
        tts_params: Mapping[str, Any] | None = None,
        force_regenerate: bool = False,
    ) -> tuple[npt.NDArray[np.float32], bool]:
        """Return the whole text's audio and whether all of it came from the cache.

        ``text`` may be a :class:`Plan` of this instance's (then without ``tts_params``). Missing
        distinct segments are synthesised concurrently (up to ``max_concurrency``), and each is
        cached as soon as it is made. ``force_regenerate`` synthesises every segment again and
        replaces its entry. Empty text gives an empty array and True.
        """
        plan = await self._plan_of(text, tts_params)
        if not plan.segments:
            return np.zeros(0, dtype=np.float32), True
        segments, keys = plan.segments, plan.keys
        cached = [] if force_regenerate else sorted(plan.cached_keys)
        segment_of = dict(zip(reversed(keys), reversed(segments), strict=True))  # first of each
        audio = await self._calls.read_verified(
            cached, [segment_of[key] for key in cached], plan.key_params
        )
        found: dict[str, npt.NDArray[np.float32] | None] = dict(zip(cached, audio, strict=True))
        missing = {key: segment for segment, key in zip(segments, keys, strict=True)
                   if found.get(key) is None}  # fmt: skip
        made: dict[str, npt.NDArray[np.float32]] = {}
        errors: list[Exception] = []
        queue = iter(missing.items())  # shared by the workers: segments are made in text order

        async def worker() -> None:
            for key, segment in queue:
                try:
                    made[key] = await self._synthesise_once(key, segment, plan, force_regenerate)
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
        text: str | Plan,
        tts_params: Mapping[str, Any] | None = None,
        force_regenerate: bool = False,
        *,
        read_ahead: int | None = None,
    ) -> AsyncGenerator[npt.NDArray[np.float32], None]:
        """Yield each segment's audio in order as soon as it is ready (cached ones at once).

        ``text`` may be a :class:`Plan` of this instance's (then without ``tts_params``). Every
        chunk after the first starts with the pause, so the chunks joined equal
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
        plan = await self._plan_of(text, tts_params)
        if not plan.segments:
            return
        segments, keys = plan.segments, plan.keys
        cached_set = frozenset() if force_regenerate else plan.cached_keys

        async def read(indices: list[int]) -> list[npt.NDArray[np.float32] | None]:
            return await self._calls.read_verified(
                [keys[i] for i in indices], [segments[i] for i in indices], plan.key_params
            )

        async def make(index: int, first: bool) -> npt.NDArray[np.float32]:
            # A repeat of a key made by this stream is never forced: it shares or reads that one.
            force = force_regenerate and first
            return await self._synthesise_once(keys[index], segments[index], plan, force)

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

    def _segments(self, text: str, normalizing: bool) -> list[str]:
        return self.segmenter.segment_text(normalize_for_speech(text) if normalizing else text)

    async def _plan_of(self, text: str | Plan, tts_params: Mapping[str, Any] | None) -> Plan:
        """``text``'s plan: the one given (checked to be this instance's), or a new one."""
        if not isinstance(text, Plan):
            return await self.plan(text, tts_params)
        if text.planner is not self:
            raise InvalidOptionError(
                "this plan was made by another LongTextTTS: plan with the one that runs it"
            )
        if tts_params is not None:
            raise InvalidOptionError("a plan holds its parameters: pass tts_params to plan()")
        return text

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
        self, key: str, segment: str, plan: Plan, force: bool
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
            pending.audio = await self._synthesise(key, segment, plan, force)
            return pending.audio
        except BaseException as exc:
            pending.error = exc
            raise
        finally:
            del self._inflight[inflight]
            pending.done.set()

    async def _synthesise(
        self, key: str, segment: str, plan: Plan, force: bool
    ) -> npt.NDArray[np.float32]:
        # The plan this call started from may be stale: another task (or, with the lock, another
        # process) may have made the segment since. Look again (verified: an entry made for
        # another text that shares the key, a crafted collision, is a miss and is overwritten).
        async with contextlib.AsyncExitStack() as stack:
            if self._lock is not None:
                await stack.enter_async_context(self._lock.hold(key))
            if not force:
                [audio] = await self._calls.read_verified([key], [segment], plan.key_params)
                if audio is not None:
                    return audio
            return await self._make(key, segment, plan)
        raise AssertionError("unreachable")  # pragma: no cover - for type checkers

    async def _make(self, key: str, segment: str, plan: Plan) -> npt.NDArray[np.float32]:
        model_params = accepted_params(self.model, plan.tts_params)
        audio = await anyio.to_thread.run_sync(
            self._infer, segment, model_params, limiter=self._limiter
        )
        self.synthesis_count += 1
        with anyio.CancelScope(shield=True):  # what was made is kept, even if we are cancelled
            stored = await self._calls.write(key, audio, segment, plan.key_params)
        if not stored:
            log.warning("segment %s was synthesised but could not be cached", key)
        return audio

    def _infer(self, segment: str, params: dict[str, Any]) -> npt.NDArray[np.float32]:
        return as_mono_float32(self.model.inference(segment, **params))
