"""The Redis tier's circuit breaker tells whoever asks when it opens and closes: the speech server
counts both on /metrics (the breaker's own behaviour is tested on a hung redis-server in
tests/test_redis_outages.py)."""

from __future__ import annotations

import time

import pytest

from sparktts_cache import CircuitBreaker


def test_each_transition_is_reported_once() -> None:
    seen: list[bool] = []
    breaker = CircuitBreaker(cooldown=0.05, on_transition=seen.append)
    breaker.succeeded()  # closed already: nothing to report
    breaker.failed(TimeoutError("first"))
    breaker.failed(TimeoutError("again, while open"))
    assert seen == [True] and breaker.is_open and not breaker.allows()
    time.sleep(0.06)
    assert breaker.allows()  # the trial call
    breaker.succeeded()
    assert seen == [True, False] and not breaker.is_open
    assert (breaker.opened_count, breaker.closed_count) == (1, 1)


def test_the_server_counts_transitions_on_its_metrics() -> None:
    pytest.importorskip("prometheus_client", reason="the server's extra")
    from sparktts_cache.server.metrics import Metrics

    metrics = Metrics()
    breaker = CircuitBreaker(cooldown=60, on_transition=metrics.breaker_transition)
    breaker.failed(ConnectionError("gone"))
    text = metrics.exposition().decode()
    assert 'sparktts_redis_breaker_transitions_total{transition="opened"} 1.0' in text
    assert "sparktts_redis_breaker_open 1.0" in text
    breaker.succeeded()
    text = metrics.exposition().decode()
    assert 'sparktts_redis_breaker_transitions_total{transition="closed"} 1.0' in text
    assert "sparktts_redis_breaker_open 0.0" in text
