"""Crafted entries: whatever an attacker who can write a cache file or a Redis value puts there,
with a valid checksum, so that only the checks of what an entry *says* can catch it.

They are packed here from the format's description (the codec's docstring), not by the codec, so
that a test of the codec does not lean on the codec's own writer.
"""

from __future__ import annotations

import functools
import io
import json
import struct
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import soundfile
import xxhash

from sparktts_cache.testing import sealed_audio

__all__ = [
    "DAMAGED_ENTRIES",
    "FLAC_DECLARATIONS",
    "HOSTILE_METADATA",
    "crafted_flac",
    "crafted_wav",
    "hostile_wav",
    "key_check_dodges",
    "metadata_json",
]

CREATED = "1700000000.5"


def metadata_json(
    key: str,
    samples: int,
    *,
    text: str = '"hello"',
    params: str = "{}",
    rate: str = "16000",
    created: str = CREATED,
    extra: str = "",
) -> bytes:
    """An entry's metadata with each value given as raw JSON text (so it can hold ``NaN``, a
    400-digit number, a lone surrogate's escape or 100,000 levels of nesting), in the order
    ``EntryMeta.to_json`` writes."""
    return (
        f'{{"v":1,"key":"{key}","text":{text},"params":{params},"sample_rate":{rate},'
        f'"samples":{samples},"created":{created}{extra}}}'
    ).encode()


def crafted_wav(meta_json: bytes, audio: npt.NDArray[np.float32], rate: int = 16000) -> bytes:
    """A WAV entry of ``audio`` whose metadata is ``meta_json`` verbatim, checksum valid."""
    payload = np.ascontiguousarray(audio, dtype="<f4").tobytes()
    head = 12 + 26 + 12 + 8 + 24  # RIFF, fmt, fact, the sptc chunk's header and its own fields
    padding = -(head + len(meta_json) + 8) % 16  # the samples start 16-byte aligned
    digest = xxhash.xxh3_128(meta_json + payload).digest()
    sptc = struct.pack("<HH16sI", 1, 0, digest, len(meta_json)) + meta_json + b"\0" * padding
    body = b"".join([
        b"WAVE",
        b"fmt " + struct.pack("<IHHIIHHH", 18, 3, 1, rate, rate * 4, 4, 32, 0),
        b"fact" + struct.pack("<II", 4, len(audio)),
        b"sptc" + struct.pack("<I", len(sptc)) + sptc,
        b"data" + struct.pack("<I", len(payload)) + payload,
    ])  # fmt: skip
    return b"RIFF" + struct.pack("<I", len(body)) + body


def crafted_flac(
    key: str, pcm: npt.NDArray[np.int16], *, samples: int, declared: int | None = None
) -> bytes:
    """A FLAC entry of ``pcm`` whose metadata says ``samples`` and whose STREAMINFO header
    declares ``declared`` samples (the real count if None), its checksum of ``pcm`` valid."""
    record = {
        "v": 1, "key": key, "text": "hello", "params": {}, "sample_rate": 16000,
        "samples": samples, "created": float(CREATED),
        "pcm16_xxh3_128": xxhash.xxh3_128_hexdigest(pcm.astype("<i2").tobytes()),
    }  # fmt: skip
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", 16000, 1, subtype="PCM_16", format="FLAC") as flac:
        flac.comment = json.dumps(record, separators=(",", ":"))
        flac.write(pcm)
    data = bytearray(buffer.getvalue())
    if declared is not None:
        # STREAMINFO is the first metadata block (at 8); its total sample count is 36 bits, the
        # low nibble of its byte 13 and bytes 14-17.
        assert data[:4] == b"fLaC" and data[4] & 0x7F == 0 and declared < 1 << 36
        data[21] = (data[21] & 0xF0) | (declared >> 32)
        data[22:26] = (declared & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(data)


_DEEP = 100_000
#: Metadata that ``cache_data`` would never have written, each with a valid checksum: every one
#: must be a corrupt miss for every reader that parses metadata (name -> keyword of metadata_json).
HOSTILE_METADATA: dict[str, dict[str, str]] = {
    "params nested past the recursion limit": {"params": '{"a":' * _DEEP + "1" + "}" * _DEEP},
    "text nested past the recursion limit": {"text": "[" * _DEEP + "]" * _DEEP},
    "params nested 40 levels": {"params": '{"a":' * 40 + "1" + "}" * 40},
    "a 400-digit creation time": {"created": "9" * 400},
    "an infinite creation time": {"created": "Infinity"},
    "a lone surrogate in the text": {"text": '"\\ud800 hello"'},
    "a lone surrogate in a parameter": {"params": '{"voice":"\\udfff"}'},
    "NaN in a parameter": {"params": '{"temperature":NaN}'},
    "an integer beyond 64 bits in a parameter": {"params": '{"seed":' + "9" * 30 + "}"},
    "params that are a list": {"params": "[1,2]"},
    "a text that is a number": {"text": "42"},
    "a 1 MHz rate": {"rate": "1000000"},
    "a rate that is a string": {"rate": '"16000"'},
    "a rate that is true": {"rate": "true"},
    "a second key": {"extra": ',"key":"' + "0" * 32 + '"'},
    "a second text": {"extra": ',"text":"another"'},
    "a creation time that overflows a float": {"created": "1e999"},
    "a sample count the data does not hold": {"samples": "161"},
}


def hostile_wav(name: str, key: str, audio: npt.NDArray[np.float32]) -> bytes:
    """The WAV entry of ``key`` holding ``HOSTILE_METADATA[name]`` (its header's rate is the
    metadata's, when that is a number, so that only the metadata check can refuse it)."""
    fields = dict(HOSTILE_METADATA[name])
    rate = int(fields["rate"]) if fields.get("rate", "").isdigit() else 16000
    samples = int(fields.pop("samples", len(audio)))
    return crafted_wav(metadata_json(key, samples, **fields), audio, rate)


def key_check_dodges(key: str, samples: int) -> dict[str, bytes]:
    """Metadata of ``key`` that does not name it where the fast key check looks, checksum valid
    all the same (name -> the metadata): a JSON that starts differently, or is too short."""
    good = metadata_json(key, samples)
    return {
        "a space after the version": good.replace(b'{"v":1,', b'{"v": 1,'),
        "the key before the version": good.replace(
            b'{"v":1,"key":"%s",' % key.encode(), b'{"key":"%s","v":1,' % key.encode()
        ),
        "metadata too short to name a key": b'{"v":1}',
    }


#: FLAC entries whose STREAMINFO declares more samples than the file holds: name -> (the
#: metadata's sample count, the header's).
FLAC_DECLARATIONS = {
    "2**36 declared and in the metadata": (2**36 - 1, 2**36 - 1),
    "2**36 declared, 1 in the metadata": (1, 2**36 - 1),
    "a million declared in 300 bytes": (1_000_000, 1_000_000),
}

_AUDIO = sealed_audio(1, 160)
_OTHER_KEY = "0123456789abcdef" * 2


def _damaged(name: str, key: str) -> tuple[str, bytes]:
    if name in HOSTILE_METADATA:
        return "wav", hostile_wav(name, key, _AUDIO)
    if name in FLAC_DECLARATIONS:
        samples, declared = FLAC_DECLARATIONS[name]
        pcm = np.array([7], dtype=np.int16)
        return "flac", crafted_flac(key, pcm, samples=samples, declared=declared)
    if name == "another key's entry":
        return "wav", crafted_wav(metadata_json(_OTHER_KEY, len(_AUDIO)), _AUDIO)
    return "wav", crafted_wav(key_check_dodges(key, len(_AUDIO))[name], _AUDIO)


#: Every crafted damaged entry the tests use, by name: each makes the entry of a key (made for the
#: text "hello" without parameters, as ``metadata_json`` records) whose checksum is valid, in the
#: format it returns with the bytes. Every reader refuses each of them.
DAMAGED_ENTRIES: dict[str, Callable[[str], tuple[str, bytes]]] = {
    name: functools.partial(_damaged, name)
    for name in [
        *HOSTILE_METADATA,
        *key_check_dodges(_OTHER_KEY, 1),
        "another key's entry",
        *FLAC_DECLARATIONS,
    ]
}
