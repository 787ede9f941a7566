"""Which of many segments are cached: keying, de-duplication, and presence checks in bulk.

The work is split so that the async front can choose its concurrency from what it measures: a
:class:`StatusPlan` keys every segment and checks the first few paths while timing them. On a local
file system with a warm cache a check takes microseconds, and one worker thread finishing the rest
is fastest (threads would only fight over the GIL). When checks take longer (a network file
system, a cold disk), the rest is split into chunks checked concurrently by many threads.
"""

from __future__ import annotations

import array
import functools
import itertools
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .._core.cache import CacheStatus, first_occurrences
from .._core.gil import CHUNK, GilYielder, hand_over_gil, make_old
from .._core.keys import keys_for_segments
from .layout import entry_paths

__all__ = ["StatusPlan"]

#: Paths timed before choosing how to check the rest.
PROBE_SIZE = 8
#: Mean seconds per check above which the rest is checked by many threads at once.
SLOW_CHECK_SECONDS = 50e-6
#: Items per C-level pass (a copy, a compress, a free) between two pauses for the GIL: tens of
#: microseconds each.
PIECE = CHUNK * 16


def _copied(segments: Sequence[str]) -> list[str]:
    """A list copy of the caller's segments, made a piece at a time (see :data:`PIECE`)."""
    yielder = GilYielder()
    copy = [""] * len(segments)  # at full size: growing it would copy it (see first_occurrences)
    make_old(len(segments))
    for start in range(0, len(segments), PIECE):
        copy[start : start + PIECE] = segments[start : start + PIECE]
        yielder.pause_if_due()
    return copy


class StatusPlan:
    """The keys of a list of segments, their distinct entry paths, and which were found so far.

    A plan is filled range by range, possibly from several worker threads at once (each range is
    recorded by the event loop thread, in any order), then turned into a :class:`CacheStatus`.
    """

    __slots__ = (
        "_extension", "_first", "_params", "_root", "checked", "distinct", "found", "keys",
        "segments", "slow",
    )  # fmt: skip

    def __init__(
        self,
        segments: Sequence[str],
        tts_params: Mapping[str, Any] | None,
        root: str,
        extension: str,
    ) -> None:
        #: The caller's segments; copied to a list in the worker thread (``build``), as copying
        #: a million of them on the event loop stalls it for milliseconds.
        self.segments = segments
        self._params = tts_params
        self._root, self._extension = root, extension
        self.keys: list[str] = []
        #: The index of each distinct key's first segment, aligned with ``distinct``.
        self._first: array.array[int] = array.array("q")
        #: The distinct keys, in first-occurrence order. Their entry paths are made a chunk at a
        #: time when checked, never all kept: at a million segments they were most of the memory.
        self.distinct: list[str] = []
        self.found: list[bool | None] = []
        self.checked = 0
        self.slow = False

    def build(self) -> None:
        """Key every segment and list the distinct entry paths (CPU work: run it in a thread).

        Raises:
            as :func:`keys_for_segments`.
        """
        self.segments = _copied(self.segments)
        keys = keys_for_segments(self.segments, self._params)
        self.distinct, self._first = first_occurrences(keys)
        self.keys = keys
        self.found = [None] * len(self.distinct)
        make_old(len(self.found))

    def check_range(self, start: int, stop: int) -> list[bool]:
        """Check paths ``start..stop``; return their presence. Safe to run in a worker thread.

        Presence is one ``access(F_OK)`` without following symlinks: it answers a miss without
        raising (an exception costs more than the system call). Whatever is at the path is only
        validated when it is read: a directory, FIFO, symlink or damaged file there is listed as
        cached here and is a miss for ``get_cached_data``.
        """
        yielder = GilYielder()
        exists = functools.partial(os.access, mode=os.F_OK, follow_symlinks=False)
        root, extension = self._root, self._extension
        results: list[bool] = []
        for begin in range(start, min(stop, len(self.distinct)), CHUNK):
            keys = self.distinct[begin : min(stop, begin + CHUNK)]
            results += map(exists, entry_paths(root, keys, extension))
            yielder.pause_if_due()
        return results

    def record(self, start: int, results: list[bool]) -> None:
        yielder = GilYielder()
        for begin in range(0, len(results), PIECE):
            piece = results[begin : begin + PIECE]
            self.found[start + begin : start + begin + len(piece)] = piece
            yielder.pause_if_due()
        self.checked += len(results)

    def run_unless_slow(self) -> CacheStatus | None:
        """Build, then time the first checks: if they are fast, finish here and return the status;
        if slow (a network file system), return None and leave the rest to many threads."""
        if len(self.segments) > CHUNK * 8:
            hand_over_gil()
        self.build()
        began = time.perf_counter()
        results = self.check_range(0, PROBE_SIZE)
        self.record(0, results)
        if results and (time.perf_counter() - began) / len(results) > SLOW_CHECK_SECONDS:
            self.slow = True
            return None
        return self.finish()

    def finish(self) -> CacheStatus:
        """Check every path not checked yet in this thread, then return the status."""
        for start in range(self.checked, len(self.distinct), PIECE):
            self.record(start, self.check_range(start, start + PIECE))
        return self.result()

    def result(self) -> CacheStatus:
        """The status, once every path is checked (C-level passes, with pauses between them)."""
        yielder = GilYielder()
        found = self.found
        distinct, firsts, segments = self.distinct, self._first, self.segments
        # C-level passes a piece at a time: one pass over a million items holds the GIL (and so
        # stalls the event loop) for tens of milliseconds. The answer's lists are made at their
        # full size (counted first), as growing them would copy them.
        hit_count = 0
        for start in range(0, len(found), PIECE):
            hits = found[start : start + PIECE]
            if None in hits:
                raise RuntimeError("status plan is not complete")  # a bug in the caller
            hit_count += hits.count(True)
            yielder.pause_if_due()
        cached = [""] * hit_count
        missing = [""] * (len(found) - hit_count)
        make_old(len(found))
        n_cached = n_missing = 0
        for start in range(0, len(found), PIECE):
            stop = start + PIECE
            hits = found[start:stop]
            piece = list(itertools.compress(distinct[start:stop], hits))
            cached[n_cached : n_cached + len(piece)] = piece
            n_cached += len(piece)
            misses = [not hit for hit in hits]
            firsts_missing = itertools.compress(firsts[start:stop], misses)
            piece = [segments[first] for first in firsts_missing]
            missing[n_missing : n_missing + len(piece)] = piece
            n_missing += len(piece)
            yielder.pause_if_due()
        # Free the indexes and the copy of the segments here, in the worker thread, a piece at a
        # time: freeing a million references at once takes milliseconds during which the event
        # loop cannot run (the plan itself is dropped on the event loop thread).
        del distinct, firsts, segments
        self._first = array.array("q")
        for structure in (self.distinct, self.found, self.segments):
            assert isinstance(structure, list)
            while structure:
                del structure[-PIECE:]
                yielder.pause_if_due()
        return CacheStatus(self.keys, cached, missing)
