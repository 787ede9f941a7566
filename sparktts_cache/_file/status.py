"""Which of many segments are cached: keying, de-duplication, and presence checks in bulk.

The work is split so that the async front can choose its concurrency from what it measures: a
:class:`StatusPlan` keys every segment and checks the first few paths while timing them. On a local
file system with a warm cache a check takes microseconds, and one worker thread finishing the rest
is fastest (threads would only fight over the GIL). When checks take longer (a network file
system, a cold disk), the rest is split into chunks checked concurrently by many threads.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._core.cache import CacheStatus, first_occurrences
from .._core.gil import CHUNK, GilYielder, extend_in_pieces, hand_over_gil, make_old
from .._core.keys import keys_for_segments
from .layout import entry_paths

__all__ = ["StatusPlan"]

#: Paths timed before choosing how to check the rest.
PROBE_SIZE = 8
#: Mean seconds per check above which the rest is checked by many threads at once.
SLOW_CHECK_SECONDS = 50e-6
#: Paths checked between two looks at the clock: each check is microseconds of system time.
CHECK_CHUNK = CHUNK // 4
#: Items per C-level pass (a copy, a compress, a free) between two pauses for the GIL: tens of
#: microseconds each.
PIECE = CHUNK * 16


#: ``StatusPlan.found`` values: checked and absent, checked and present, not checked yet.
ABSENT, PRESENT, UNCHECKED = 0, 1, 2
_ABSENT_TO_TRUE = bytes.maketrans(b"\x00\x01", b"\x01\x00")


def _pieces(segments: Sequence[str]) -> Iterator[Sequence[str]]:
    """The caller's segments a piece at a time (see :data:`PIECE`), pausing for the GIL."""
    yielder = GilYielder()
    for start in range(0, len(segments), PIECE):
        yield segments[start : start + PIECE]
        yielder.pause_if_due()


class StatusPlan:
    """The keys of a list of segments, their distinct entries, and which were found so far.

    A plan is filled range by range, possibly from several worker threads at once (each range is
    recorded by the event loop thread, in any order), then turned into a :class:`CacheStatus`.
    Every list of a million items it makes is made old while empty and filled in place (see
    ``make_old`` and ``extend_in_pieces``): made or grown at once, or walked by the cycle
    collector, one holds the GIL, and so stalls the event loop, for milliseconds.
    """

    __slots__ = (
        "_extension", "_firsts", "_params", "_root", "checked", "found", "keys", "segments",
        "slow",
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
        #: The index of each distinct key's first segment, in order. The distinct keys and their
        #: entry paths are made from it a chunk at a time when needed, never all kept: at a
        #: million segments they were most of the memory.
        self._firsts: npt.NDArray[np.int64] = np.empty(0, np.int64)
        #: One byte per distinct key: ABSENT, PRESENT or UNCHECKED (a list of a million
        #: references is a container the cycle collector walks; bytes are not).
        self.found = bytearray()
        self.checked = 0
        self.slow = False

    @property
    def distinct_count(self) -> int:
        """How many distinct keys (and entry paths) there are to check."""
        return len(self._firsts)

    def build(self) -> None:
        """Key every segment and find the distinct keys (CPU work: run it in a thread).

        Raises:
            as :func:`keys_for_segments`.
        """
        copy: list[str] = []
        make_old(len(self.segments))
        extend_in_pieces(copy, _pieces(self.segments), len(self.segments))
        self.segments = copy
        keys = keys_for_segments(copy, self._params)
        self._firsts = first_occurrences(keys)
        self.keys = keys
        self.found = bytearray([UNCHECKED]) * self.distinct_count

    def _distinct(self, start: int, stop: int) -> list[str]:
        """The distinct keys ``start..stop``."""
        keys = self.keys
        return [keys[first] for first in self._firsts[start:stop].tolist()]

    def check_range(self, start: int, stop: int) -> bytes:
        """Check paths ``start..stop``; return their presence, a byte each (ABSENT or PRESENT).
        Safe to run in a worker thread.

        Presence is one ``access(F_OK)`` without following symlinks: it answers a miss without
        raising (an exception costs more than the system call). Whatever is at the path is only
        validated when it is read: a directory, FIFO, symlink or damaged file there is listed as
        cached here and is a miss for ``get_cached_data``.
        """
        yielder = GilYielder()
        exists = functools.partial(os.access, mode=os.F_OK, follow_symlinks=False)
        root, extension = self._root, self._extension
        results = bytearray()
        for begin in range(start, min(stop, self.distinct_count), CHECK_CHUNK):
            keys = self._distinct(begin, min(stop, begin + CHECK_CHUNK))
            results += bytes(map(exists, entry_paths(root, keys, extension)))
            yielder.pause_if_due()
        return bytes(results)

    def record(self, start: int, results: bytes) -> None:
        self.found[start : start + len(results)] = results
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
        for start in range(self.checked, self.distinct_count, PIECE):
            self.record(start, self.check_range(start, start + PIECE))
        return self.result()

    def result(self) -> CacheStatus:
        """The status, once every path is checked."""
        found = self.found
        if UNCHECKED in found:
            raise RuntimeError("status plan is not complete")  # a bug in the caller
        hits = found.count(PRESENT)
        cached: list[str] = []
        missing: list[str] = []
        make_old(len(found))
        extend_in_pieces(cached, self._found_keys(), hits)
        extend_in_pieces(missing, self._missing_segments(), len(found) - hits)
        # Free the indexes and the copy of the segments here, in the worker thread, a piece at a
        # time: freeing a million references at once takes milliseconds during which the event
        # loop cannot run (the plan itself is dropped on the event loop thread).
        yielder = GilYielder()
        self._firsts, self.found = np.empty(0, np.int64), bytearray()
        segments = self.segments
        assert isinstance(segments, list)
        while segments:
            del segments[-PIECE:]
            yielder.pause_if_due()
        return CacheStatus(self.keys, cached, missing)

    def _found_keys(self) -> Iterator[Iterable[str]]:
        yielder = GilYielder()
        for start in range(0, self.distinct_count, PIECE):
            hits = self.found[start : start + PIECE]
            firsts = self._firsts[start : start + PIECE].tolist()
            yield [self.keys[first] for first in itertools.compress(firsts, hits)]
            yielder.pause_if_due()

    def _missing_segments(self) -> Iterator[list[str]]:
        yielder = GilYielder()
        segments = self.segments
        for start in range(0, self.distinct_count, PIECE):
            misses = self.found[start : start + PIECE].translate(_ABSENT_TO_TRUE)
            firsts = self._firsts[start : start + PIECE].tolist()
            yield [segments[first] for first in itertools.compress(firsts, misses)]
            yielder.pause_if_due()
