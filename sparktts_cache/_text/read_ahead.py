"""The bounded window behind ``LongTextTTS.stream``: segments read and synthesised ahead of the
consumer, in text order, never more than ``window`` of them held at once.

An async generator cannot own a task group: it would hold the group's cancel scope open across
each ``yield``, inside whatever task iterates it, and a consumer that stops without closing it
(``break``, a cancelled request, a disconnected client) would leave that scope on its task's stack
and the workers running until the generator is garbage-collected and finalised in another task,
where leaving the scope fails. So the work runs in one detached task of its own (an asyncio task,
or a trio system task), which owns the task group of the workers; the generator only waits for
each segment's result and, however it ends, cancels that task and waits until every worker is
gone (see :meth:`ReadAhead.close`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Sequence

import anyio
import numpy as np
import numpy.typing as npt
from anyio.abc import ObjectReceiveStream, ObjectSendStream

__all__ = ["ReadAhead", "spawn_detached"]

log = logging.getLogger("sparktts_cache")

Audio = npt.NDArray[np.float32]

#: Detached asyncio tasks, referenced until they end (the loop keeps only weak references).
_DETACHED: set[asyncio.Task[None]] = set()


def spawn_detached(run: Callable[[], Awaitable[None]]) -> None:
    """Run ``run()`` in a new task of the current event loop that no task group owns.

    ``run`` must not raise (a trio system task that raises crashes the run): it catches what it
    can and ends when cancelled.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_task():
        trio.lowlevel.spawn_system_task(run, context=contextvars.copy_context())
        return

    async def body() -> None:
        await run()

    task = asyncio.get_running_loop().create_task(body())
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)


class _Slot:
    """One segment's result: set once, by the reader or a worker, taken once by the consumer."""

    __slots__ = ("audio", "done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.audio: Audio | None = None
        self.error: BaseException | None = None


class ReadAhead:
    """Results of segments ``0 .. count - 1``, each read or made ahead of the consumer's request.

    Args:
        cached: per segment, whether to read it (else it is made).
        keys: per segment, its cache key: a later segment with the key of one made here is made
            with ``first=False`` (so it is read, or shared), after that one if it is in progress.
        read: the audio of the given segments from the cache, ``None`` for a miss (then made).
        make: a segment's audio, made (``first`` is False for a repeat of a key made here).
        window: how many segments may be read, being made or ready and not yet taken, at most.
        workers: how many segments are made at once, at most (in text order).

    Segments are read in runs of consecutive cached ones (the first run is one segment, so the
    first result comes at once; each next run is twice as long, up to half the window), made by
    ``workers`` tasks taking them in text order. After an error in one segment nothing past it is
    started; :meth:`next` raises the error when it reaches that segment.
    """

    #: Read-ahead tasks started and not yet ended, in this process (for tests and statistics).
    running = 0

    def __init__(
        self,
        cached: Sequence[bool],
        keys: Sequence[str],
        *,
        read: Callable[[list[int]], Awaitable[list[Audio | None]]],
        make: Callable[[int, bool], Awaitable[Audio]],
        window: int,
        workers: int,
    ) -> None:
        self._cached = cached
        self._keys = keys
        self._read = read
        self._make = make
        self._window = window
        self._workers = max(1, min(workers, window))
        self._space = anyio.Semaphore(window)
        self._slots: dict[int, _Slot] = {}
        self._failed_at = math.inf  # the first segment whose reading or making failed
        self._scope = anyio.CancelScope()
        self._finished = anyio.Event()
        self._over = False
        self._crash: BaseException | None = None

    def start(self) -> None:
        ReadAhead.running += 1
        try:
            spawn_detached(self._run)
        except BaseException:
            ReadAhead.running -= 1
            raise

    async def next(self, index: int) -> Audio:
        """Segment ``index``'s audio, once ready (call with 0, 1, 2, ... in turn)."""
        slot = self._slot(index)
        await slot.done.wait()
        del self._slots[index]
        audio, error = slot.audio, slot.error
        slot.audio = None  # a repeat of this key may keep the slot: not the audio
        self._space.release()
        if error is not None:
            raise error
        if audio is None:  # the task ended without a result for it: it crashed
            raise RuntimeError("the read-ahead task stopped") from self._crash
        return audio

    async def close(self) -> None:
        """Stop reading and making, and wait until every worker is gone (shielded from
        cancellation). A model call in progress cannot be interrupted: it runs to the end and its
        segment is cached, as a cancelled ``generate`` does."""
        self._scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._finished.wait()

    # -- the detached task -------------------------------------------------------------------

    def _slot(self, index: int) -> _Slot:
        slot = self._slots.get(index)
        if slot is None:
            slot = self._slots[index] = _Slot()
            if self._over:
                slot.done.set()
        return slot

    async def _run(self) -> None:
        try:
            with self._scope:
                send, receive = anyio.create_memory_object_stream[tuple[int, _Slot | None, bool]](
                    math.inf  # bounded all the same: each job holds a place in the window
                )
                async with anyio.create_task_group() as group:
                    for _ in range(self._workers):
                        group.start_soon(self._work, receive.clone())
                    receive.close()
                    async with send:
                        await self._produce(send)
        except Exception as exc:  # a bug: the consumer must not wait for ever
            log.exception("the read-ahead of a stream failed")
            self._crash = exc
        finally:
            ReadAhead.running -= 1
            self._over = True
            for slot in self._slots.values():
                slot.done.set()
            self._finished.set()

    async def _produce(self, send: ObjectSendStream[tuple[int, _Slot | None, bool]]) -> None:
        count = len(self._keys)
        made_here: set[str] = set()  # keys this stream has made (or is making)
        in_progress: dict[str, _Slot] = {}  # the first slot of such keys, until it is done

        async def make(index: int) -> None:
            nonlocal in_progress
            key = self._keys[index]
            if key not in made_here:
                made_here.add(key)
                if len(in_progress) > 2 * self._window:  # keep only the unfinished (the window)
                    in_progress = {k: v for k, v in in_progress.items() if not v.done.is_set()}
                in_progress[key] = self._slot(index)
                await send.send((index, None, True))
                return
            earlier = in_progress.get(key)
            if earlier is not None and earlier.done.is_set():
                del in_progress[key]
                earlier = None
            await send.send((index, earlier, False))

        # Runs of reads grow 1, 2, 4... up to half the window: the first segment comes at once,
        # and later ones are read in runs (one worker-thread call each) while the consumer still
        # has the other half of the window ready, rather than one by one as places free up.
        index, run_length, longest = 0, 1, max(1, self._window // 2)
        while index < min(count, self._failed_at):
            await self._space.acquire()
            if not self._cached[index]:
                await make(index)
                index += 1
                continue
            run = [index]
            while len(run) < run_length and run[-1] + 1 < count and self._cached[run[-1] + 1]:
                # Never a deadlock: the places this waits for are the ready segments before
                # ``index``, which the consumer takes (a run is at most the window).
                await self._space.acquire()
                run.append(run[-1] + 1)
            run_length = min(2 * run_length, longest)
            try:
                audios = await self._read(run)
            except Exception as exc:
                self._fail(run[0], exc)
                return
            for position, audio in zip(run, audios, strict=True):
                if audio is None:  # damaged, or gone since the status: made after all
                    await make(position)
                else:
                    slot = self._slot(position)
                    slot.audio = audio
                    slot.done.set()
            index = run[-1] + 1

    async def _work(self, receive: ObjectReceiveStream[tuple[int, _Slot | None, bool]]) -> None:
        async with receive:
            async for index, earlier, first in receive:
                if index > self._failed_at:
                    continue  # the consumer stops at the failed segment: never reaches this
                try:
                    if earlier is not None:
                        await earlier.done.wait()
                    audio = await self._make(index, first)
                except Exception as exc:
                    self._fail(index, exc)
                    continue
                slot = self._slot(index)
                slot.audio = audio
                slot.done.set()

    def _fail(self, index: int, error: Exception) -> None:
        self._failed_at = min(self._failed_at, index)
        slot = self._slot(index)
        slot.error = error
        slot.done.set()
