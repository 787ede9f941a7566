"""The alternatives the cache is measured against, re-created minimally."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def read_raw(path: str) -> npt.NDArray[np.float32]:
    """The floor of a read: one file read wrapped with ``np.frombuffer``."""
    with open(path, "rb") as file:
        return np.frombuffer(file.read(), dtype=np.float32)


def write_raw(directory: str, name: str, audio: npt.NDArray[np.float32]) -> None:
    """The floor of a write: the raw samples to a temp file, renamed into place."""
    fd, temp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(audio.tobytes())
        os.replace(temp, os.path.join(directory, name))
    except BaseException:
        os.unlink(temp)
        raise


def write_raw_fsync(directory: str, name: str, audio: npt.NDArray[np.float32]) -> None:
    fd, temp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "wb") as file:
        file.write(audio.tobytes())
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, os.path.join(directory, name))


class ObviousCache:
    """The first version's design: md5 keys, one flat directory of ``.npy`` files, and a SQLite
    index updated on every hit. Status comes from the index, as it did."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._lock = threading.Lock()
        self.db = sqlite3.connect(root / "index.db", check_same_thread=False)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, path TEXT, text TEXT, "
            "hits INTEGER DEFAULT 0, last_access REAL)"
        )
        self.db.commit()

    @staticmethod
    def key(text: str, params: Mapping[str, Any]) -> str:
        return hashlib.md5((text + json.dumps(params, sort_keys=True)).encode()).hexdigest()

    def put(self, key: str, audio: npt.NDArray[np.float32], text: str) -> None:
        path = self.root / f"{key}.npy"
        np.save(path, audio)
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO entries (key, path, text, last_access) VALUES (?, ?, ?, 0)",
                (key, str(path), text),
            )
            self.db.commit()

    def get(self, key: str) -> npt.NDArray[np.float32] | None:
        with self._lock:
            row = self.db.execute("SELECT path FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        audio: npt.NDArray[np.float32] = np.load(row[0])
        with self._lock:
            self.db.execute(
                "UPDATE entries SET hits = hits + 1, last_access = julianday('now') WHERE key = ?",
                (key,),
            )
            self.db.commit()
        return audio

    def status(self, segments: list[str], params: Mapping[str, Any]) -> list[bool]:
        keys = [self.key(segment, params) for segment in segments]
        with self._lock:
            return [
                self.db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone()
                is not None
                for key in keys
            ]
