"""Whether an entry was made for the request it is read for: the defence against crafted collisions.

XXH3-128 keys are fast, not collision resistant: two different texts with the same key can be
constructed, and a reader that trusts the key alone answers the second with the first's audio. Every
entry records the text and parameters it was made for (its metadata, which the entry's digest
covers), so a read that knows its request compares them before serving the entry: the normalised
text, and the parameters in canonical form. A mismatch is a miss, which the caller fills and so
overwrites.

Comparing what the entry records, rather than a second digest of it kept in the entry, needs no
change of the format and works on every entry ever written; its cost is parsing the metadata of a
hit (measured by ``benchmarks.collision_check``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .codec import Entry, EntryMeta, params_json, request_json
from .errors import CacheError, InvalidOptionError
from .keys import SPEAKER_FILE_PARAMS, canonical_params, check_text, key_prefix, normalize_text

__all__ = ["RequestCheck", "check_aligned", "log_collision", "matching_audio"]

log = logging.getLogger("sparktts_cache")


def _params_json(params: Mapping[str, Any]) -> str:
    """Canonical parameters as the key encodes them (sorted names; ``True`` is not ``1``)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class RequestCheck:
    """What an entry must record to be served for a request made with ``tts_params``.

    Build one per batch of reads that share parameters (it puts them in canonical form once), then
    ask :meth:`matches` for each entry. CPU work, and :meth:`matches` may read a speaker file: call
    it in a worker thread.

    Raises:
        UnsupportedTypeError, InvalidParamsError: for parameters that have no key.
    """

    __slots__ = ("_canonical", "_params", "_params_json", "_recorded_params")

    def __init__(self, tts_params: Mapping[str, Any] | None) -> None:
        self._params = tts_params
        self._canonical = canonical_params(tts_params)
        self._recorded_params = params_json(self._canonical)
        self._params_json: str | None = None  # made on the slow path only

    def recorded(self, text: str) -> bytes:
        """The bytes an entry written by ``cache_data(key, audio, text, tts_params)`` records
        after its key: a WAV entry holding exactly these is for this request, with no parsing
        (``Codec.decode_for``); any other entry is compared by :meth:`matches`.

        Raises:
            UnsupportedTypeError, InvalidTextError: if ``text`` is not a str or is blank.
        """
        normalize_text(check_text(text))
        return request_json(text, self._recorded_params)

    def matches(self, meta: EntryMeta, text: str) -> bool:
        """Whether ``meta`` records ``text`` (normalised) and these parameters (canonical).

        An entry whose metadata was not recorded (sample rate 0: the ``Cache.get_entries``
        default of a backend that keeps only samples) has nothing to compare and matches: such a
        backend cannot tell a collision from a hit. A speaker file recorded under another path
        matches if its content is the same, as the key says (a moved prompt keeps its entries).

        Raises:
            UnsupportedTypeError, InvalidTextError: if ``text`` is not a str or is blank.
        """
        wanted = normalize_text(text)
        if meta.sample_rate == 0:
            return True
        try:
            if normalize_text(meta.text) != wanted:
                return False
        except CacheError:  # a blank text recorded by a direct cache_data call
            return False
        if self._params_json is None:
            self._params_json = _params_json(self._canonical)
        if _params_json(meta.params) == self._params_json:
            return True
        if not any(name in meta.params for name in SPEAKER_FILE_PARAMS):
            return False
        try:  # the recorded speaker path may be gone, or hold other content now: then a miss
            return key_prefix(meta.params) == key_prefix(self._params)
        except (ValueError, TypeError):
            return False


def matching_audio(
    keys: Sequence[str],
    texts: Sequence[str],
    tts_params: Mapping[str, Any] | None,
    entries: Sequence[Entry | None],
) -> list[npt.NDArray[np.float32] | None]:
    """The audio of each entry made for its text and ``tts_params``; None for misses and for
    entries made for another request (each logged as a collision). Run it in a worker thread.

    Raises:
        InvalidOptionError: if ``texts`` is not aligned with ``keys``.
        UnsupportedTypeError, InvalidTextError, InvalidParamsError: for a bad text or parameters.
    """
    check_aligned(keys, texts)
    check = RequestCheck(tts_params)
    results: list[npt.NDArray[np.float32] | None] = []
    for key, text, entry in zip(keys, texts, entries, strict=True):
        if entry is not None and not check.matches(entry.meta, text):
            log_collision(key)
            entry = None
        results.append(None if entry is None else entry.audio)
    return results


def check_aligned(keys: Sequence[str], texts: Sequence[str]) -> None:
    """Raise InvalidOptionError unless there is one text per key."""
    if isinstance(texts, str) or len(texts) != len(keys):
        raise InvalidOptionError("texts must be a sequence of str aligned with keys, one per key")


def log_collision(key: str) -> None:
    log.warning(
        "entry %s was made for another text or other parameters (a key collision); "
        "treating it as a miss",
        key,
    )
