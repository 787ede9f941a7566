"""``SyncLongTextTTS``: :class:`LongTextTTS` as blocking calls, for scripts and notebooks."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Generator, Mapping
from typing import Any

import anyio
import anyio.from_thread
import numpy as np
import numpy.typing as npt

from .._core.errors import BlockingCallError, InvalidOptionError, UnsupportedTypeError
from .._file.cache import SyncTTSCache
from ..engines import TTSModel
from .long_text import LongTextTTS, Plan
from .segmenter import TextSegmenter

__all__ = ["SyncLongTextTTS"]


class SyncLongTextTTS:
    """Long text to speech through a file cache, as blocking calls: no ``await``, no event loop.

    The same synthesis as :class:`LongTextTTS` (which it runs, each call in an event loop of its
    own): the same segments, keys and entries, so the two forms share a cache directory.

    Args:
        model: anything with ``sample_rate`` and a blocking ``inference(text, **params)``.
        cache_dir: a directory for a cache at the model's sample rate...
        cache: ...or a :class:`SyncTTSCache` (not both). Redis and tiered caches hold connections
            tied to one event loop: use :class:`LongTextTTS` in your own event loop for them.
        segmenter, pause_seconds, max_concurrency, cross_process_lock, normalize: as for
            :class:`LongTextTTS` (``cross_process_lock`` True or False).

    Example::

        model = load_tts_model("espeak")
        long_text = SyncLongTextTTS(model, cache_dir="tts_cache")
        audio, fully_cached = long_text.generate("A long text...", {"gender": "female"})

    Notes:
        The methods block the calling thread until done, and refuse to run on a thread that runs
        an event loop (asyncio or trio) with :class:`BlockingCallError`, as ``asyncio.run`` does:
        there, await :class:`LongTextTTS` instead (or call this form from a worker thread, for
        example through ``anyio.to_thread.run_sync``). Ctrl-C stops a call; the segments already
        made are cached, so the next call resumes. One instance may be used by one thread at a
        time.
    """

    def __init__(
        self,
        model: TTSModel,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        cache: SyncTTSCache | None = None,
        segmenter: TextSegmenter | None = None,
        pause_seconds: float = 0.3,
        max_concurrency: int = 1,
        cross_process_lock: bool = False,
        normalize: bool = False,
    ) -> None:
        if cache is not None and cache_dir is not None:
            raise InvalidOptionError("pass cache_dir or cache, not both")
        if cache is not None and not isinstance(cache, SyncTTSCache):
            raise UnsupportedTypeError(
                f"SyncLongTextTTS takes a SyncTTSCache, not {type(cache).__name__}: for an async "
                "cache (TTSCache, RedisCache, TieredCache...) await LongTextTTS in an event loop"
            )
        if not isinstance(cross_process_lock, bool):
            raise UnsupportedTypeError("SyncLongTextTTS takes cross_process_lock=True or False")
        rate = getattr(model, "sample_rate", None)
        #: The cache, for blocking calls of your own (``get_entry``, ``stats``...).
        self.cache = (
            cache
            if cache is not None
            else SyncTTSCache(cache_dir, sample_rate=rate if isinstance(rate, int) else None)
        )
        #: The async form this one runs.
        self.long_text = LongTextTTS(
            model,
            cache=self.cache.as_async(),
            segmenter=segmenter,
            pause_seconds=pause_seconds,
            max_concurrency=max_concurrency,
            cross_process_lock=cross_process_lock,
            normalize=normalize,
        )

    @property
    def model(self) -> TTSModel:
        return self.long_text.model

    @property
    def segmenter(self) -> TextSegmenter:
        return self.long_text.segmenter

    @property
    def synthesis_count(self) -> int:
        """Model calls made by this instance."""
        return self.long_text.synthesis_count

    def key_params(self, tts_params: Mapping[str, Any] | None) -> dict[str, Any]:
        """As :meth:`LongTextTTS.key_params`."""
        return self.long_text.key_params(tts_params)

    def plan(
        self,
        text: str,
        tts_params: Mapping[str, Any] | None = None,
        normalize: bool | None = None,
    ) -> Plan:
        """As :meth:`LongTextTTS.plan` (blocking): hand the plan to :meth:`generate` or
        :meth:`stream`.

        Raises:
            BlockingCallError: if called on a thread that runs an event loop.
        """
        _refuse_in_event_loop("plan")
        return anyio.run(self.long_text.plan, text, tts_params, normalize)

    def generate(
        self,
        text: str | Plan,
        tts_params: Mapping[str, Any] | None = None,
        force_regenerate: bool = False,
    ) -> tuple[npt.NDArray[np.float32], bool]:
        """Return the whole text's audio and whether all of it came from the cache (blocking).

        As :meth:`LongTextTTS.generate`.

        Raises:
            BlockingCallError: if called on a thread that runs an event loop.
        """
        _refuse_in_event_loop("generate")
        return anyio.run(self.long_text.generate, text, tts_params, force_regenerate)

    def stream(
        self,
        text: str | Plan,
        tts_params: Mapping[str, Any] | None = None,
        force_regenerate: bool = False,
        *,
        read_ahead: int | None = None,
    ) -> Generator[npt.NDArray[np.float32], None, None]:
        """Yield each segment's audio in order as it is ready (blocking between chunks).

        As :meth:`LongTextTTS.stream` (``read_ahead`` too): the chunks joined equal
        :meth:`generate`'s audio. The
        synthesis runs in an event loop on a thread of its own and is handed over one chunk at a
        time, so it waits for you between chunks; closing the iterator early stops it.

        Raises:
            BlockingCallError: if called on a thread that runs an event loop (when iterated).
        """
        _refuse_in_event_loop("stream")
        with anyio.from_thread.start_blocking_portal() as portal:
            send, receive = anyio.create_memory_object_stream[npt.NDArray[np.float32]]()

            async def produce() -> None:
                # One task iterates the async stream from start to end: its task groups and cancel
                # scopes stay in the task that made them.
                async with send:
                    chunks = self.long_text.stream(
                        text, tts_params, force_regenerate, read_ahead=read_ahead
                    )
                    async for chunk in chunks:
                        await send.send(chunk)

            producer = portal.start_task_soon(produce)
            try:
                while True:
                    try:
                        chunk = portal.call(receive.receive)
                    except anyio.EndOfStream:
                        break
                    yield chunk
                producer.result()  # the stream's error, if it ended with one
            finally:
                producer.cancel()
                portal.call(receive.aclose)


def _refuse_in_event_loop(method: str) -> None:
    """Raise :class:`BlockingCallError` if this thread runs an asyncio or trio event loop."""
    running = None
    try:
        asyncio.get_running_loop()
        running = "asyncio"
    except RuntimeError:
        trio = sys.modules.get("trio")
        if trio is not None:
            try:
                trio.lowlevel.current_trio_token()
                running = "trio"
            except RuntimeError:
                pass
    if running is not None:
        raise BlockingCallError(
            f"SyncLongTextTTS.{method} blocks, and this thread runs an event loop ({running}): "
            f"use 'await LongTextTTS(...).{method}(...)' here, or call it from a worker thread "
            "(anyio.to_thread.run_sync)"
        )
