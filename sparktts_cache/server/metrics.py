"""Prometheus metrics, right with one process or several.

With ``--workers N`` every uvicorn worker is its own process; ``serve`` then points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start, prometheus_client
writes each process's values to files there, and ``/metrics`` (whichever worker answers it) sums
them with its ``MultiProcessCollector``. With one process the values live in memory.

Metrics:
    ``sparktts_segments_synthesised_total``: engine calls (segments made), by voice engine.
    ``sparktts_cache_hits_total`` / ``sparktts_cache_misses_total``: by ``kind``: ``segment``
        (a request's segments found in the segment cache or not when it started) and
        ``response`` (a finished response served from the response store or not).
    ``sparktts_request_duration_seconds``: histogram of whole requests, body included, by route
        and status, and ``protocol``: ``http``, or ``wyoming`` (route: the event, ``synthesize``
        or ``synthesize-stream`` for each sentence of a stream; status: ``ok``, ``error`` or
        ``disconnected``).
    ``sparktts_requests_in_progress``: requests being answered now, by ``protocol``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from sparktts_cache import TTSModel

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "counted_model"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The ``protocol`` label's values.
PROTOCOLS = ("http", "wyoming")


class Metrics:
    """The server's metrics, on a registry of their own (so that apps made in one process, as
    tests make them, do not collide)."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode the values go to files whatever the registry; exposition reads
        # the files. Registering on a private registry keeps names unique per app either way.
        registry = CollectorRegistry()
        self.registry = registry
        self.segments_synthesised = Counter(
            "sparktts_segments_synthesised", "Segments synthesised by an engine.",
            ["engine"], registry=registry,
        )  # fmt: skip
        self.fallback_segments = Counter(
            "sparktts_fallback_segments",
            "Segments (or sentences of one) read by a fallback voice, as the voice's engine "
            "spells their script: by language (zh, ja, ko) and the voice's engine.",
            ["language", "engine"], registry=registry,
        )  # fmt: skip
        self.cache_hits = Counter(
            "sparktts_cache_hits", "Cache hits, by kind (segment or response).",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.cache_misses = Counter(
            "sparktts_cache_misses", "Cache misses, by kind (segment or response).",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.request_duration = Histogram(
            "sparktts_request_duration_seconds", "Request durations, body included.",
            ["route", "status", "protocol"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )  # fmt: skip
        self.in_progress = Gauge(
            "sparktts_requests_in_progress", "Requests being answered.",
            ["protocol"], registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.redis_breaker = Counter(
            "sparktts_redis_breaker_transitions",
            "The Redis tier's circuit breaker opening (Redis timed out or went away: skipped "
            "for a while) and closing (answering again).",
            ["transition"], registry=registry,
        )  # fmt: skip
        self.redis_breaker_open = Gauge(
            "sparktts_redis_breaker_open", "Redis tiers being skipped now (breakers open).",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        for transition in ("opened", "closed"):
            self.redis_breaker.labels(transition)
        for protocol in PROTOCOLS:
            self.in_progress.labels(protocol)
        for kind in ("segment", "response"):  # present at 0 before the first request
            self.cache_hits.labels(kind)
            self.cache_misses.labels(kind)

    def breaker_transition(self, opened: bool) -> None:
        """Count a Redis breaker opening (True) or closing (False)."""
        self.redis_breaker.labels("opened" if opened else "closed").inc()
        if opened:
            self.redis_breaker_open.inc()
        else:
            self.redis_breaker_open.dec()

    def exposition(self) -> bytes:
        """The text format of every metric (summed over the worker processes if several)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class _CountedModel:
    """A model whose every ``inference`` call counts one synthesised segment; the model's other
    attributes are its own."""

    def __init__(self, model: TTSModel, count: Callable[[], None]) -> None:
        self.model = model
        self.sample_rate = model.sample_rate
        identity = getattr(model, "cache_identity", None)
        if identity is not None:
            self.cache_identity = identity
        inner = model.inference

        @functools.wraps(inner)  # keeps the signature: LongTextTTS passes what it accepts
        def inference(text: str, **params: Any) -> Any:
            result = inner(text, **params)
            count()
            return result

        self.inference = inference

    def __getattr__(self, name: str) -> Any:
        """The model's other attributes: a ScriptFallback's ``check`` and ``scripts``, Kokoro's
        ``voice_names`` and ``check_voice``..."""
        if name == "model":  # not set yet: never look it up on itself
            raise AttributeError(name)
        return getattr(self.model, name)


def counted_model(model: TTSModel, metrics: Metrics, engine: str) -> TTSModel:
    """``model``, counting its syntheses in ``sparktts_segments_synthesised_total``."""
    counter = metrics.segments_synthesised.labels(engine)
    counted: TTSModel = _CountedModel(model, counter.inc)
    return counted
