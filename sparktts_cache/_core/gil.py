"""Keeping the event loop responsive while a worker thread runs a long pure-Python loop."""

from __future__ import annotations

import gc
import time

__all__ = ["CHUNK", "MANY", "GilYielder", "hand_over_gil", "make_old"]

#: Items (segments, keys, paths) handled between two looks at the clock.
CHUNK = 256
#: Items from which a worker thread's containers are made old before they grow (see make_old).
MANY = 50_000


class GilYielder:
    """Lets the event loop thread run while a worker thread does a long pure-Python loop.

    CPython hands the GIL to a waiting thread only after the switch interval (5 ms) unless the
    holder blocks. Sleeping for a few microseconds every couple of milliseconds keeps event-loop
    stalls near 1 ms at a cost of a few percent of throughput. Work in chunks of about
    :data:`CHUNK` items and call :meth:`pause_if_due` after each: a look at the clock per item
    costs more than it saves.
    """

    __slots__ = ("_last",)

    EVERY_SECONDS = 0.002

    def __init__(self) -> None:
        self._last = time.perf_counter()

    def pause_if_due(self) -> None:
        """Call once per chunk of work: sleeps briefly if the last pause is over 2 ms ago."""
        now = time.perf_counter()
        if now - self._last > self.EVERY_SECONDS:
            time.sleep(20e-6)
            self._last = time.perf_counter()


def hand_over_gil() -> None:
    """Give the GIL up once, at the start of a long run in a worker thread that was just started.

    The event loop thread that started the worker still has to take the GIL back to return to its
    loop; a worker that goes straight into pure-Python work holds it until the switch interval
    (5 ms) forces it out, and the event loop stalls that long. Sleeping for zero seconds releases
    the GIL at once, so the loop runs first.
    """
    time.sleep(0)


def make_old(size: int) -> None:
    """Age the containers a worker thread has just made, for ``size`` items: call it right after
    making one at its full size.

    CPython's cycle collector walks every element of every young container, holding the GIL:
    the first young-generation collection after a status call of a million segments had built
    its lists walked seven million references, 75 ms during which the event loop could not run.
    Collected now, one at a time, each costs a few milliseconds once; old containers are walked
    only by the rare full collections.
    """
    if size >= MANY:
        gc.collect(1)
