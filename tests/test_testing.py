"""The public test helpers of sparktts_cache.testing: sealed audio."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sparktts_cache.testing import is_sealed, sealed_audio

WHOLE = sealed_audio(1234, 16_000)
OTHER = sealed_audio(99, 16_000)


def test_sealed_audio_is_deterministic_float32_mono_within_range() -> None:
    assert WHOLE.dtype == np.float32 and WHOLE.shape == (16_000,)
    np.testing.assert_array_equal(sealed_audio(1234, 16_000), WHOLE)
    assert np.abs(WHOLE).max() < 0.11 and not np.array_equal(WHOLE, OTHER)
    assert len(sealed_audio(1)) == 4000  # 0.25 s at 16 kHz
    assert is_sealed(WHOLE) and is_sealed(sealed_audio(0, 2)) and is_sealed(sealed_audio(2**24 - 1))


@pytest.mark.parametrize(
    "audio",
    [None, WHOLE[:8000], WHOLE[:-1], np.concatenate([WHOLE, WHOLE[:1]]),
     np.concatenate([WHOLE[:8000], OTHER[8000:]]), np.concatenate([OTHER[:2], WHOLE[2:]]),
     np.zeros(16_000, np.float32), WHOLE.astype(np.float64), WHOLE.reshape(-1, 1), WHOLE[:1]],
    ids=["a miss", "truncated to half", "one sample short", "one sample long",
         "two writers' halves", "another's seal", "zeros", "float64", "a column", "one sample"],
)  # fmt: skip
def test_is_sealed_refuses_anything_but_the_whole(audio: npt.NDArray[Any] | None) -> None:
    assert not is_sealed(audio)


def test_one_changed_sample_breaks_the_seal() -> None:
    changed = WHOLE.copy()
    changed[12_345] = np.nextafter(changed[12_345], np.float32(1))
    assert not is_sealed(changed)


@pytest.mark.parametrize(("seed", "samples"), [(-1, 100), (2**24, 100), (1, 1), (1, 2**24)])
def test_seeds_and_lengths_that_cannot_be_carried_are_refused(seed: int, samples: int) -> None:
    with pytest.raises(ValueError):
        sealed_audio(seed, samples)
