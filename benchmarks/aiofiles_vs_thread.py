"""Is aiofiles worth using in the cache? aiofiles vs one worker-thread call per operation.

Command: ``.venv/bin/python -m benchmarks.aiofiles_vs_thread``

aiofiles runs every file operation (open, read, close, stat) as its own thread hop; the cache hands
each whole operation to one worker thread instead. Prints the median time per operation of each,
and the ratio.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

import aiofiles
import aiofiles.os
import anyio.to_thread
import numpy as np

REPEATS = 7
FILES = 200


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


async def _time(op: Callable[[str], Awaitable[object]], paths: list[str]) -> float:
    runs = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        for path in paths:
            await op(path)
        runs.append((time.perf_counter() - began) / len(paths))
    return statistics.median(runs)


def _make_files(root: str) -> list[str]:
    paths = []
    for index in range(FILES):
        path = os.path.join(root, f"{index}.bin")
        with open(path, "wb") as file:
            file.write(np.zeros(16000 * 5, np.float32).tobytes())  # 5 s of 16 kHz audio
        paths.append(path)
    return paths


async def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as root:
        paths = _make_files(root)

        async def aiofiles_read(path: str) -> bytes:
            async with aiofiles.open(path, "rb") as file:
                return await file.read()

        async def thread_read(path: str) -> bytes:
            return await anyio.to_thread.run_sync(_read, path)

        async def thread_exists(path: str) -> bool:
            return await anyio.to_thread.run_sync(os.path.exists, path)

        results = {
            "read: aiofiles open+read+close": await _time(aiofiles_read, paths),
            "read: one worker-thread call": await _time(thread_read, paths),
            "exists: aiofiles.os.path.exists": await _time(aiofiles.os.path.exists, paths),
            "exists: one worker-thread call": await _time(thread_exists, paths),
        }
    return results


if __name__ == "__main__":
    figures = asyncio.run(main())
    for name, seconds in figures.items():
        print(f"{name:40s} {seconds * 1e6:8.1f} us")
    read = figures["read: aiofiles open+read+close"] / figures["read: one worker-thread call"]
    print(f"aiofiles read is {read:.2f}x the time of one worker-thread call")
