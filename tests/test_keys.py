"""Key canonicalisation: unit and property tests."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktts_cache import (
    InvalidKeyError,
    InvalidParamsError,
    InvalidTextError,
    UnsupportedTypeError,
    check_key,
    generate_cache_key,
    normalize_text,
)
from sparktts_cache._core.cache import build_status
from sparktts_cache._core.gil import CHUNK
from sparktts_cache._core.keys import canonical_params, keys_for_segments

json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
param_names = st.text(min_size=1).filter(lambda name: name != "prompt_speech_path")
params_strategy = st.dictionaries(param_names, json_values, max_size=6)
texts = st.text(min_size=1).filter(lambda t: t.strip() != "")


def test_known_key_is_stable_across_releases() -> None:
    # If this changes, every cache on disk is invalidated: bump KEY_SCHEMA_VERSION on purpose.
    assert generate_cache_key("Hello world", {"gender": "female"}) == (
        "70be4771edc9722b767794d81cac63cc"
    )


@pytest.mark.parametrize("hash_seed", ["1", "12345"])
def test_key_is_the_same_in_another_process_with_another_hash_seed(hash_seed: str) -> None:
    params = {"b": [1, 2.5, {"z": True, "a": None}], "a": "x", "temperature": 0.8}
    here = generate_cache_key("Grüße, 世界", params)
    code = (
        "from sparktts_cache import generate_cache_key;"
        f"print(generate_cache_key('Grüße, 世界', {params!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == here, out.stderr


@given(texts, params_strategy, st.randoms())
def test_key_ignores_dict_order_and_none_values(
    text: str, params: dict[str, Any], rnd: Any
) -> None:
    key = generate_cache_key(text, params)
    items = list(params.items())
    rnd.shuffle(items)
    assert generate_cache_key(text, dict(items)) == key
    assert generate_cache_key(text, {**dict(items), "__absent__": None}) == key
    assert len(key) == 32 and check_key(key) == key


@given(texts)
def test_whitespace_and_nfc_normalisation(text: str) -> None:
    key = generate_cache_key(text)
    assert generate_cache_key(f"  {text}\n\t") == key
    assert generate_cache_key(text.replace(" ", "  ")) == key
    normalized = normalize_text(text)
    assert normalize_text(normalized) == normalized
    assert generate_cache_key(normalized) == key


def test_nfc_equivalent_texts_share_a_key() -> None:
    assert generate_cache_key("caf\u00e9") == generate_cache_key("cafe\u0301")
    assert generate_cache_key("cafe") != generate_cache_key("caf\u00e9")


def test_integral_floats_equal_ints_but_bools_do_not() -> None:
    assert generate_cache_key("x", {"speed": 1.0}) == generate_cache_key("x", {"speed": 1})
    assert generate_cache_key("x", {"speed": -0.0}) == generate_cache_key("x", {"speed": 0})
    assert generate_cache_key("x", {"speed": True}) != generate_cache_key("x", {"speed": 1})
    assert generate_cache_key("x", {"speed": 0.1}) != generate_cache_key("x", {"speed": 0.1000001})
    assert generate_cache_key("x", {"v": [1, 2]}) == generate_cache_key("x", {"v": (1, 2)})


@given(params_strategy, params_strategy)
def test_different_params_give_different_keys(a: dict[str, Any], b: dict[str, Any]) -> None:
    from sparktts_cache._core.keys import key_prefix

    if key_prefix(a) != key_prefix(b):
        assert generate_cache_key("same text", a) != generate_cache_key("same text", b)


def test_text_and_params_cannot_be_confused() -> None:
    # The separator between parameters and text is unambiguous.
    assert generate_cache_key("b", {"a": "x"}) != generate_cache_key('x"}\nb', {"a": ""})


@pytest.mark.parametrize("text", ["", " ", "\n\t\u3000", "\u2028"])
def test_blank_text_is_rejected(text: str) -> None:
    with pytest.raises(InvalidTextError, match="blank"):
        generate_cache_key(text)


@pytest.mark.parametrize(
    ("text", "params", "error"),
    [
        (b"bytes", {}, UnsupportedTypeError),
        (None, {}, UnsupportedTypeError),
        ("a\ud800b", {}, InvalidTextError),
        ("x", {"s": {1, 2}}, UnsupportedTypeError),
        ("x", {1: "int name"}, UnsupportedTypeError),
        ("x", {"b": b"bytes"}, UnsupportedTypeError),
        ("x", {"f": float("nan")}, InvalidParamsError),
        ("x", {"f": float("-inf")}, InvalidParamsError),
        ("x", {"i": 2**63}, InvalidParamsError),
        ("x", {"s": "a\udcffb"}, InvalidParamsError),
        ("x", ["not", "a", "mapping"], UnsupportedTypeError),
        ("x", {"prompt_speech_path": 3}, UnsupportedTypeError),
        ("x", {"prompt_speech_path": "/nonexistent/speaker.wav"}, InvalidParamsError),
    ],
)
def test_bad_inputs_raise_documented_errors(text: Any, params: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        generate_cache_key(text, params)


def test_deep_nesting_is_a_clear_error() -> None:
    deep: Any = "leaf"
    for _ in range(200):
        deep = [deep]
    with pytest.raises(InvalidParamsError, match="nested"):
        generate_cache_key("x", {"deep": deep})


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 32, "0" * 31, "0" * 32 + "\n", ""])
def test_check_key_rejects(bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        check_key(bad)


def test_speaker_file_is_keyed_by_content(tmp_path: Path) -> None:
    speaker = tmp_path / "speaker.wav"
    speaker.write_bytes(b"voice one")
    params = {"prompt_speech_path": str(speaker), "gender": None}
    first = generate_cache_key("hi", params)
    moved = tmp_path / "elsewhere" / "renamed.wav"
    moved.parent.mkdir()
    speaker.rename(moved)
    assert generate_cache_key("hi", {"prompt_speech_path": moved}) == first
    other = tmp_path / "speaker.wav"
    other.write_bytes(b"voice two")  # same name, different voice
    assert generate_cache_key("hi", {"prompt_speech_path": str(other)}) != first
    os.utime(moved, ns=(1, 1))  # touched, same content: same key
    assert generate_cache_key("hi", {"prompt_speech_path": str(moved)}) == first


def test_speaker_file_hash_is_memoised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparktts_cache._core import keys

    speaker = tmp_path / "speaker.wav"
    speaker.write_bytes(b"x" * 1000)
    hashed: list[int] = []
    hash_open_file = keys._hash_open_file

    def counting(fd: int, limit: int) -> str | None:
        hashed.append(fd)
        return hash_open_file(fd, limit)

    monkeypatch.setattr(keys, "_digest_memo", {})
    monkeypatch.setattr(keys, "_hash_open_file", counting)
    for index in range(50):
        generate_cache_key(f"text {index}", {"prompt_speech_path": str(speaker)})
    assert len(hashed) == 1


SPEAKER_REFUSAL = (
    "parameter 'prompt_speech_path': {!r} is not a readable regular file of at most 64 MiB"
)


def _hostile_speaker_path(kind: str, tmp_path: Path) -> str:
    from sparktts_cache._core.keys import MAX_SPEAKER_FILE_BYTES

    if kind.startswith("/dev/"):
        return kind
    path = tmp_path / "voice.wav"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "sparse, one byte too big":
        with open(path, "wb") as file:
            file.truncate(MAX_SPEAKER_FILE_BYTES + 1)
    elif kind == "NUL in the name":
        return str(path) + "\0.wav"
    return str(path)  # "missing": nothing there


@pytest.mark.timeout(30)  # the old code hung on /dev/zero, /dev/urandom and a FIFO
@pytest.mark.parametrize(
    "kind",
    ["/dev/zero", "/dev/urandom", "fifo", "directory", "sparse, one byte too big", "missing",
     "NUL in the name"],
)  # fmt: skip
def test_a_speaker_path_that_is_not_a_bounded_regular_file_is_refused_at_once(
    kind: str, tmp_path: Path
) -> None:
    """Only a regular file of at most 64 MiB is hashed; anything else is refused without reading,
    with one message for every case that names the parameter and the path as given and nothing
    the file system said (whether the path exists, what it is, how large)."""
    given = _hostile_speaker_path(kind, tmp_path)
    with pytest.raises(InvalidParamsError) as raised:
        generate_cache_key("hi", {"prompt_speech_path": given})
    assert str(raised.value) == SPEAKER_REFUSAL.format(given)
    assert raised.value.__cause__ is None  # no OSError chained to a traceback either
    assert raised.value.__context__ is None or raised.value.__suppress_context__


def test_a_speaker_file_at_the_limit_is_hashed_in_full(tmp_path: Path) -> None:
    from sparktts_cache._core import keys

    speaker = tmp_path / "long.wav"
    with open(speaker, "wb") as file:
        file.truncate(keys.MAX_SPEAKER_FILE_BYTES)
    expected = "xxh3-128:" + xxhash.xxh3_128_hexdigest(bytes(keys.MAX_SPEAKER_FILE_BYTES))
    assert keys._speaker_file_digest("prompt_speech_path", str(speaker)) == expected
    link = tmp_path / "link.wav"  # checked on the descriptor: a symlink to a file is that file
    link.symlink_to(speaker)
    assert keys._speaker_file_digest("prompt_speech_path", str(link)) == expected


@pytest.mark.skipif(not os.path.isfile("/proc/self/status"), reason="needs Linux's /proc")
def test_a_file_longer_than_it_says_is_read_no_further_than_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sparktts_cache._core import keys

    proc_file = "/proc/self/status"  # a regular file that says it is empty, and holds ~1 KiB
    assert os.stat(proc_file).st_size == 0 and len(Path(proc_file).read_bytes()) > 100
    monkeypatch.setattr(keys, "_digest_memo", {})
    monkeypatch.setattr(keys, "MAX_SPEAKER_FILE_BYTES", 100)
    with pytest.raises(InvalidParamsError, match="not a readable regular file"):
        keys._speaker_file_digest("prompt_speech_path", proc_file)
    monkeypatch.setattr(keys, "MAX_SPEAKER_FILE_BYTES", 1 << 20)
    assert keys._speaker_file_digest("prompt_speech_path", proc_file).startswith("xxh3-128:")


flat_params = st.dictionaries(param_names, json_scalars, max_size=8)


@given(flat_params)
def test_fast_path_for_flat_params_matches_the_full_walk(params: dict[str, Any]) -> None:
    from sparktts_cache._core.keys import _canonical_scalars, _canonical_top

    fast = _canonical_scalars(params)
    assert fast is not None
    assert fast == _canonical_top(params, hash_files=False)
    assert [type(v) for v in fast.values()] == [
        type(v) for v in _canonical_top(params, hash_files=False).values()
    ]


# -- bulk keying -----------------------------------------------------------------------------------

# str.split() also splits on \x1c-\x1f, so those count as (ASCII) whitespace for the key.
ascii_spaces = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\x0b\x0c", "\x1c", "\x1f"])
other_spaces = st.sampled_from(["\xa0", "\u3000", "\u2028", "\x85", " \u2009 "])
ascii_words = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)


def spaced(words: st.SearchStrategy[str], spaces: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Words joined by whitespace runs, with optional whitespace around them."""
    return st.builds(
        lambda lead, parts, trail: lead + "".join(word + space for word, space in parts) + trail,
        st.one_of(st.just(""), spaces),
        st.lists(st.tuples(words, spaces), min_size=1, max_size=4),
        st.one_of(st.just(""), spaces),
    )


ascii_segments = spaced(ascii_words, ascii_spaces)
other_segments = st.one_of(
    texts.filter(lambda text: not text.isascii()),
    st.sampled_from(["cafe\u0301", "\u212b ngstr\u00f6m", " e\u0301\u0323 x "]),  # not NFC
    spaced(ascii_words | st.text(min_size=1, max_size=4), ascii_spaces | other_spaces).filter(
        lambda text: text.strip() != ""
    ),
)


@st.composite
def segment_lists(draw: st.DrawFn, min_chunks: int = 1, max_chunks: int = 3) -> list[str]:
    """Up to ``max_chunks`` chunks' worth of segments, each chunk all-ASCII or mixed at random."""
    ascii_pool = draw(st.lists(ascii_segments, min_size=1, max_size=6))
    other_pool = draw(st.lists(other_segments, min_size=1, max_size=6))
    kinds = draw(st.lists(st.booleans(), min_size=min_chunks, max_size=max_chunks))
    last = draw(st.integers(1, CHUNK + 1))  # may spill into one more chunk
    rnd = draw(st.randoms(use_true_random=False))
    segments: list[str] = []
    for number, all_ascii in enumerate(kinds):
        size = last if number == len(kinds) - 1 else CHUNK
        pool = ascii_pool if all_ascii else ascii_pool + other_pool
        chunk = [rnd.choice(pool) for _ in range(size)]
        if not all_ascii:
            chunk[rnd.randrange(size)] = rnd.choice(other_pool)
        segments += chunk
    return segments


@settings(max_examples=60, deadline=None)
@given(segment_lists(), flat_params)
def test_bulk_keys_equal_generate_cache_key_for_every_segment(
    segments: list[str], params: dict[str, Any]
) -> None:
    expected = [generate_cache_key(text, params) for text in segments]
    assert keys_for_segments(segments, params) == expected
    assert keys_for_segments(segments, params, key_of=generate_cache_key) == expected


# Texts already normalized (keyed without splitting them), "|" included: the fast check joins a
# chunk's texts with "|" and looks for whitespace that normalizing would change.
normalized_ascii = st.lists(ascii_words, min_size=1, max_size=4).map(" ".join)
flaws = st.sampled_from([" ", "  ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f"])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(normalized_ascii, min_size=1, max_size=CHUNK + 3),
    st.none() | st.tuples(st.integers(0), st.sampled_from(["lead", "in", "trail"]), flaws),
)
def test_bulk_keys_of_normalized_texts_with_at_most_one_flaw(
    segments: list[str], flaw: tuple[int, str, str] | None
) -> None:
    if flaw is not None:
        index, where, space = flaw
        index %= len(segments)
        text = segments[index]
        middle = len(text) // 2
        segments[index] = {
            "lead": space + text,
            "in": text[:middle] + space + space + text[middle:],
            "trail": text + space,
        }[where]
    assert keys_for_segments(segments, {"speed": 1.0}) == [
        generate_cache_key(text, {"speed": 1.0}) for text in segments
    ]


@pytest.mark.parametrize("index", [0, 1, CHUNK // 2, CHUNK - 1])
@pytest.mark.parametrize("text", ["| a", "a |", "a||b", "|", " |", "a\x1cb", "a \tb", "a  b"])
def test_a_text_that_looks_like_the_join_is_keyed_as_itself(index: int, text: str) -> None:
    segments = [f"plain|words {number}" for number in range(CHUNK)]
    segments[index] = text
    assert keys_for_segments(segments) == [generate_cache_key(text) for text in segments]


@given(st.lists(ascii_segments | other_segments, max_size=8), params_strategy)
def test_bulk_keys_of_few_segments_with_any_params(
    segments: list[str], params: dict[str, Any]
) -> None:
    assert keys_for_segments(segments, params) == [
        generate_cache_key(text, params) for text in segments
    ]


bad_segments = st.sampled_from(["", " ", "\t\n ", "\x1f", "\u3000", "\xa0\u2028", None, b"x", 3])


@settings(max_examples=60, deadline=None)
@given(segment_lists(min_chunks=2, max_chunks=2), st.data(), bad_segments, st.booleans())
def test_a_bad_segment_raises_naming_its_index(
    segments: list[str], data: st.DataObject, bad: Any, backend_keys: bool
) -> None:
    index = data.draw(st.integers(0, len(segments)), label="index")
    check_bad_segment_is_named(segments, index, bad, backend_keys)


@pytest.mark.parametrize("index", [0, 1, CHUNK - 1, CHUNK, CHUNK + 7, 2 * CHUNK + 1])
@pytest.mark.parametrize("bad", ["", "\t\x1f", "\u3000", None, b"x"])
@pytest.mark.parametrize("other", ["plain words", "caf\u00e9"])
def test_a_bad_segment_in_any_chunk_is_named(index: int, bad: object, other: str) -> None:
    segments = [f"{other} {number}" for number in range(3 * CHUNK)]
    check_bad_segment_is_named(segments, index, bad, backend_keys=False)


def check_bad_segment_is_named(
    segments: list[Any], index: int, bad: object, backend_keys: bool
) -> None:
    segments.insert(index, bad)
    segments.insert(index + 2, bad)  # only the first is named
    error = InvalidTextError if isinstance(bad, str) else UnsupportedTypeError
    key_of = generate_cache_key if backend_keys else None
    with pytest.raises(error, match=rf"^segment {index}: "):
        keys_for_segments(segments, {"speed": 1.0}, key_of=key_of)


def test_bulk_keys_use_the_backends_own_key() -> None:
    calls: list[tuple[object, object]] = []

    def backend_key(text: Any, params: Any) -> str:  # positional, as the seed's backends
        calls.append((text, params))
        if text == "refused":
            raise ValueError("not this one")
        return f"{len(calls):032x}"

    segments = ["a", "b", "a"] * CHUNK
    keys = keys_for_segments(segments, {"p": 1}, key_of=backend_key)
    assert keys == [f"{n:032x}" for n in range(1, len(segments) + 1)]
    assert calls == [(text, {"p": 1}) for text in segments]
    with pytest.raises(ValueError, match=r"^segment 2: not this one$"):
        keys_for_segments(["a", "b", "refused"], None, key_of=backend_key)


def test_bad_params_raise_even_with_no_segments() -> None:
    with pytest.raises(InvalidParamsError):
        keys_for_segments([], {"f": float("nan")})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=3 * CHUNK), st.data())
def test_status_lists_distinct_keys_in_first_occurrence_order(
    picks: list[int], data: st.DataObject
) -> None:
    keys = [f"{pick:032x}" for pick in picks]
    segments = [f"segment {pick} at {index}" for index, pick in enumerate(picks)]
    found = {key: data.draw(st.booleans(), label=key) for key in dict.fromkeys(keys)}
    status = build_status(segments, keys, found)
    first_index = {key: keys.index(key) for key in found}
    assert status.cache_keys == keys
    assert status.cached_keys == [key for key in first_index if found[key]]
    assert status.segments_to_generate == [
        segments[index] for key, index in first_index.items() if not found[key]
    ]


@pytest.mark.parametrize("buckets", [1, 3])
def test_distinct_keys_with_colliding_hashes_are_told_apart(
    monkeypatch: pytest.MonkeyPatch, buckets: int
) -> None:
    import random

    import sparktts_cache._core.cache as core_cache

    rnd = random.Random(buckets)
    keys = [f"{rnd.randrange(60):032x}" for _ in range(3 * CHUNK + 5)]
    expected = sorted({key: keys.index(key) for key in keys}.values())
    monkeypatch.setattr(core_cache, "hash", lambda key: builtins.hash(key) % buckets, raising=False)
    assert core_cache.first_occurrences(keys).tolist() == expected
    found = {key: rnd.random() < 0.5 for key in keys}
    status = build_status(keys, keys, found)
    assert status.cached_keys == [keys[index] for index in expected if found[keys[index]]]
    assert status.segments_to_generate == [
        keys[index] for index in expected if not found[keys[index]]
    ]


# -- array-like parameters (speaker tokens): dtype, shape and content ------------------------


class ArrayLike:
    """Anything with ``__array__`` (as pandas, xarray, JAX... objects have)."""

    def __init__(self, values: Any) -> None:
        self.values = np.asarray(values)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.values


class FakeTensor:
    """Quacks like a torch tensor on a GPU: ``numpy()`` works only after ``detach().cpu()``."""

    def __init__(self, values: Any, where: str = "cuda") -> None:
        self.values, self.where = np.asarray(values), where

    def detach(self) -> FakeTensor:
        return FakeTensor(self.values, self.where)

    def cpu(self) -> FakeTensor:
        return FakeTensor(self.values, "cpu")

    def numpy(self) -> np.ndarray:
        if self.where != "cpu":
            raise TypeError("can't convert cuda tensor to numpy")
        return self.values


TOKENS = np.arange(32, dtype=np.int32).reshape(1, 32)


def test_array_golden_keys() -> None:
    # If these change, every cache keyed by speaker tokens is invalidated: bump the schema.
    assert generate_cache_key("Hello world", {"global_tokens": TOKENS}) == (
        "f08940394c52bdc35c4ef349e7fba1bc"
    )
    assert generate_cache_key("Hello world", {"global_tokens": TOKENS.tolist()}) == (
        "d2f1820f82850a90275a5356f5ec6d03"
    )
    ramp = ArrayLike(np.linspace(0, 1, 5, dtype=np.float32))
    assert generate_cache_key("Hello world", {"global_tokens": ramp}) == (
        "ef3df0ba086cddfb2c10bf4da7e32cea"
    )


def test_array_key_is_its_documented_record() -> None:
    digest = xxhash.xxh3_128_hexdigest(TOKENS.astype("<i4").tobytes())
    record = {"array": f"xxh3-128:{digest}", "dtype": "<i4", "shape": [1, 32]}
    params = json.dumps({"global_tokens": record}, sort_keys=True, separators=(",", ":"))
    expected = xxhash.xxh3_128_hexdigest(f"sparktts-cache-key/1\n{params}\nHello world".encode())
    assert generate_cache_key("Hello world", {"global_tokens": TOKENS}) == expected
    # The record, not the array, is what an entry's metadata stores.
    assert canonical_params({"global_tokens": TOKENS, "gender": "male"}) == {
        "global_tokens": record,
        "gender": "male",
    }


@pytest.mark.parametrize(
    "wrap",
    [
        lambda a: a,
        lambda a: a.tolist(),
        ArrayLike,
        FakeTensor,
        lambda a: {"nested": [a]},
    ],
    ids=["numpy", "list", "__array__", "tensor", "nested"],
)
def test_same_content_same_key_one_element_changed_another(wrap: Any) -> None:
    tokens = np.random.default_rng(3).integers(0, 8192, size=(1, 32), dtype=np.int64)
    key = generate_cache_key("hi", {"global_tokens": wrap(tokens)})
    assert generate_cache_key("hi", {"global_tokens": wrap(tokens.copy())}) == key
    changed = tokens.copy()
    changed[0, 17] += 1
    assert generate_cache_key("hi", {"global_tokens": wrap(changed)}) != key


def test_arrays_are_keyed_by_dtype_shape_and_values_not_layout() -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    key = generate_cache_key("hi", {"t": values})
    assert generate_cache_key("hi", {"t": np.asfortranarray(values)}) == key
    assert generate_cache_key("hi", {"t": values.astype(">f4")}) == key  # big-endian
    strided = np.arange(24, dtype=np.float32).reshape(3, 8)[:, ::2]  # a view with strides
    assert generate_cache_key("hi", {"t": strided}) == generate_cache_key("hi", {"t": strided + 0})
    assert generate_cache_key("hi", {"t": FakeTensor(values)}) == key  # a tensor = its values
    assert generate_cache_key("hi", {"t": ArrayLike(values)}) == key
    assert generate_cache_key("hi", {"t": values.reshape(4, 3)}) != key  # shape counts
    assert generate_cache_key("hi", {"t": values.astype(np.float64)}) != key  # dtype counts
    assert generate_cache_key("hi", {"t": values.tolist()}) != key  # a list is JSON, not an array
    zeros = np.zeros(3, dtype=np.float32)
    assert generate_cache_key("hi", {"t": -zeros}) == generate_cache_key("hi", {"t": zeros})
    # A numpy scalar asks for what its Python value does.
    assert generate_cache_key("hi", {"top_k": np.int64(50)}) == generate_cache_key(
        "hi", {"top_k": 50}
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (np.array([1.0, np.nan]), InvalidParamsError),
        (np.array([np.inf], dtype=np.float32), InvalidParamsError),
        (np.array(["a", "b"]), UnsupportedTypeError),
        (np.array([object()]), UnsupportedTypeError),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), UnsupportedTypeError),
        (FakeTensor(np.zeros(2), where="cpu").detach(), None),  # converts fine
    ],
)
def test_bad_arrays_raise_documented_errors(value: Any, error: type[Exception] | None) -> None:
    if error is None:
        assert len(generate_cache_key("x", {"t": value})) == 32
        return
    with pytest.raises(error):
        generate_cache_key("x", {"t": value})


def test_unconvertible_array_like_is_a_type_error() -> None:
    class Broken:
        def numpy(self) -> np.ndarray:
            raise TypeError("Got unsupported ScalarType BFloat16")

    with pytest.raises(UnsupportedTypeError, match="BFloat16"):
        generate_cache_key("x", {"t": Broken()})


def test_keying_an_array_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np;"
        "from sparktts_cache import generate_cache_key;"
        "generate_cache_key('x', {'t': np.zeros(4, np.float32)});"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_megabyte_array_is_stored_as_its_record(tmp_path: Path) -> None:
    from sparktts_cache import SyncTTSCache

    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    big = np.random.default_rng(1).standard_normal(1 << 17)  # 1 MiB of float64
    params = {"global_tokens": big}
    key = cache.generate_cache_key("hi", params)
    assert cache.cache_data(key, np.zeros(100, np.float32), "hi", params)
    entry = cache.get_entry(key)
    assert entry is not None
    assert entry.meta.params["global_tokens"]["shape"] == [1 << 17]
    assert cache.entry_path(key).stat().st_size < 10_000


# -- the prefix memo -------------------------------------------------------------------------------

colliding_scalars = st.sampled_from([True, 1, 1.0, False, 0, 0.0, -0.0, "1", "true", None])


@given(st.lists(st.dictionaries(st.sampled_from("abc"), colliding_scalars, max_size=3), max_size=8))
def test_memoised_prefixes_equal_computed_ones(param_sets: list[dict[str, Any]]) -> None:
    """Equal-but-different values (True == 1 == 1.0, 0.0 == -0.0) never share a wrong prefix:
    whatever order parameter sets come in, the memo answers what computing would."""
    from sparktts_cache._core import keys

    for params in param_sets:
        assert keys.key_prefix(params) == keys._key_prefix(params)


@given(flat_params)
def test_memo_matches_for_any_flat_params(params: dict[str, Any]) -> None:
    from sparktts_cache._core import keys

    first = keys.key_prefix(params)
    assert keys.key_prefix(dict(params)) == first == keys._key_prefix(params)


def test_true_and_one_are_different_requests_even_from_the_memo() -> None:
    one = generate_cache_key("hi", {"x": 1})
    assert generate_cache_key("hi", {"x": True}) != one
    assert generate_cache_key("hi", {"x": 1}) == one == generate_cache_key("hi", {"x": 1.0})


def test_a_changed_speaker_file_changes_the_key_despite_the_memo(tmp_path: Path) -> None:
    speaker = tmp_path / "speaker.wav"
    speaker.write_bytes(b"voice one")
    params = {"prompt_speech_path": str(speaker)}
    first = generate_cache_key("hi", params)
    assert generate_cache_key("hi", params) == first
    speaker.write_bytes(b"voice two, longer")
    assert generate_cache_key("hi", params) != first
