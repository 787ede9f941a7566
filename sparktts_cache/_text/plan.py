"""``Plan``: what one request to ``LongTextTTS`` will do, worked out once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Plan"]


@dataclass(frozen=True)
class Plan:
    """A text's segments, their keys, which were cached when it was planned, and the parameters
    they are keyed and stored with: made once per request by :meth:`LongTextTTS.plan`, then
    handed to :meth:`~LongTextTTS.generate` or :meth:`~LongTextTTS.stream` (which segment and
    ask the cache again only when given a text).

    A front end (the speech server, the command line) reads what it reports from the plan (how
    many segments were cached, for a header or a progress bar) and runs that same plan, so what
    it reports is what runs. ``cached_keys`` is what the cache held at planning time; a segment
    cached meanwhile is read rather than synthesised all the same.

    Attributes:
        text: the text as given.
        tts_params: the caller's parameters (the model gets those its ``inference`` takes).
        key_params: ``tts_params`` plus the engine's identity: what every segment is keyed and
            stored with.
        segments: the text's segments, in order (empty for a text with nothing to say).
        keys: each segment's cache key (aligned with ``segments``).
        cached_keys: the distinct keys that were cached at planning time.
    """

    text: str
    tts_params: Mapping[str, Any]
    key_params: Mapping[str, Any]
    segments: list[str]
    keys: list[str]
    cached_keys: frozenset[str]
    #: The LongTextTTS that made it: a plan runs only there (another engine keys differently).
    planner: object = field(repr=False, compare=False)

    @property
    def cached(self) -> list[bool]:
        """Whether each segment was cached at planning time (aligned with ``segments``)."""
        return [key in self.cached_keys for key in self.keys]

    @property
    def cached_segments(self) -> int:
        """How many segments (repeats counted) were cached at planning time."""
        return sum(self.cached)

    @property
    def fully_cached(self) -> bool:
        """Whether every segment was cached at planning time (True for no segments)."""
        return self.cached_segments == len(self.segments)
