"""Shared test helpers: files, worker processes, and the functions those processes run.

Every multi-process test and harness starts its processes with :class:`Worker`: a worker is forked
from a server process that has imported this module (numpy, the package) once, so it starts in
milliseconds rather than a second, and what it returns or raises comes back to the parent. The
worker functions (``writer``, ``mixed_load``, ``long_text_worker``...) live here too, so that the
server has them preloaded; ``tests/stress.py`` drives the first two as the reliability harnesses.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import random
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt

from sparktts_cache import FileSynthesisLock, LongTextTTS, SyncTTSCache, TextSegmenter, TTSCache
from sparktts_cache.testing import is_sealed, sealed_audio

from .models import CountingModel

__all__ = [
    "CacheLogCounter",
    "Gate",
    "Worker",
    "WorkerError",
    "attempts_as_nobody",
    "files_under",
    "fill",
    "harness_key",
    "hold_lock",
    "long_text_worker",
    "mixed_load",
    "ready",
    "writer",
    "writer_killed_mid_write",
]


def best_time(repeats: int, call: Callable[[], object]) -> float:
    """The shortest of ``repeats`` timed runs of ``call``, in seconds (for ratios against a
    baseline timed in the same test, never for absolute bounds)."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - began)
    return best


def fill(cache: SyncTTSCache, count: int, prefix: str = "entry") -> list[str]:
    """Write ``count`` sealed entries (``sealed_audio(index)``); return their keys."""
    keys = []
    for index in range(count):
        text = f"{prefix} {index}"
        key = cache.generate_cache_key(text, {})
        assert cache.cache_data(key, sealed_audio(index), text, {})
        keys.append(key)
    return keys


def files_under(root: Path | str) -> list[str]:
    """Every file or link under ``root``, relative, sorted (directories excluded)."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        found += [os.path.relpath(os.path.join(dirpath, name), root) for name in filenames]
    return sorted(found)


def harness_key(cache: SyncTTSCache | TTSCache, name: str) -> str:
    """The key of the harnesses' entry ``name`` (``"shared 3"``, ``"private 7 1"``...)."""
    return cache.generate_cache_key(name, {"harness": "stress"})


class CacheLogCounter(logging.Handler):
    """Counts what the cache only logs: ``corrupt`` files a reader met (it turns one into a miss,
    and removes it, so without this a torn entry would pass for a plain miss), and writes
    ``given_up`` because their shard directory or temp file was removed under them at every
    attempt (by concurrent clears or cleanups: the write returns False). Counts while in a
    ``with`` block."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.corrupt = self.given_up = 0

    def __enter__(self) -> CacheLogCounter:
        logging.getLogger("sparktts_cache").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("sparktts_cache").removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "corrupt" in message:
            self.corrupt += 1
        elif (
            message.startswith("cannot write cache entry") and f"[Errno {errno.ENOENT}]" in message
        ):
            self.given_up += 1


# -- worker processes ----------------------------------------------------------------------------

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])
#: In a worker process, its end of the pipe to the parent (see :func:`ready`).
_to_parent: Connection | None = None


class WorkerError(Exception):
    """A worker raised (the message holds its traceback), died, or did not answer in time."""


class Worker:
    """A process running ``target(*args, **kwargs)``, a function of this module.

    Arguments and the return value travel pickled. :meth:`wait_ready` waits for the worker to call
    :func:`ready`, :meth:`result` for its return value, and :meth:`kill` sends SIGKILL, whatever it
    is doing. As a context manager it kills the worker on exit if it is still running, so that no
    test leaves one behind when it fails.
    """

    def __init__(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._from_worker, to_parent = _CONTEXT.Pipe(duplex=False)
        self.process = _CONTEXT.Process(
            target=_run, args=(to_parent, target, args, kwargs), daemon=True
        )
        self.process.start()
        to_parent.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the worker has called :func:`ready`."""
        kind, value = self._receive(timeout)
        if kind != "ready":
            raise WorkerError(f"worker {self.process.pid} returned before it was ready: {value!r}")

    def result(self, timeout: float = 300.0) -> Any:
        """Wait for the worker's return value and for the worker to exit."""
        kind, value = self._receive(timeout)
        if kind != "result":
            raise WorkerError(f"worker {self.process.pid} sent {kind!r}, not its result")
        self.process.join(timeout)
        self._from_worker.close()
        return value

    def kill(self) -> None:
        """SIGKILL the worker if it is still running, and reap it."""
        if self.process.exitcode is None:
            self.process.kill()
        self.process.join()
        self._from_worker.close()

    def _receive(self, timeout: float) -> tuple[str, Any]:
        pid = self.process.pid
        if not self._from_worker.poll(timeout):
            raise WorkerError(f"worker {pid} sent nothing for {timeout} s")
        try:
            kind, value = self._from_worker.recv()
        except EOFError:
            self.process.join()
            raise WorkerError(f"worker {pid} died (exit code {self.process.exitcode})") from None
        if kind == "error":
            raise WorkerError(f"worker {pid} failed:\n{value}")
        return str(kind), value


def ready() -> None:
    """In a worker, tell the parent that set-up is done (:meth:`Worker.wait_ready`)."""
    if _to_parent is not None:
        _to_parent.send(("ready", None))


def _run(
    to_parent: Connection,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    global _to_parent
    _to_parent = to_parent
    try:
        result = target(*args, **kwargs)
    except BaseException:
        to_parent.send(("error", traceback.format_exc()))
        raise SystemExit(1) from None
    to_parent.send(("result", result))


class Gate:
    """A barrier between worker processes, one per name, made of files in ``directory``.

    :meth:`wait` returns once all ``parties`` processes have arrived at the name. A process may
    arrive without waiting, to let the others go on while it does something else first.
    """

    def __init__(self, directory: str, parties: int) -> None:
        self.directory, self.parties = directory, parties

    def arrive(self, name: str) -> None:
        with contextlib.suppress(FileExistsError):
            open(os.path.join(self.directory, f"{name}.{os.getpid()}"), "x").close()

    def wait(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while (arrived := self._arrived(name)) < self.parties:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {arrived} of {self.parties} processes reached {name}")
            time.sleep(0.002)

    def _arrived(self, name: str) -> int:
        return sum(entry.startswith(f"{name}.") for entry in os.listdir(self.directory))


# -- what the workers run ------------------------------------------------------------------------

#: Sizes of the harnesses' entries in samples: 10 ms to 20 s at 16 kHz.
WRITER_SAMPLES = (160, 16_000, 160_000, 320_000)


def writer(cache_dir: str, seed: int) -> None:
    """Write sealed entries of 10 ms to 20 s to shared and private keys until killed."""
    cache = SyncTTSCache(cache_dir, sample_rate=16000)
    rnd = random.Random(seed)
    ready()
    while True:
        shared = rnd.random() < 0.5
        name = f"shared {rnd.randrange(16)}" if shared else f"private {seed} {rnd.randrange(8)}"
        audio = sealed_audio(rnd.randrange(2**24), rnd.choice(WRITER_SAMPLES))
        cache.cache_data(harness_key(cache, name), audio, name)


def writer_killed_mid_write(cache_dir: str, seed: int) -> None:
    """Write a 20 s entry but stop halfway through its temp file, call :func:`ready` and hang:
    the parent's SIGKILL then lands in the middle of a write for certain, not by chance."""
    cache = SyncTTSCache(cache_dir, sample_rate=16000)

    def half_then_hang(fd: int, buffers: Sequence[bytes | memoryview]) -> int:
        data = b"".join(buffers)
        os.write(fd, data[: len(data) // 2])
        ready()
        time.sleep(600)
        raise AssertionError("the parent should have killed this writer")

    setattr(os, "writev", half_then_hang)  # noqa: B010 - in this throw-away process only
    name = f"private {seed} torn"
    cache.cache_data(harness_key(cache, name), sealed_audio(seed, WRITER_SAMPLES[-1]), name)
    raise AssertionError("the store wrote without os.writev: no write was interrupted")


#: The mixed load's keys: "shared 0".."shared 23" for every process, 12 private to each.
SHARED_KEYS, PRIVATE_KEYS = 24, 12


def mixed_load(
    cache_dir: str,
    worker: int,
    *,
    gate: Gate,
    seed: int,
    limit: int | None,
    clear_share: float,
    operations: int | None = None,
    seconds: float | None = None,
    tasks: int = 8,
) -> dict[str, Any]:
    """One process of the mixed load; returns what it did and saw, as counts.

    ``tasks`` concurrent tasks each run a seeded mix of operations, ``operations`` times or for
    ``seconds``: writes of sealed entries of 50 ms to 2 s (40 %; 60 % of them to shared keys),
    reads (45 %), status checks of the shared keys, and ``clear_cache`` (``clear_share``). A read
    that is not sealed counts as ``corrupt_reads``, any exception as ``unexpected_errors``, and
    ``writes_given_up`` are the ``write_failures`` that concurrent clears or cleanups caused.

    Then the process waits at ``gate`` until every process is done, and writes one more entry
    through a new cache object, which trusts no size it counted before (a process trusts the
    headroom it counted for up to 2 s): the last cleanups run after every other write, so the
    cache ends within its limit, but for the last writes that raced the last cleanup.
    """
    cache = TTSCache(cache_dir, max_size_bytes=limit, sample_rate=16000)
    counts = dict.fromkeys(("writes", "write_failures", "hits", "misses", "statuses", "clears",
                            "corrupt_reads", "unexpected_errors"), 0)  # fmt: skip
    errors: list[str] = []
    deadline = None if seconds is None else time.monotonic() + seconds
    shared_names = [f"shared {index}" for index in range(SHARED_KEYS)]

    async def task(number: int) -> None:
        rnd = random.Random(seed * 1000 + worker * 100 + number)
        done = 0
        while (operations is None or done < operations) and (
            deadline is None or time.monotonic() < deadline
        ):
            done += 1
            op = rnd.random()
            shared = rnd.random() < 0.6
            name = (
                f"shared {rnd.randrange(SHARED_KEYS)}"
                if shared
                else f"private {worker} {rnd.randrange(PRIVATE_KEYS)}"
            )
            try:
                if op < 0.4:
                    audio = sealed_audio(rnd.randrange(2**24), rnd.choice([800, 8000, 32000]))
                    ok = await cache.cache_data(harness_key(cache, name), audio, name)
                    counts["writes" if ok else "write_failures"] += 1
                elif op < 0.85:
                    got = await cache.get_cached_data(harness_key(cache, name))
                    if got is None:
                        counts["misses"] += 1
                    else:
                        counts["hits" if is_sealed(got) else "corrupt_reads"] += 1
                elif op < 1 - clear_share:
                    status = await cache.get_cache_status(shared_names, {"harness": "stress"})
                    assert len(status.cache_keys) == SHARED_KEYS
                    counts["statuses"] += 1
                else:
                    assert await cache.clear_cache(), "clear_cache failed"
                    counts["clears"] += 1
            except Exception as exc:
                counts["unexpected_errors"] += 1
                errors.append(repr(exc))

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for number in range(tasks):
                group.start_soon(task, number)

    with CacheLogCounter() as logged:
        anyio.run(main)
        gate.arrive("loaded")
        gate.wait("loaded")
        fresh = SyncTTSCache(cache_dir, max_size_bytes=limit, sample_rate=16000)
        name = f"private {worker} last"
        audio = sealed_audio(random.Random(seed * 1000 + worker).randrange(2**24), 32000)
        counts["writes" if fresh.cache_data(harness_key(fresh, name), audio, name) else
               "write_failures"] += 1  # fmt: skip
    return {**counts, "corrupt_files_read": logged.corrupt, "writes_given_up": logged.given_up,
            "errors": errors[:5]}  # fmt: skip


class _GatedModel(CountingModel):
    """A counting model that waits at the gate of a segment's key before synthesising it."""

    def __init__(self, gate: Gate, arrive: bool) -> None:
        super().__init__()
        self.gate, self.arrive = gate, arrive
        self.key_of: dict[str, str] = {}

    def inference(
        self,
        text: str,
        gender: str | None = None,
        pitch: str | None = None,
        speed: str | None = None,
    ) -> npt.NDArray[np.float32]:
        key = self.key_of[text]
        if self.arrive:
            self.gate.arrive(key)
        self.gate.wait(key)
        return super().inference(text, gender, pitch, speed)


class _GatedLock:
    """A :class:`FileSynthesisLock` whose lockers arrive at the key's gate before queuing."""

    def __init__(self, lock: FileSynthesisLock, gate: Gate) -> None:
        self.lock, self.gate = lock, gate

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[bool]:
        self.gate.arrive(key)
        async with self.lock.hold(key) as held:
            yield held


def long_text_worker(
    cache_dir: str,
    gate: Gate,
    *,
    locked: bool,
    text: str,
    params: dict[str, Any],
    max_chars: int,
) -> dict[str, int]:
    """``LongTextTTS.generate(text)`` in one of the ``gate.parties`` processes doing it at once;
    returns the model's calls per segment.

    The overlap is forced: a segment's synthesis waits at ``gate`` until every process has reached
    that segment, that is (without the lock) is about to synthesise it too, or (with the lock, in
    ``<cache_dir>/locks``) is queued on its lock. So without the lock every process synthesises
    every segment, and with it the others are all waiting while the holder synthesises.
    """
    model = _GatedModel(gate, arrive=not locked)
    lock = FileSynthesisLock(os.path.join(cache_dir, "locks"), poll=0.01)
    tts = LongTextTTS(model, cache_dir=cache_dir, segmenter=TextSegmenter(max_chars=max_chars),
                      cross_process_lock=_GatedLock(lock, gate) if locked else False)  # fmt: skip
    key_params = tts.key_params(params)
    model.key_of = {segment: tts.cache.generate_cache_key(segment, key_params)
                    for segment in tts.segmenter.segment_text(text)}  # fmt: skip
    anyio.run(tts.generate, text, params)
    return dict(model.calls)


def hold_lock(directory: str, key: str) -> None:
    """Take the synthesis lock of ``key``, call :func:`ready` and hang until killed."""

    async def hold() -> None:
        async with FileSynthesisLock(directory).hold(key) as held:
            assert held
            ready()
            await anyio.sleep(600)

    anyio.run(hold)


def attempts_as_nobody(cache_dir: str, readable_key: str, refused_key: str) -> dict[str, bool]:
    """Become the user ``nobody`` (needs root), then use a cache that root created."""
    os.setgid(65534)
    os.setuid(65534)
    cache = SyncTTSCache(cache_dir, sample_rate=16000)
    refused = cache.cache_data(refused_key, sealed_audio(2, 1600), "nobody's entry") is False
    return {
        "write refused": refused,
        "entry read whole": is_sealed(cache.get_cached_data(readable_key)),
        "refused entry missing": cache.get_cached_data(refused_key) is None,
    }
