"""Cache keys: canonical encoding of (schema version, text, parameters), hashed with XXH3-128.

A key is the same for the same request in every process and on every machine: parameters are
encoded as JSON with sorted keys and shortest-round-trip floats, integral floats are written as
integers (``1.0`` and ``1`` are the same request), and ``None`` values are dropped. A parameter that
names an audio file (``prompt_speech_path``) contributes the XXH3-128 of the file's *content*, so
replacing the speaker file changes the key while copying or moving it does not; only a regular file
of at most 64 MiB is read, and such a path is trusted input (a server must never pass a client's
path through). An array-like parameter (a numpy array, a torch tensor, anything with
``__array__`` or ``.numpy()``) contributes a digest record of its dtype, shape and content, so
that a megabyte of speaker tokens neither bloats the key's input nor the metadata stored with
every entry.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
import xxhash

from .errors import (
    InvalidKeyError,
    InvalidParamsError,
    InvalidTextError,
    UnsupportedTypeError,
)
from .files import OPEN_WITHOUT_BLOCKING
from .gil import CHUNK, GilYielder, extend_in_pieces, make_old

__all__ = [
    "KEY_SCHEMA_VERSION",
    "MAX_SPEAKER_FILE_BYTES",
    "SPEAKER_FILE_PARAMS",
    "canonical_params",
    "check_key",
    "check_text",
    "generate_cache_key",
    "key_prefix",
    "key_with_prefix",
    "keys_for_segments",
    "normalize_text",
]

#: Bump when the canonical encoding changes: every key changes with it.
KEY_SCHEMA_VERSION = 1

#: Parameters whose value is the path of an audio file; the file's content is hashed instead.
SPEAKER_FILE_PARAMS = frozenset({"prompt_speech_path"})

#: The largest speaker file a key hashes: 64 MiB. A speaker prompt is a few seconds of audio (a
#: 30 s WAV of 48 kHz stereo float32 is 11 MiB), so this leaves room for any real prompt while
#: bounding what one key computation can read.
MAX_SPEAKER_FILE_BYTES = 64 << 20

_MAX_DEPTH = 32
_INT_LIMIT = 2**63
_EXACT_FLOAT_INT = 2**53
_KEY_RE = re.compile(r"[0-9a-f]{32}")
_HASH_BLOCK = 1 << 20


def check_key(key: object) -> str:
    """Return ``key`` if it is 32 lowercase hex characters; raise otherwise.

    Raises:
        InvalidKeyError: for any other string.
        UnsupportedTypeError: if ``key`` is not a ``str``.
    """
    if not isinstance(key, str):
        raise UnsupportedTypeError(f"cache key must be a str, not {type(key).__name__}")
    if type(key) is not str:
        key = str.__str__(key)  # a plain str, whatever a subclass overrides
    if len(key) != 32 or _KEY_RE.fullmatch(key) is None:
        raise InvalidKeyError(f"cache key must be 32 lowercase hex characters, got {key[:80]!r}")
    return key


def normalize_text(text: object) -> str:
    """Return ``text`` in NFC with outer whitespace stripped and inner runs collapsed to one space.

    Raises:
        UnsupportedTypeError: if ``text`` is not a ``str``.
        InvalidTextError: if the text is blank or holds a lone surrogate.
    """
    if not isinstance(text, str):
        raise UnsupportedTypeError(f"text must be a str, not {type(text).__name__}")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    normalized = " ".join(text.split())
    if not normalized:
        raise InvalidTextError("text is blank")
    return normalized


def check_text(text: object) -> str:
    """Return ``text`` if it is a str that UTF-8 can encode (the metadata stored with an entry)."""
    if not isinstance(text, str):
        raise UnsupportedTypeError(f"text must be a str, not {type(text).__name__}")
    _encode_text(text)
    return text


def canonical_params(tts_params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return ``tts_params`` in canonical form, as stored in an entry (speaker paths kept as paths).

    Raises:
        UnsupportedTypeError, InvalidParamsError: as :func:`key_prefix`.
    """
    return _canonical_top(tts_params, hash_files=False)


def _canonical_scalars(tts_params: object) -> dict[str, Any] | None:
    """The canonical form of the common case, a flat dict of scalars, in one cheap pass.

    Returns None for anything else (nested values, bad names or values), which the full walk
    handles or rejects; both give the same result for a flat dict.
    """
    if type(tts_params) is not dict:
        return None
    result: dict[str, Any] = {}
    for name, value in tts_params.items():
        kind = type(value)
        if type(name) is not str:
            return None
        if kind is str or kind is bool:
            result[name] = value
        elif value is None:
            continue
        elif kind is float:
            if not math.isfinite(value):
                return None
            exact = value.is_integer() and abs(value) < _EXACT_FLOAT_INT
            result[name] = int(value) if exact else value
        elif kind is int and -_INT_LIMIT <= value < _INT_LIMIT:
            result[name] = value
        else:
            return None
    for name in SPEAKER_FILE_PARAMS:
        if name in result:
            result[name] = _speaker_file_digest(name, result[name])
    return result


def _canonical_top(tts_params: Mapping[str, Any] | None, *, hash_files: bool) -> dict[str, Any]:
    if tts_params is None:
        return {}
    if not isinstance(tts_params, Mapping):
        raise UnsupportedTypeError(f"tts_params must be a mapping, not {type(tts_params).__name__}")
    canonical = _canonical_mapping(tts_params, 1, hash_files=hash_files)
    try:
        json.dumps(canonical, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidParamsError(f"a parameter cannot be encoded as UTF-8: {exc.reason}") from None
    return canonical


def _encode_text(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidTextError(f"text cannot be encoded as UTF-8: {exc.reason}") from None


def key_prefix(tts_params: Mapping[str, Any] | None) -> bytes:
    """Return the bytes every key of this parameter set starts with.

    Computing it once per request and then calling :func:`key_with_prefix` per segment is what makes
    keying thousands of segments cheap.

    Raises:
        UnsupportedTypeError: if a parameter is not JSON-like.
        InvalidParamsError: for NaN, infinity, integers beyond 64 bits, nesting deeper than 32
            levels, or a speaker file that is not a readable regular file of at most
            :data:`MAX_SPEAKER_FILE_BYTES`.
    """
    signature = _memo_signature(tts_params)
    if signature is not None and (prefix := _prefix_memo.get(signature)) is not None:
        return prefix
    prefix = _key_prefix(tts_params)
    if signature is not None:
        if len(_prefix_memo) >= _PREFIX_MEMO_SIZE:
            _prefix_memo.clear()
        _prefix_memo[signature] = prefix
    return prefix


#: Recent parameter sets and their prefixes: a server keys the same few voices over and over.
_prefix_memo: dict[tuple[tuple[str, type, object], ...], bytes] = {}
_PREFIX_MEMO_SIZE = 256
_MEMO_TYPES = frozenset({str, int, float, bool, type(None)})


def _memo_signature(tts_params: object) -> tuple[tuple[str, type, object], ...] | None:
    """A hashable stand-in for a flat dict of plain scalars, or None (no memo) for anything else.

    Each value goes with its exact type, so that ``True`` and ``1`` (equal, and hashed alike, but
    written differently) never share a prefix; equal values of one type always have the same
    canonical form. A speaker file is never memoised: its content may change under its name.
    """
    if type(tts_params) is not dict or len(tts_params) > 64:
        return None
    signature = tuple([(name, type(value), value) for name, value in tts_params.items()])
    for name, kind, _value in signature:
        if kind not in _MEMO_TYPES or type(name) is not str or name in SPEAKER_FILE_PARAMS:
            return None
    return signature


def _key_prefix(tts_params: Mapping[str, Any] | None) -> bytes:
    canonical = _canonical_scalars(tts_params)
    if canonical is None:  # nested values, or something to reject: the full walk
        canonical = _canonical_top(tts_params, hash_files=True)
    try:
        encoded = json.dumps(
            canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidParamsError(f"a parameter cannot be encoded as UTF-8: {exc.reason}") from None
    # JSON escapes newlines inside strings, so the newline after it separates it from the text.
    return b"sparktts-cache-key/%d\n%s\n" % (KEY_SCHEMA_VERSION, encoded)


def key_with_prefix(prefix: bytes, text: object) -> str:
    """Return the key of ``text`` under a prefix from :func:`key_prefix`."""
    return xxhash.xxh3_128_hexdigest(prefix + _encode_text(normalize_text(text)))


def generate_cache_key(text: object, tts_params: Mapping[str, Any] | None = None) -> str:
    """Return the cache key of ``text`` synthesised with ``tts_params``: 32 lowercase hex chars.

    Raises:
        UnsupportedTypeError: if ``text`` is not a str or a parameter is not JSON-like.
        InvalidTextError: if ``text`` is blank.
        InvalidParamsError: as :func:`key_prefix`.
    """
    return key_with_prefix(key_prefix(tts_params), text)


def keys_for_segments(
    segments: Sequence[object],
    tts_params: Mapping[str, Any] | None = None,
    key_of: Callable[[Any, Mapping[str, Any] | None], str] | None = None,
) -> list[str]:
    """Return the key of every segment under ``tts_params``, aligned with the segments.

    CPU work for a worker thread: it pauses for the GIL once per chunk of segments (see
    :class:`GilYielder`). Keying is most of the cost of a status call, so the common case, a chunk
    of ASCII texts, is keyed with list comprehensions and ``map`` rather than a call per segment;
    it gives the same keys as :func:`generate_cache_key` (NFC and UTF-8 are the identity on ASCII).

    Args:
        segments: the texts to key.
        tts_params: the parameters they are synthesised with.
        key_of: a backend's own ``generate_cache_key(text, tts_params)``, called for each segment
            instead of this module's recipe (a backend may key differently, so there is no fast
            path then).

    Raises:
        UnsupportedTypeError, InvalidTextError: for a segment that is not a str or is blank (or any
            ``TypeError`` or ``ValueError`` of ``key_of``), as the same type with the segment's
            index first in the message: ``"segment 3: text is blank"``.
        InvalidParamsError: as :func:`key_prefix`.
    """
    prefix = key_prefix(tts_params) if key_of is None else b""
    keys: list[str] = []
    make_old(len(segments))  # then filled a chunk at a time, never copied (see extend_in_pieces)
    extend_in_pieces(keys, _chunk_keys(segments, tts_params, prefix, key_of), len(segments))
    return keys


def _chunk_keys(
    segments: Sequence[object],
    tts_params: Mapping[str, Any] | None,
    prefix: bytes,
    key_of: Callable[[Any, Mapping[str, Any] | None], str] | None,
) -> Iterator[list[str]]:
    """The keys of ``segments`` a chunk at a time, with a pause for the GIL between chunks."""
    yielder = GilYielder()
    for start in range(0, len(segments), CHUNK):
        chunk = segments[start : start + CHUNK]
        joined = _joined_if_ascii(chunk) if key_of is None else None
        if joined is not None:
            texts = cast("Sequence[str]", chunk)
            if _is_normalized_ascii(joined):
                normalized = list(texts)
            else:
                normalized = [" ".join(text.split()) for text in texts]
            if not all(normalized):
                blank = start + normalized.index("")
                raise InvalidTextError(f"segment {blank}: text is blank")
            encoded = [prefix + text.encode() for text in normalized]
            keys = list(map(xxhash.xxh3_128_hexdigest, encoded))
        else:
            keys = []
            for index, text in enumerate(chunk, start):
                try:
                    if key_of is None:
                        keys.append(key_with_prefix(prefix, text))
                    else:
                        keys.append(key_of(text, tts_params))
                except (ValueError, TypeError) as exc:
                    raise type(exc)(f"segment {index}: {exc}") from None
        yielder.pause_if_due()
        yield keys


def _joined_if_ascii(chunk: Sequence[object]) -> str | None:
    """The texts of ``chunk`` joined by ``|`` if they are all ASCII ``str``; else None."""
    if set(map(type, chunk)) != {str}:  # a str subclass takes the general path
        return None
    joined = "|".join(cast("Sequence[str]", chunk))
    return joined if joined.isascii() else None


def _is_normalized_ascii(joined: str) -> bool:
    """Whether every text of ``joined`` (ASCII texts joined by ``|``) is already normalized.

    A normalized text has no whitespace but single spaces between other characters (what
    ``" ".join(text.split())`` gives), and ASCII whitespace other than the space is all below
    0x20. Five passes of NumPy over the chunk's bytes cost a sixth of splitting and joining each
    text (the most expensive step of keying). A ``|`` next to a space is taken for a text's edge:
    such a chunk is simply normalized text by text, which is always right.
    """
    codes = np.frombuffer(joined.encode("ascii"), np.uint8)
    if not len(codes) or bool((codes < 0x20).any()):
        return False
    spaces = codes == 0x20
    if spaces[0] or spaces[-1]:
        return False
    edges = spaces | (codes == 0x7C)
    return not bool((spaces[1:] & edges[:-1]).any() or (spaces[:-1] & edges[1:]).any())


def _canonical_mapping(
    value: Mapping[Any, Any], depth: int, *, hash_files: bool = False
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise UnsupportedTypeError(f"parameter names must be str, not {type(name).__name__}")
        if item is None:
            continue
        if name in SPEAKER_FILE_PARAMS and depth == 1:
            result[name] = _speaker_file_digest(name, item) if hash_files else _path_str(name, item)
        else:
            result[name] = _canonical(item, depth + 1, name)
    return result


def _canonical(value: object, depth: int, where: str) -> Any:
    if depth > _MAX_DEPTH:
        raise InvalidParamsError(
            f"parameter {where!r} is nested more than {_MAX_DEPTH} levels deep"
        )
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise InvalidParamsError(f"parameter {where!r} holds an integer beyond 64 bits")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidParamsError(
                f"parameter {where!r} is {value!r}: NaN and infinity have no key"
            )
        if value.is_integer() and abs(value) < _EXACT_FLOAT_INT:
            return int(value)  # 1.0 and 1 ask for the same thing; this also folds -0.0 into 0
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(item, depth + 1, where) for item in value]
    if isinstance(value, Mapping):
        return _canonical_mapping(value, depth)
    if isinstance(value, np.generic):  # a numpy scalar asks for what its Python value does
        return _canonical(value.item(), depth, where)
    array = _as_array(value, where)
    if array is not None:
        return _array_record(array, where)
    raise UnsupportedTypeError(
        f"parameter {where!r} has type {type(value).__name__}; "
        "only str, int, float, bool, None, arrays and lists or dicts of them are allowed"
    )


#: Array kinds with a canonical byte form: bool, signed and unsigned integers, floats, complex.
_ARRAY_KINDS = frozenset("biufc")


def _as_array(value: object, where: str) -> np.ndarray[Any, Any] | None:
    """``value`` as a numpy array if it is array-like, else None; never imports torch.

    A torch tensor is recognised by its methods (``detach``, ``cpu``, ``numpy``), so that one
    on a GPU or one that requires grad is keyed like the same values on the CPU.
    """
    if isinstance(value, np.ndarray):
        return value
    to_numpy = getattr(value, "numpy", None)
    if not callable(to_numpy) and not hasattr(value, "__array__"):
        return None
    try:
        if callable(to_numpy):
            for method in ("detach", "cpu"):  # torch: off the autograd graph, off the GPU
                convert = getattr(value, method, None)
                if callable(convert):
                    value = convert()
            array = value.numpy()  # type: ignore[attr-defined]
        else:
            array = np.asarray(value)
    except Exception as exc:  # bfloat16 tensors, objects whose conversion fails
        raise UnsupportedTypeError(
            f"parameter {where!r} ({type(value).__name__}) cannot be converted to a numpy "
            f"array: {exc}"
        ) from None
    if not isinstance(array, np.ndarray):
        raise UnsupportedTypeError(
            f"parameter {where!r}: {type(value).__name__} converted to "
            f"{type(array).__name__}, not a numpy array"
        )
    return array


def _array_record(array: np.ndarray[Any, Any], where: str) -> dict[str, Any]:
    """The canonical form of an array: its dtype, shape and the XXH3-128 of its content.

    The content is hashed little-endian and C-ordered, with -0.0 folded into 0.0 as scalars are,
    so the same values give the same record whatever the array's memory layout. The record, not
    the array, is what the key hashes and what an entry's metadata stores.
    """
    if array.dtype.kind not in _ARRAY_KINDS:
        raise UnsupportedTypeError(
            f"parameter {where!r} is an array of {array.dtype}; only bool, integer, float and "
            "complex arrays have a key"
        )
    if array.dtype.kind in "fc":
        if not np.isfinite(array).all():
            raise InvalidParamsError(
                f"parameter {where!r} holds NaN or infinity: NaN and infinity have no key"
            )
        array = np.asarray(array + array.dtype.type(0))  # -0.0 + 0.0 is 0.0
    canonical = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
    return {
        "array": "xxh3-128:" + xxhash.xxh3_128_hexdigest(canonical.tobytes()),
        "dtype": canonical.dtype.str,
        "shape": list(canonical.shape),
    }


def _path_str(name: str, value: object) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise UnsupportedTypeError(f"parameter {name!r} must be a path, not {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise UnsupportedTypeError(f"parameter {name!r} must be a str path, not bytes")
    return path


def _speaker_file_digest(name: str, value: object) -> str:
    """The XXH3-128 of the speaker file ``value`` names, read through one checked descriptor.

    The file is opened without blocking (a FIFO with no writer would block the open for good),
    then checked on the descriptor, not the name: only a regular file of at most
    :data:`MAX_SPEAKER_FILE_BYTES` is read, and never more than that many bytes (a ``/proc`` file
    says it is empty and is not). ``/dev/zero``, ``/dev/urandom``, a FIFO, a socket or a directory
    would otherwise be hashed forever, or make the caller wait for a writer that never comes.

    Every refusal is the same message, naming only the parameter and the path as given: whether a
    path exists, what it is and how large are facts about the machine that a caller passing a
    client's value through must not learn (the library treats such paths as trusted input, but
    an error message travels further than the code that made it).
    """
    given = _path_str(name, value)
    refused = InvalidParamsError(
        f"parameter {name!r}: {given!r} is not a readable regular file of at most "
        f"{MAX_SPEAKER_FILE_BYTES >> 20} MiB"
    )
    try:
        fd = os.open(given, OPEN_WITHOUT_BLOCKING)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        raise refused from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SPEAKER_FILE_BYTES:
            raise refused
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = _digest_memo.get(identity)
        if digest is None:
            digest = _hash_open_file(fd, MAX_SPEAKER_FILE_BYTES)
            if digest is None:
                raise refused
            if len(_digest_memo) >= _DIGEST_MEMO_SIZE:
                _digest_memo.clear()
            _digest_memo[identity] = digest
        return digest
    except OSError:
        raise refused from None
    finally:
        os.close(fd)


#: Digests of recent speaker files by (device, inode, size, mtime): the same content whatever the
#: path it is reached by, and a rewrite changes the size or the modification time.
_digest_memo: dict[tuple[int, int, int, int], str] = {}
_DIGEST_MEMO_SIZE = 256


def _hash_open_file(fd: int, limit: int) -> str | None:
    """The XXH3-128 of the file open as ``fd``, or None if it holds more than ``limit`` bytes."""
    hasher = xxhash.xxh3_128()
    remaining = limit + 1  # one byte more than allowed tells a file that is too long
    while remaining > 0 and (block := os.read(fd, min(_HASH_BLOCK, remaining))):
        hasher.update(block)
        remaining -= len(block)
    if remaining == 0:
        return None
    return "xxh3-128:" + hasher.hexdigest()
