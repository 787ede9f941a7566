"""Stand-in TTS models for the tests: deterministic, counting, optionally slow or failing."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import xxhash


def audio_for(text: str, gender: str | None = None, version: int = 0) -> npt.NDArray[np.float32]:
    """The audio the stand-in model makes for ``text``: deterministic, length from the text."""
    seed = xxhash.xxh64_intdigest(f"{text}|{gender}|{version}".encode())
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(100 + 10 * len(text)) * 0.1).astype(np.float32)


class CountingModel:
    """Counts calls per text and the most calls running at once.

    ``before_call``, if set, is called with each call's number (1, 2, ...) in the calling thread
    before the call does anything else: a test uses it to hold calls at a barrier or to cancel
    the caller at a chosen call, instead of hoping that a delay lines things up.
    """

    sample_rate = 16000

    def __init__(
        self,
        delay: float = 0.0,
        fail_on: str | None = None,
        bad_on: str | None = None,
        before_call: Callable[[int], object] | None = None,
    ):
        self.delay = delay
        self.fail_on = fail_on
        self.bad_on = bad_on
        self.before_call = before_call
        self.calls: collections.Counter[str] = collections.Counter()
        self.received: list[dict[str, Any]] = []
        self.version = 0  # bump to make the model produce different audio for the same text
        self._lock = threading.Lock()
        self._active = 0
        self.peak = 0

    @property
    def cache_identity(self) -> dict[str, Any]:
        return {"engine": "counting"}

    def inference(
        self,
        text: str,
        gender: str | None = None,
        pitch: str | None = None,
        speed: str | None = None,
    ) -> npt.NDArray[np.float32]:
        with self._lock:
            self.calls[text] += 1
            number = self.total_calls
            self.received.append({"gender": gender, "pitch": pitch, "speed": speed})
            self._active += 1
            self.peak = max(self.peak, self._active)
        try:
            if self.before_call is not None:
                self.before_call(number)
            if self.delay:
                time.sleep(self.delay)
            if self.fail_on is not None and self.fail_on in text:
                raise RuntimeError(f"model failed on {text!r}")
            if self.bad_on is not None and self.bad_on in text:
                return np.array([0.0, np.nan], dtype=np.float32)
            return audio_for(text, gender, self.version)
        finally:
            with self._lock:
                self._active -= 1

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())
