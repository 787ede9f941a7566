"""Audio round trips: property tests over dtypes, shapes, lengths and values."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sparktts_cache import InvalidAudioError, SyncTTSCache, as_mono_float32

lengths = st.integers(min_value=1, max_value=5000)
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
float32_audio = hnp.arrays(np.dtype("<f4"), lengths, elements=finite32)
float64_audio = hnp.arrays(
    np.dtype("<f8"), lengths, elements=st.floats(-1e30, 1e30, allow_nan=False)
)
int16_audio = hnp.arrays(np.dtype("<i2"), lengths)
any_endian = st.sampled_from(["<", ">"])

relaxed = settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> SyncTTSCache:
    return SyncTTSCache(tmp_path_factory.mktemp("wav"), sample_rate=16000)


@pytest.fixture(scope="module")
def flac(tmp_path_factory: pytest.TempPathFactory) -> SyncTTSCache:
    return SyncTTSCache(tmp_path_factory.mktemp("flac"), audio_format="flac", sample_rate=16000)


def round_trip(cache: SyncTTSCache, audio: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    key = cache.generate_cache_key(f"audio {audio.dtype} {audio.shape} {hash(audio.tobytes())}")
    assert cache.cache_data(key, audio, "round trip")
    got = cache.get_cached_data(key)
    assert got is not None and got.dtype == np.float32 and got.ndim == 1
    return got


@relaxed
@given(float32_audio, any_endian, st.booleans())
def test_float32_is_bit_exact(
    wav: SyncTTSCache, audio: npt.NDArray[Any], endian: str, column: bool
) -> None:
    audio = audio.astype(endian + "f4")
    sent = audio.reshape(-1, 1) if column else audio
    got = round_trip(wav, sent)
    assert got.tobytes() == audio.astype("<f4").tobytes()  # bit for bit, -0.0 included


@relaxed
@given(float64_audio)
def test_float64_becomes_float32(wav: SyncTTSCache, audio: npt.NDArray[Any]) -> None:
    np.testing.assert_array_equal(round_trip(wav, audio), audio.astype(np.float32))


@relaxed
@given(int16_audio)
def test_int16_is_scaled(wav: SyncTTSCache, audio: npt.NDArray[Any]) -> None:
    np.testing.assert_array_equal(round_trip(wav, audio), audio.astype(np.float32) / 32768)


@relaxed
@given(int16_audio)
def test_flac_keeps_int16_audio_exactly(flac: SyncTTSCache, audio: npt.NDArray[Any]) -> None:
    np.testing.assert_array_equal(round_trip(flac, audio), audio.astype(np.float32) / 32768)


@relaxed
@given(hnp.arrays(np.dtype("<f4"), lengths, elements=st.floats(-1, 1, width=32)))
def test_flac_is_within_one_step(flac: SyncTTSCache, audio: npt.NDArray[Any]) -> None:
    got = round_trip(flac, audio)
    assert np.max(np.abs(got - np.clip(audio, -1, 32767 / 32768))) <= 0.5 / 32768 + 1e-9


def test_caller_array_is_never_modified() -> None:
    audio = np.array([1, 2, 3], dtype=np.int16)
    as_mono_float32(audio)
    np.testing.assert_array_equal(audio, [1, 2, 3])


def test_returned_array_is_writable_and_owned(wav: SyncTTSCache) -> None:
    got = round_trip(wav, np.ones(10, np.float32))
    got[0] = 5.0
    key = wav.generate_cache_key(f"audio float32 (10,) {hash(np.ones(10, np.float32).tobytes())}")
    again = wav.get_cached_data(key)
    assert again is not None and again[0] == 1.0


def test_flac_rejects_rates_it_cannot_store(flac: SyncTTSCache) -> None:
    key = flac.generate_cache_key("too fast")
    with pytest.raises(InvalidAudioError, match="655350"):
        flac.cache_data(key, np.zeros(10, np.float32), "too fast", sample_rate=700_000)
    assert flac.get_cached_data(key) is None
