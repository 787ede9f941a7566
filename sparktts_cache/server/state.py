"""What every request of one server process shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from sparktts_cache import SyncTTSCache

from .config import ServerConfig, VoiceSpec
from .metrics import Metrics
from .voices import Voice

__all__ = ["ServerState"]


@dataclass
class ServerState:
    """The configuration, the voices (empty until the engines are loaded), ``responses`` (a blocking
    view of the cache directory, for worker threads, whose blobs hold finished responses), the
    metrics, the segment cache's size budget, and the count of syntheses running (at most
    ``config.max_concurrent``).

    Used from the event loop thread only (the count needs no lock).
    """

    config: ServerConfig
    specs: dict[str, VoiceSpec]
    responses: SyncTTSCache
    metrics: Metrics
    #: The segment cache's share of ``--max-size`` (None: no limit).
    segment_budget: int | None = None
    voices: dict[str, Voice] = field(default_factory=dict)
    ready: bool = False
    running: int = 0

    def try_acquire_synthesis(self) -> bool:
        if self.running >= self.config.max_concurrent:
            return False
        self.running += 1
        return True

    def release_synthesis(self) -> None:
        self.running -= 1
