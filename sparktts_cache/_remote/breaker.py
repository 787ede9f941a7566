"""``CircuitBreaker``: skip a shared tier for a while once it has timed out or gone away."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from .._core.errors import InvalidOptionError

__all__ = ["CircuitBreaker"]

log = logging.getLogger("sparktts_cache")


class CircuitBreaker:
    """Closed: every call goes through. Open (after a timeout or a lost connection): calls are
    skipped, so reads are misses and writes are skipped at once, for ``cooldown`` seconds; then
    one call is let through as a trial, which closes the breaker if it succeeds and opens it for
    another ``cooldown`` if it fails.

    ``opened_count`` and ``closed_count`` count the transitions (a metric may read them), and
    ``is_open`` says whether calls are being skipped now. Each transition is logged (a warning when
    it opens, info when it closes); the skipped calls are not.

    Args:
        cooldown: seconds to skip the shared tier after a failure (positive, finite).
        name: what the log lines call the shared tier.
        on_transition: called with True when the breaker opens and False when it closes (a
            server counts them in its metrics).

    Raises:
        InvalidOptionError: for a cooldown that is not a positive, finite number of seconds.

    Notes:
        Not thread-safe: one breaker belongs to one event loop (as a ``redis.asyncio`` client
        does). Share one between the cache and the lock on the same Redis, so that one timeout
        stops both.
    """

    def __init__(
        self,
        cooldown: float = 5.0,
        *,
        name: str = "Redis",
        on_transition: Callable[[bool], object] | None = None,
    ) -> None:
        if not isinstance(cooldown, int | float) or not math.isfinite(cooldown) or cooldown <= 0:
            raise InvalidOptionError(f"cooldown must be positive, finite seconds: {cooldown!r}")
        self.cooldown = float(cooldown)
        self.name = name
        self.opened_count = 0
        self.closed_count = 0
        self._on_transition = on_transition
        self._open_until: float | None = None

    @property
    def is_open(self) -> bool:
        """Whether the shared tier is being skipped (including while a trial call runs)."""
        return self._open_until is not None

    def allows(self) -> bool:
        """Whether to make a call now: always when closed; when open, once per cooldown."""
        if self._open_until is None:
            return True
        now = time.monotonic()
        if now < self._open_until:
            return False
        self._open_until = now + self.cooldown  # the others skip while this trial runs
        return True

    def failed(self, error: BaseException) -> None:
        """A call timed out or lost its connection: open (or keep open) for ``cooldown``."""
        if self._open_until is None:
            self.opened_count += 1
            log.warning(
                "%s unreachable (%s: %s); skipping it for %g s (reads are misses, writes skipped)",
                self.name, type(error).__name__, error, self.cooldown,
            )  # fmt: skip
            if self._on_transition is not None:
                self._on_transition(True)
        self._open_until = time.monotonic() + self.cooldown

    def succeeded(self) -> None:
        """A call was answered: close the breaker if it was open."""
        if self._open_until is not None:
            self._open_until = None
            self.closed_count += 1
            log.info("%s answers again; using it", self.name)
            if self._on_transition is not None:
                self._on_transition(False)
