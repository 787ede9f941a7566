"""Keeping the event loop responsive while a worker thread runs a long pure-Python loop."""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["CHUNK", "MANY", "GilYielder", "extend_in_pieces", "hand_over_gil", "make_old"]

T = TypeVar("T")

#: Items (segments, keys, paths) handled between two looks at the clock.
CHUNK = 256
#: Items from which a worker thread's containers are made old before they grow (see make_old).
MANY = 50_000


class GilYielder:
    """Lets the event loop thread run while a worker thread does a long pure-Python loop.

    CPython hands the GIL to a waiting thread only after the switch interval (5 ms) unless the
    holder blocks. Sleeping for a few microseconds every half millisecond keeps event-loop stalls
    near 1 ms at a cost of a few percent of throughput. (An event loop takes the GIL several
    times to wake one task, so pauses every 2 ms let a heartbeat on the loop stall 6-7 ms.)
    Work in chunks of about :data:`CHUNK` items and call :meth:`pause_if_due` after each: a look
    at the clock per item costs more than it saves.
    """

    __slots__ = ("_last",)

    EVERY_SECONDS = 0.0005

    def __init__(self) -> None:
        self._last = time.perf_counter()

    def pause_if_due(self) -> None:
        """Call once per chunk of work: sleeps briefly if the last pause is over 0.5 ms ago."""
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
    """Age the containers a worker thread has just made, still empty, that will grow to ``size``
    items: call it before filling them.

    CPython's cycle collector walks every element of every young container, holding the GIL: a
    list of a million distinct strings costs 15 ms a walk, during which the event loop cannot run
    (the first young-generation collection after a status call of a million segments walked seven
    million references, 75 ms). Made old while empty, a container costs nothing to age and is then
    walked only by the rare full collections, however large it grows. Grow it a piece at a time
    (``extend`` or ``+=``): a list made at full size at once (``[""] * n``) holds the GIL for 5 ms
    at a million items, faulting its fresh memory in.
    """
    if size >= MANY:
        gc.collect(1)


class _Hinted(Generic[T]):
    """An iterable that tells ``list.extend`` how many items it will give."""

    __slots__ = ("_items", "_size")

    def __init__(self, items: Iterable[T], size: int) -> None:
        self._items, self._size = items, size

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __length_hint__(self) -> int:
        return self._size


def extend_in_pieces(target: list[T], pieces: Iterable[Iterable[T]], size: int) -> None:
    """Extend ``target`` by the items of ``pieces`` (about ``size`` of them) without copying it.

    A list grown to a million items by ``append`` or ``+=`` is reallocated as it grows, and glibc
    copies a block that is not at the top of its heap: 4 ms holding the GIL for an 8 MB list,
    most of it faulting in the fresh pages. Told the size first (``__length_hint__``), ``extend``
    makes room once, untouched, and fills it in order as ``pieces`` gives items, so the pages
    fault in a few at a time, and ``pieces`` (a generator) can pause for the GIL between pieces.
    Make ``target`` old (``make_old``) while it is still empty.
    """
    target += _Hinted(itertools.chain.from_iterable(pieces), size)
