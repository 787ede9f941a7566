"""How many threads ``get_cache_status`` checks paths with: one while checks are CPU work, more
while they wait, never so many that the event loop queues behind them (``status.Governor``)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from sparktts_cache import SyncTTSCache, TTSCache
from sparktts_cache._file.status import (
    BUSY_LOAD,
    FIRST_ROUND,
    FIRST_THREADS,
    GROW_SECONDS,
    LATE_SECONDS,
    MAX_THREADS,
    PIECE,
    ROUND_SECONDS,
    SLOW_CHECK_SECONDS,
    TARGET_LOAD,
    WAITED_ROUNDS,
    Checked,
    Governor,
)
from sparktts_cache.testing import sealed_audio

WAITING = Checked(bytes(16), wall=16e-3, cpu=16e-5)  # 1 ms a check, 1% of a core
BUSY = Checked(bytes(16), wall=16e-3, cpu=15e-3)  # 1 ms a check of CPU work


def calm_ticks(governor: Governor, start: float, seconds: float) -> float:
    """Ticks on time every millisecond for ``seconds``; returns the time after them."""
    now = start
    for _ in range(round(seconds * 1000)):
        now += 0.001
        governor.tick(0.0001, now)
    return now


def test_a_round_that_waited_is_told_from_one_that_worked() -> None:
    assert WAITING.waited and not BUSY.waited
    # Fast checks never call for threads, however little CPU they used.
    assert not Checked(bytes(16), wall=16 * SLOW_CHECK_SECONDS / 2, cpu=0.0).waited
    # Rounds of about ROUND_SECONDS at the last round's pace, within FIRST_ROUND..PIECE.
    assert abs(Checked(bytes(16), wall=16 * 250e-6, cpu=0.0).next_round_size() - 40) <= 1
    assert WAITING.next_round_size() == FIRST_ROUND == max(FIRST_ROUND, ROUND_SECONDS // 1e-3)
    assert Checked(bytes(16), wall=16e-7, cpu=16e-7).next_round_size() == PIECE
    assert Checked(bytes(16), wall=16.0, cpu=0.0).next_round_size() == FIRST_ROUND


def test_threads_start_from_the_first_round_and_double_while_the_loop_keeps_on_time() -> None:
    # A round at 1% of a core calls for 40 threads: start at FIRST_THREADS, double up to 40.
    governor = Governor(WAITING, now=0.0)
    assert governor.threads == FIRST_THREADS == 4
    seen = [governor.threads]
    now = 0.0
    for _ in range(5):
        now = calm_ticks(governor, now, GROW_SECONDS)
        seen.append(governor.threads)
    assert seen == [4, 8, 16, 32, 40, 40]  # 40 threads at 1% keep TARGET_LOAD busy
    # Checks that cost next to nothing grow to the cap.
    governor = Governor(Checked(bytes(16), wall=16e-3, cpu=16e-6), now=0.0)
    calm_ticks(governor, 0.0, 5 * GROW_SECONDS)
    assert governor.threads == MAX_THREADS == 64
    # At 15% of a core, a third thread would pass 40%: start at 2, grow no further.
    governor = Governor(Checked(bytes(16), wall=16e-3, cpu=2.4e-3), now=0.0)
    calm_ticks(governor, 0.0, 3 * GROW_SECONDS)
    assert governor.threads == 2
    # Threads grow only while they keep under TARGET_LOAD of a core together.
    governor = Governor(Checked(bytes(16), wall=16e-3, cpu=16e-3 * TARGET_LOAD / 6), now=0.0)
    calm_ticks(governor, 0.0, 3 * GROW_SECONDS)
    assert governor.threads in (5, 6)


def test_a_late_loop_halves_the_threads_and_growth_turns_slow() -> None:
    governor = Governor(WAITING, now=0.0)
    now = calm_ticks(governor, 0.0, 2 * GROW_SECONDS)
    assert governor.threads == 16
    governor.tick(LATE_SECONDS * 2, now)
    assert governor.threads == 8
    calm_ticks(governor, now, GROW_SECONDS)
    assert governor.threads == 9  # one at a time after a cut
    for _ in range(10):
        governor.tick(LATE_SECONDS * 2, now)
    assert governor.threads == 1 and not governor.busy


def test_checks_that_are_cpu_work_cut_the_threads_down_to_one_then_stop() -> None:
    governor = Governor(WAITING, now=0.0)
    now = calm_ticks(governor, 0.0, 2 * GROW_SECONDS)
    threads = [governor.threads]
    while not governor.busy:
        now += 0.001
        governor.observe(BUSY, now)
        threads.append(governor.threads)
        assert len(threads) < 50
    assert threads[0] == 16 and threads[-1] == 1
    assert threads == sorted(threads, reverse=True)
    # Busy rounds never let it grow again.
    calm_ticks(governor, now, GROW_SECONDS * 3)
    assert governor.threads == 1
    assert BUSY.load > BUSY_LOAD


@pytest.fixture
def cached(tmp_path: Path) -> tuple[list[str], SyncTTSCache]:
    segments = [f"segment {index}" for index in range(1500)]
    sync = SyncTTSCache(tmp_path, sample_rate=16000)
    for text in segments[::3]:
        assert sync.cache_data(sync.generate_cache_key(text), sealed_audio(1), text)
    return segments, sync


class Concurrency:
    """Wraps ``os.access`` to count the checks running at once (``peak``), and in which threads;
    ``slow_down(counter, call)`` runs inside each, ``call`` counting from 1."""

    def __init__(self, slow_down: Callable[[Concurrency, int], None]) -> None:
        self._slow_down = slow_down
        self._lock = threading.Lock()
        self.now = self.peak = self.calls = 0
        self.threads: set[int] = set()
        self._real = os.access

    def __call__(self, path: Any, *args: Any, **kwargs: Any) -> bool:
        with self._lock:
            self.now += 1
            self.calls += 1
            call = self.calls
            self.peak = max(self.peak, self.now)
            self.threads.add(threading.get_ident())
        try:
            self._slow_down(self, call)
            return self._real(path, *args, **kwargs)
        finally:
            with self._lock:
                self.now -= 1


async def status_through(
    cached: tuple[list[str], SyncTTSCache],
    monkeypatch: pytest.MonkeyPatch,
    slow_down: Callable[[Concurrency, int], None],
    count: int = 1500,
) -> Concurrency:
    """``get_cache_status`` of the first ``count`` segments with every check slowed down by
    ``slow_down``; checks the answer against the blocking front's and returns the counts."""
    segments, sync = cached
    expected = sync.get_cache_status(segments[:count])
    counter = Concurrency(slow_down)
    monkeypatch.setattr(os, "access", counter)
    status = await TTSCache(sync.cache_dir, sample_rate=16000).get_cache_status(segments[:count])
    assert status == expected
    return counter


BLOCK = bytes(16384)


def spin(seconds: float) -> None:
    """CPU work for ``seconds`` that lets the event loop run (hashlib drops the GIL)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        hashlib.sha256(BLOCK).digest()


@pytest.mark.anyio
async def test_slow_checks_that_are_cpu_work_stay_on_one_thread(
    cached: tuple[list[str], SyncTTSCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 us a check, all of it this thread's CPU time: more threads would only share the cores.
    counter = await status_through(cached, monkeypatch, lambda counter, call: spin(100e-6))
    assert counter.peak == 1 and len(counter.threads) == 1


@pytest.mark.anyio
async def test_one_slow_round_is_not_taken_for_a_network_file_system(
    cached: tuple[list[str], SyncTTSCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local disk's first round can wait on a cold directory block: one round that waited is not
    enough to call for threads (two in a row are)."""

    def cold_block_first(counter: Concurrency, call: int) -> None:
        if call == 1:
            time.sleep(0.02)

    counter = await status_through(cached, monkeypatch, cold_block_first)
    assert counter.peak == 1 and len(counter.threads) == 1


@pytest.mark.anyio
async def test_waiting_checks_spread_over_threads_and_back_when_they_turn_fast(
    cached: tuple[list[str], SyncTTSCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    peaks: list[int] = []

    def cold_then_warm(counter: Concurrency, call: int) -> None:
        if call <= 600:
            time.sleep(0.002)  # a cold disk or a network round trip: waiting, not CPU
            if call == 600:
                peaks.append(counter.peak)

    await status_through(cached, monkeypatch, cold_then_warm)
    # From FIRST_THREADS it doubles every 10 ms while the loop keeps on time (unit tests above); a
    # loaded machine may run the loop late now and then, so ask for the start only.
    assert peaks and peaks[0] >= FIRST_THREADS, f"only {peaks} checks ran at once while waiting"


@pytest.mark.anyio
async def test_a_late_event_loop_keeps_the_threads_down(
    cached: tuple[list[str], SyncTTSCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop that runs late (here another task blocks it) must not be made later by more threads:
    they are halved at every late tick, so once the first rounds are done (two in one thread, then
    one in each of the FIRST_THREADS the round calls for), the checks run one at a time."""
    late_peak = [0]

    def round_trip(counter: Concurrency, call: int) -> None:
        if call > (WAITED_ROUNDS + FIRST_THREADS) * FIRST_ROUND + 32:
            late_peak[0] = max(late_peak[0], counter.now)
        time.sleep(0.002)

    done = anyio.Event()

    async def hog() -> None:
        while not done.is_set():
            time.sleep(LATE_SECONDS * 2)  # the point: a loop running late
            await anyio.sleep(0)

    async with anyio.create_task_group() as group:
        group.start_soon(hog)
        counter = await status_through(cached, monkeypatch, round_trip, count=480)
        done.set()
    assert counter.peak >= 2  # it did spread at first
    assert late_peak[0] == 1, f"{late_peak[0]} checks ran at once while the loop ran late"
