"""What every request of one server process shares."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from sparktts_cache import SyncTTSCache
from sparktts_cache.engines import NamedVoices

from .config import ServerConfig, VoiceSpec
from .metrics import Metrics
from .voices import Voice, engine_voice

#: Blends kept (see :meth:`ServerState.voice`); each costs a ``Voice`` and its identity.
MAX_ENGINE_VOICES = 256

__all__ = ["ServerState"]


@dataclass
class ServerState:
    """The configuration, the voices (empty until the engines are loaded), ``responses`` (a blocking
    view of the cache directory, for worker threads, whose blobs hold finished responses), the
    metrics, the segment cache's size budget, and the synthesis slots (``config.max_concurrent``).

    Used from the event loop thread only.
    """

    config: ServerConfig
    specs: dict[str, VoiceSpec]
    responses: SyncTTSCache
    metrics: Metrics
    #: The segment cache's share of ``--max-size`` (None: no limit).
    segment_budget: int | None = None
    #: The voices file's ``[languages]`` (None: the default fallback voices).
    languages: dict[str, str | None] | None = None
    voices: dict[str, Voice] = field(default_factory=dict)
    ready: bool = False
    #: Syntheses running and requests waiting for a slot.
    running: int = 0
    waiting: int = 0
    _slots: anyio.Semaphore | None = field(default=None, repr=False)
    #: Voices made for a request from the engine's own names (Kokoro's blends), kept for reuse.
    _engine_voices: dict[str, Voice] = field(default_factory=dict, repr=False)

    def voice(self, name: str) -> Voice | None:
        """The voice ``name``: one of :attr:`voices`, else, on an engine with voices of its own
        (Kokoro), any voice or blend of it (``jf_alpha+jm_kumo``), as Kokoro-FastAPI takes
        them; None if there is no such voice.

        Raises:
            InvalidParamsError: for a blend or voice the engine refuses (the message says why).
        """
        found = self.voices.get(name) or self._engine_voices.get(name)
        if found is not None:
            return found
        base = next(
            (
                voice
                for voice in self.voices.values()
                if voice.spec.engine == self.config.engine and not voice.spec.engine_options
                and isinstance(voice.long_text.model, NamedVoices)
            ),
            None,
        )  # fmt: skip
        if base is None:
            return None
        made = engine_voice(self.config, base.long_text, name)
        if len(self._engine_voices) >= MAX_ENGINE_VOICES:
            self._engine_voices.clear()  # clients naming endless blends cost memory, not keys
        self._engine_voices[name] = made
        return made

    async def acquire_synthesis(self) -> bool:
        """Take a synthesis slot, waiting up to ``config.queue_timeout`` seconds for one; False if
        none came free in time (the caller answers 429).

        The wait is first come, first served: anyio's semaphore hands a released slot to its
        oldest waiter, and one arriving later never overtakes a waiting one (even while a slot
        is free for an instant). A waiter that is cancelled (its client went away) leaves the
        queue; if a slot was handed to it at that moment, the semaphore passes it on.
        """
        if self._slots is None:  # made here, in the event loop's thread
            self._slots = anyio.Semaphore(self.config.max_concurrent)
        try:
            self._slots.acquire_nowait()  # a free slot has no waiters before it
        except anyio.WouldBlock:
            self.waiting += 1
            try:
                with anyio.move_on_after(self.config.queue_timeout):
                    await self._slots.acquire()
                    self.running += 1
                    return True
            finally:
                self.waiting -= 1
            return False
        self.running += 1
        return True

    def release_synthesis(self) -> None:
        assert self._slots is not None, "release_synthesis without acquire_synthesis"
        self.running -= 1
        self._slots.release()
