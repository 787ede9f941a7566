"""Which of many segments are cached: keying, de-duplication, and presence checks in bulk.

The work is split so that the async front can choose its concurrency from what it measures. A
:class:`StatusPlan` keys every segment, then checks paths in rounds of about 10 ms, timing each
round by the clock and by the thread's CPU time. On a local file system a check is CPU work in the
kernel (microseconds): one worker thread finishing the rest is fastest, and more threads would only
take the event loop's core. When two rounds in a row show the checks mostly waiting (a network
file system, a cold disk), the rest is checked by several threads at once: as many as a
:class:`Governor` finds the event loop keeps on time with, and never more than keep under half a
core busy.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .._core.cache import CacheStatus, first_occurrences
from .._core.gil import CHUNK, GilYielder, extend_in_pieces, hand_over_gil, make_old
from .._core.keys import keys_for_segments
from .layout import entry_paths

__all__ = ["Checked", "Governor", "StatusPlan"]

#: Paths checked in the first round, before anything is known of the file system.
FIRST_ROUND = 16
#: Rounds in a row that must mostly wait before the checks are spread over threads.
WAITED_ROUNDS = 2
#: Seconds a round of checks should last: the figures are looked at after each round.
ROUND_SECONDS = 0.01
#: Mean seconds per check below which threads cannot help (a local file system: microseconds).
SLOW_CHECK_SECONDS = 50e-6
#: The share of one core that checking threads should keep busy; below the first bound checks
#: mostly wait (more threads would help), above the second they are CPU work (more threads would
#: take the event loop's core).
TARGET_LOAD, WAITING_LOAD, BUSY_LOAD = 0.4, 0.2, 0.6
#: The most threads that check paths at once.
MAX_THREADS = 64
#: How late the event loop may run before the checking threads are halved, and how often it is
#: looked at while they run.
LATE_SECONDS, TICK_SECONDS = 0.002, 0.001
#: How long the loop must keep on time before the threads grow, and the most they start at.
GROW_SECONDS, FIRST_THREADS = 0.01, 4
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


class Checked(NamedTuple):
    """One round of presence checks: a byte per path (ABSENT or PRESENT), and what it cost."""

    found: bytes
    #: Seconds by the clock.
    wall: float
    #: Seconds of the checking thread's CPU time (user and system): the clock minus this is time
    #: spent waiting, on the file system or for the GIL.
    cpu: float

    @property
    def per_check(self) -> float:
        return self.wall / max(len(self.found), 1)

    @property
    def load(self) -> float:
        """The share of a core the round kept busy."""
        return self.cpu / self.wall if self.wall > 0 else 1.0

    @property
    def waited(self) -> bool:
        """Whether one thread's round mostly waited on slow checks, so that threads would help."""
        return self.per_check > SLOW_CHECK_SECONDS and self.load < WAITING_LOAD

    def next_round_size(self) -> int:
        """Paths for a round of about :data:`ROUND_SECONDS` at this round's pace."""
        if self.per_check <= 0:
            return PIECE
        return max(FIRST_ROUND, min(PIECE, int(ROUND_SECONDS / self.per_check)))


class Governor:
    """How many threads check paths at once, set again as rounds finish and as the event loop
    shows how late it runs (``tick``).

    Threads help only while checks wait (a network round trip, a disk read), and each thread
    coming back from a check needs the GIL: past some number they queue for it, and the event
    loop queues behind them (64 threads each waiting 1 ms per check stalled the loop 50-70 ms). So
    the count is steered by the loop's own lateness, as TCP steers its window by loss: it starts
    at what the round that waited calls for (at most :data:`FIRST_THREADS`), doubles every
    :data:`GROW_SECONDS` while the loop keeps on time, then grows by one, and halves whenever the
    loop runs over :data:`LATE_SECONDS` late. Checks that are CPU work (a local file system once
    its directories are cached) cut it too: together the threads may keep only
    :data:`TARGET_LOAD` of a core busy, and once one thread alone is busy, the rest is best left
    to one thread (``busy``; ``StatusPlan.run_unless_waiting``).

    Not thread-safe: called from the event loop thread only; ``now`` is ``time.perf_counter()``.
    """

    __slots__ = ("_calm_since", "_growing_fast", "_load", "busy", "round_size", "threads")

    def __init__(self, first: Checked, now: float) -> None:
        #: Threads to check with now: what the round's load calls for, up to a start of
        #: :data:`FIRST_THREADS` (a round can be a poor guide: a burst of many threads that turn
        #: out to be CPU work holds the loop until the cuts catch up).
        self.threads = max(2, min(FIRST_THREADS, _threads_for(first.load)))
        #: Paths per thread call.
        self.round_size = first.next_round_size()
        #: Whether the checks turned out CPU work at one thread.
        self.busy = False
        self._load = first.load  # of one thread's rounds, a moving average
        self._growing_fast = True
        self._calm_since = now

    def observe(self, checked: Checked, now: float) -> None:
        """A round finished."""
        self.round_size = checked.next_round_size()
        self._load += (checked.load - self._load) / 4
        load = self._load * self.threads
        if load > BUSY_LOAD:
            self.busy = self.threads == 1
            self._cut(max(1, math.floor(self.threads * TARGET_LOAD / load)), now)

    def tick(self, late: float, now: float) -> None:
        """The event loop ran ``late`` seconds after it should have."""
        if late > LATE_SECONDS:
            self._cut(max(1, self.threads // 2), now)
        elif now - self._calm_since >= GROW_SECONDS:
            grown = self.threads * 2 if self._growing_fast else self.threads + 1
            grown = min(grown, _threads_for(self._load))
            if grown > self.threads:
                self.threads, self._calm_since = grown, now

    def _cut(self, threads: int, now: float) -> None:
        self.threads, self._growing_fast, self._calm_since = threads, False, now


def _threads_for(load: float) -> int:
    """How many threads, each keeping ``load`` of a core busy, keep :data:`TARGET_LOAD` busy."""
    return max(1, min(MAX_THREADS, math.floor(TARGET_LOAD / max(load, 1e-6))))


class StatusPlan:
    """The keys of a list of segments, their distinct entries, and which were found so far.

    A plan is filled range by range, possibly from several worker threads at once (each range is
    recorded by the event loop thread, in any order), then turned into a :class:`CacheStatus`.
    Every list of a million items it makes is made old while empty and filled in place (see
    ``make_old`` and ``extend_in_pieces``): made or grown at once, or walked by the cycle
    collector, one holds the GIL, and so stalls the event loop, for milliseconds.
    """

    __slots__ = (
        "_extension", "_firsts", "_params", "_root", "claimed", "found", "keys", "segments",
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
        #: Distinct keys handed out for checking (``claim``); ``found`` says which were recorded.
        self.claimed = 0

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

    def claim(self, size: int) -> tuple[int, int] | None:
        """The next ``size`` distinct keys to check, as a range, or None when all are handed out.
        Call it from one thread at a time."""
        start = self.claimed
        if start >= self.distinct_count:
            return None
        self.claimed = min(start + size, self.distinct_count)
        return start, self.claimed

    def check_range(self, start: int, stop: int) -> Checked:
        """Check paths ``start..stop`` and time it. Safe to run in a worker thread.

        Presence is one ``access(F_OK)`` without following symlinks: it answers a miss without
        raising (an exception costs more than the system call). Whatever is at the path is only
        validated when it is read: a directory, FIFO, symlink or damaged file there is listed as
        cached here and is a miss for ``get_cached_data``.
        """
        began, began_cpu = time.perf_counter(), time.thread_time()
        yielder = GilYielder()
        exists = functools.partial(os.access, mode=os.F_OK, follow_symlinks=False)
        root, extension = self._root, self._extension
        results = bytearray()
        for begin in range(start, min(stop, self.distinct_count), CHECK_CHUNK):
            keys = self._distinct(begin, min(stop, begin + CHECK_CHUNK))
            results += bytes(map(exists, entry_paths(root, keys, extension)))
            yielder.pause_if_due()
        return Checked(bytes(results), time.perf_counter() - began, time.thread_time() - began_cpu)

    def record(self, start: int, checked: Checked) -> None:
        self.found[start : start + len(checked.found)] = checked.found

    def build_and_check(self) -> CacheStatus | Checked:
        """Build, then check as :meth:`run_unless_waiting` does (run it in a worker thread)."""
        if len(self.segments) > CHUNK * 8:
            hand_over_gil()
        self.build()
        return self.run_unless_waiting()

    def run_unless_waiting(self) -> CacheStatus | Checked:
        """Check the paths not handed out yet in this thread, a round of about 10 ms at a time,
        and return the status; or, as soon as :data:`WAITED_ROUNDS` rounds in a row mostly waited
        (see ``Checked.waited``), return the last and leave the rest to several threads (see
        :class:`Governor`). One round is not enough: a few reads of cold directory blocks make a
        round of a local disk's checks look like a network's."""
        size, waited = FIRST_ROUND, 0
        while (span := self.claim(size)) is not None:
            checked = self.check_range(*span)
            self.record(span[0], checked)
            waited = waited + 1 if checked.waited else 0
            if waited == WAITED_ROUNDS:
                return checked
            size = checked.next_round_size()
        return self.result()

    def finish(self) -> CacheStatus:
        """Check every path not handed out yet in this thread, then return the status."""
        while (span := self.claim(PIECE)) is not None:
            self.record(span[0], self.check_range(*span))
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
