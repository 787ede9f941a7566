"""Hypothesis drives the public API with hostile values: only documented errors, nothing written."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sparktts_cache import CacheError, SyncTTSCache, TextSegmenter

from .helpers import files_under

any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
hostile_texts = st.one_of(
    st.text(any_char, max_size=50),  # surrogates, controls, NULs, combining marks
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "\u200b", "\u2029\u2029", "..."]),
    st.just("long sentence. " * 20_000),  # about 300,000 characters
    st.none(), st.integers(), st.binary(max_size=10),
)  # fmt: skip
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(any_char, max_size=10),
    st.binary(max_size=4), st.sampled_from([object(), {1, 2}, 1j, Path("/x"), np.float32(1)]),
)  # fmt: skip
values = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.one_of(st.text(any_char, max_size=5), st.integers()), inner, max_size=3
        )
    ),
    max_leaves=8,
)
DEEP: Any = "x"
for _ in range(40):
    DEEP = [DEEP]
hostile_params = st.one_of(
    st.none(),
    st.dictionaries(st.text(any_char, max_size=8).filter(lambda n: n != "prompt_speech_path"),
                    values, max_size=4),
    st.lists(st.integers(), max_size=2),
    st.just({"deep": DEEP}),
    st.just({"prompt_speech_path": "/nonexistent/voice.wav"}),
)  # fmt: skip
hostile_audio = st.one_of(
    hnp.arrays(
        dtype=st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(), hnp.unicode_string_dtypes()),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    ),
    hnp.arrays(np.float32, st.integers(1, 50), elements=st.floats(width=32)),  # NaN and inf
    hnp.arrays(">f8", st.integers(1, 50)),
    st.builds(lambda a: a[::2], hnp.arrays(np.float32, st.integers(2, 50))),  # non-contiguous
    st.lists(st.floats(), max_size=3), st.none(), st.text(max_size=3),
)  # fmt: skip
hostile_keys = st.one_of(
    st.text(any_char, max_size=40), st.text("0123456789abcdef", min_size=32, max_size=32),
    st.sampled_from(["../../etc/passwd", "/" * 32, "." * 32, "0" * 31 + "/", "A" * 32]),
    st.binary(max_size=32), st.integers(), st.none(),
)  # fmt: skip

relaxed = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> SyncTTSCache:
    return SyncTTSCache(tmp_path_factory.mktemp("hostile"))


@relaxed
@given(hostile_texts, hostile_params)
def test_keys(cache: SyncTTSCache, text: Any, params: Any) -> None:
    try:
        key = cache.generate_cache_key(text, params)
    except CacheError:
        return
    assert len(key) == 32 and key == cache.generate_cache_key(text, params)


@relaxed
@given(hostile_keys, hostile_audio, hostile_texts, hostile_params)
def test_cache_data_writes_whole_entries_or_nothing(
    cache: SyncTTSCache, key: Any, audio: Any, text: Any, params: Any
) -> None:
    before = files_under(cache.cache_dir)
    try:
        stored = cache.cache_data(key, audio, text, params)
    except CacheError:
        assert files_under(cache.cache_dir) == before, "a rejected call wrote something"
        return
    assert stored is True
    got = cache.get_cached_data(key)
    assert got is not None and got.dtype == np.float32 and got.ndim == 1
    reference = np.asarray(audio).reshape(-1)
    if reference.dtype == np.int16:
        reference = reference.astype(np.float32) / 32768
    np.testing.assert_array_equal(got, reference.astype(np.float32))
    assert all(math.isfinite(x) for x in got[:100])


@relaxed
@given(hostile_keys)
def test_reads_with_any_key(cache: SyncTTSCache, key: Any) -> None:
    before = files_under(cache.cache_dir)
    try:
        cache.get_cached_data(key)
    except CacheError:
        pass
    try:
        cache.get_entry(key)
    except CacheError:
        pass
    assert files_under(cache.cache_dir) == before


@relaxed
@given(st.lists(hostile_texts, max_size=5) | hostile_texts, hostile_params)
def test_status(cache: SyncTTSCache, segments: Any, params: Any) -> None:
    try:
        status = cache.get_cache_status(segments, params)
    except CacheError:
        return
    assert len(status.cache_keys) == len(segments)


@relaxed
@given(hostile_texts, st.integers(min_value=-5, max_value=400))
def test_segmenter(text: Any, limit: int) -> None:
    try:
        segments = TextSegmenter(max_chars=limit).segment_text(text)
    except (ValueError, TypeError):
        return
    assert all(segment.strip() for segment in segments)
