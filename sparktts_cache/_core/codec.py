"""The on-disk entry formats: a self-checking WAV file (default) and a 16-bit FLAC file.

Format version 1, WAV (``.wav``): a standard RIFF/WAVE file of 32-bit IEEE-float mono samples that
any audio player opens, with one extra chunk that players skip::

    "RIFF" u32 size "WAVE"
    "fmt " u32 18   u16 3 (IEEE float) u16 1 (mono) u32 rate u32 rate*4 u16 4 u16 32 u16 0
    "fact" u32 4    u32 samples
    "sptc" u32 len  u16 version=1 u16 flags=0 16-byte XXH3-128 u32 json_len json padding
    "data" u32 samples*4 float32 little-endian samples

The XXH3-128 digest covers the JSON metadata followed by the sample bytes; the padding puts the
samples at a 16-byte boundary so they are read without a copy. The metadata holds the key, the
text, the parameters, the sample rate, the sample count and the creation time.

Format version 1, FLAC (``.flac``): a FLAC file of 16-bit samples (lossy against float32: samples
are clipped to [-1, 1) and rounded to 1/32768) whose Vorbis comment holds the same JSON metadata
plus the XXH3-128 of the 16-bit samples.

Any file that does not match its format exactly, is truncated or extended, or whose digest does not
match, raises :class:`CorruptEntryError`. So does an entry that does not name the key it is read
under (every read checks), and one whose metadata ``cache_data`` would not have accepted (a lone
surrogate in the text, NaN in a parameter, a rate out of range, nesting, duplicate names, numbers
out of range): what one backend accepts as a hit, every backend accepts as an entry.

:func:`encode_entry` and :func:`decode_entry` are the two calls a backend that stores blobs (Redis,
an object store) needs: the same checks on ``cache_data``'s arguments as every other backend, and
the same WAV bytes, where anything damaged is a logged miss.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
import xxhash

from .audio import as_mono_float32, check_sample_rate
from .errors import CacheError, CorruptEntryError, InvalidAudioError, InvalidOptionError
from .keys import canonical_params, check_key, check_text

__all__ = [
    "CODEC_NAMES",
    "DEFAULT_SAMPLE_RATE",
    "MAX_ENTRY_BYTES",
    "Codec",
    "Entry",
    "EntryMeta",
    "FlacCodec",
    "WavCodec",
    "codec_named",
    "decode_entry",
    "encode_entry",
]

log = logging.getLogger("sparktts_cache")

FORMAT_VERSION = 1
#: The largest entry file of any format, in bytes (over 4 hours of 16 kHz float32 samples): a WAV
#: entry's sizes are 32-bit, and readers refuse larger files before reading them.
MAX_ENTRY_BYTES = 1 << 30
#: The sample rate of entries written without one by a file cache made without one: Spark-TTS's,
#: whose audio the seed module's API (which has no rate) stored.
DEFAULT_SAMPLE_RATE = 16000

#: A whole entry file in memory.
EntryBytes = bytearray | memoryview


@dataclass(frozen=True)
class EntryMeta:
    """What an entry records besides its samples."""

    key: str
    text: str
    params: dict[str, Any]
    sample_rate: int
    created: float

    def to_json(self, samples: int, extra: dict[str, Any] | None = None) -> bytes:
        record = {
            "v": FORMAT_VERSION,
            "key": self.key,
            "text": self.text,
            "params": self.params,
            "sample_rate": self.sample_rate,
            "samples": samples,
            "created": self.created,
            **(extra or {}),
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, max_sample_rate: int) -> tuple[EntryMeta, dict[str, Any]]:
        """Parse and check an entry's metadata to the standard ``cache_data`` applies.

        Any failure, whatever a crafted (checksum-valid) entry holds, is a CorruptEntryError:
        undecodable or duplicate-named JSON, nesting beyond the recursion limit, a key that is not
        32 hex digits, a text UTF-8 cannot encode, parameters without a canonical form, a rate
        outside 1..``max_sample_rate`` Hz, a sample count or creation time that is not a number.
        The parameters are returned in canonical form (stored entries already are).
        """
        try:
            record = json.loads(str(data, "utf-8"), object_pairs_hook=_unique_names)
            if type(record) is not dict:
                raise CorruptEntryError("metadata is not an object")
            params = record["params"]
            if not isinstance(params, dict):
                raise CorruptEntryError("params is not an object")
            rate, samples, created = record["sample_rate"], record["samples"], record["created"]
            if type(rate) is not int or not 0 < rate <= max_sample_rate:
                raise CorruptEntryError(f"sample rate {rate!r} is not 1..{max_sample_rate} Hz")
            if type(samples) is not int or samples < 1:
                raise CorruptEntryError("sample count is not a positive count")
            if type(created) not in (int, float) or not math.isfinite(float(created)):
                raise CorruptEntryError("creation time is not a finite number")
            meta = cls(
                key=check_key(record["key"]),
                text=check_text(record["text"]),
                params=canonical_params(params),
                sample_rate=rate,
                created=float(created),
            )
        except (CacheError, ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
            raise CorruptEntryError(f"unreadable metadata: {exc}"[:200]) from None
        return meta, record


def params_json(params: dict[str, Any]) -> bytes:
    """Canonical ``params`` as ``EntryMeta.to_json`` writes them (for :func:`request_json`)."""
    return json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def request_json(text: str, params: bytes) -> bytes:
    """How an entry's metadata records ``text`` and the parameters (from :func:`params_json`)
    after its key: ``"text":<text>,"params":<params>,"sample_rate":``, as ``to_json`` writes."""
    text_json = json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return b'"text":%s,"params":%s,"sample_rate":' % (text_json, params)


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a name given twice (``json`` would keep the last one,
    so a crafted entry could name one key where the readers look and another elsewhere)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        raise CorruptEntryError("a name appears twice in an object")
    return record


@dataclass(frozen=True)
class Entry:
    """A decoded entry: its samples (1-D float32) and its metadata."""

    audio: npt.NDArray[np.float32]
    meta: EntryMeta


#: Why ``cache_data`` without a rate, on a backend without one, is refused: audio is only
#: samples, and an assumed rate is wrong for every engine not at that rate (eSpeak's 22,050 Hz
#: stored as 16,000 plays slowed, and ``show`` gives the wrong length).
NO_SAMPLE_RATE = (
    "cache_data needs the audio's sample rate: pass sample_rate=model.sample_rate, or make the "
    "cache with one for every entry, TTSCache(..., sample_rate=model.sample_rate) "
    "(16000 for Spark-TTS)"
)

#: Room for an entry's headers and the codec's own metadata fields, besides the JSON (generous).
_METADATA_ALLOWANCE = 1 << 16


def new_entry(
    key: str,
    audio: object,
    text: object,
    params: Mapping[str, Any] | None,
    sample_rate: int | None,
    default_rate: int | None,
    codec: Codec,
) -> tuple[npt.NDArray[np.float32], EntryMeta]:
    """Check what a caller hands to ``cache_data`` and make the entry's samples and metadata.

    Every backend stores entries made here, so they all accept and refuse the same things.

    Raises:
        InvalidOptionError: if neither ``sample_rate`` nor ``default_rate`` (the backend's) is
            given: an array does not say its rate, and a guessed one is silently wrong.
        UnsupportedTypeError, InvalidAudioError, InvalidTextError, InvalidParamsError: for bad
            arguments (``key`` must already be checked). InvalidAudioError also for an entry
            larger than ``MAX_ENTRY_BYTES`` (1 GiB, about 4.6 hours of 16 kHz float32 audio): no
            reader would take it, and past 4 GiB the WAV header cannot even say its size.
    """
    rate = default_rate if sample_rate is None else check_sample_rate(sample_rate)
    if rate is None:
        raise InvalidOptionError(NO_SAMPLE_RATE)
    samples = as_mono_float32(audio)
    if rate > codec.max_sample_rate:
        raise InvalidAudioError(
            f"{codec.extension} entries cannot store {rate} Hz audio "
            f"(at most {codec.max_sample_rate} Hz)"
        )
    meta = EntryMeta(key, check_text(text), canonical_params(params), rate, time.time())
    # The metadata's size is only worth computing when the entry may be near the limit (a text's
    # JSON takes at most 6 bytes a character).
    if samples.nbytes + 6 * len(meta.text) + _METADATA_ALLOWANCE > MAX_ENTRY_BYTES:
        size = samples.nbytes + len(meta.to_json(len(samples))) + _METADATA_ALLOWANCE
        if size > MAX_ENTRY_BYTES:
            raise InvalidAudioError(
                f"an entry of {len(samples)} samples and this text would take about {size} bytes, "
                f"more than the {MAX_ENTRY_BYTES} bytes (1 GiB) an entry may hold"
            )
    return samples, meta


class Codec(Protocol):
    """Turns samples and metadata into the bytes of one entry file, and back."""

    extension: ClassVar[str]
    #: The size below which no file can be a whole entry (read checks reject smaller ones early).
    min_size: ClassVar[int]
    #: The highest sample rate the format can store.
    max_sample_rate: ClassVar[int]

    def encode(self, audio: npt.NDArray[np.float32], meta: EntryMeta) -> list[bytes | memoryview]:
        """Return the entry's bytes as a list of buffers to write one after the other."""
        ...

    def decode_audio(self, data: EntryBytes, key: str) -> npt.NDArray[np.float32]:
        """Return the samples of a whole entry of ``key``, checking its digest and that it names
        ``key``; raise CorruptEntryError (the hot path: the metadata is not parsed in full)."""
        ...

    def decode(self, data: EntryBytes, key: str) -> Entry:
        """Return the samples and metadata of a whole entry of ``key``, checking its digest, that
        it names ``key`` and its metadata (as ``EntryMeta.from_json``); raise CorruptEntryError."""
        ...

    def decode_for(
        self, data: EntryBytes, key: str, recorded: bytes
    ) -> tuple[npt.NDArray[np.float32], EntryMeta | None]:
        """:meth:`decode_audio`, and the metadata unless it is known whole without parsing it:
        what ``to_json`` writes for ``key``, the request ``recorded`` records
        (``request_json``'s bytes: its text and parameters) and these samples; then None. Either
        way, an entry :meth:`decode` refuses raises CorruptEntryError."""
        ...


_WAV_HEAD = struct.Struct("<4sI4s4sIHHIIHHH4sII4sI")  # RIFF..fmt..fact..sptc chunk header
_SPTC_HEAD = struct.Struct("<HH16sI")
_DATA_HEAD = struct.Struct("<4sI")
_HEAD_SIZE = _WAV_HEAD.size + _SPTC_HEAD.size  # up to the JSON
_ALIGN = 16
#: How every entry's metadata begins (``EntryMeta.to_json`` writes "v" then "key", with no
#: spaces): the key a WAV entry names is these bytes, then 32 hex digits, then ``",``.
_JSON_START = b'{"v":%d,"key":"' % FORMAT_VERSION
#: How a WAV entry's metadata ends after ``"created":``, as ``to_json`` writes a creation time
#: (``repr`` of a float, from 1970 to long past any real clock: finite), and the closing brace.
_CREATED_END = re.compile(rb"[1-9][0-9]{0,18}\.[0-9]+}")


class WavCodec:
    """32-bit float WAV with an ``sptc`` chunk holding metadata and an XXH3-128 digest."""

    extension: ClassVar[str] = "wav"
    min_size: ClassVar[int] = _HEAD_SIZE + _DATA_HEAD.size + 4
    max_sample_rate: ClassVar[int] = 768_000

    def encode(self, audio: npt.NDArray[np.float32], meta: EntryMeta) -> list[bytes | memoryview]:
        payload = memoryview(audio.data).cast("B")
        meta_json = meta.to_json(len(audio))
        # Pad the JSON so that the samples start at an aligned offset.
        unpadded = _HEAD_SIZE + len(meta_json) + _DATA_HEAD.size
        padding = -unpadded % _ALIGN
        sptc_size = _SPTC_HEAD.size + len(meta_json) + padding
        digest = xxhash.xxh3_128(meta_json)
        digest.update(payload)
        riff_size = _HEAD_SIZE - 8 + len(meta_json) + padding + _DATA_HEAD.size + len(payload)
        head = _WAV_HEAD.pack(
            b"RIFF",
            riff_size,
            b"WAVE",
            b"fmt ",
            18,
            3,
            1,
            meta.sample_rate,
            meta.sample_rate * 4,
            4,
            32,
            0,
            b"fact",
            4,
            len(audio),
            b"sptc",
            sptc_size,
        )
        sptc = _SPTC_HEAD.pack(FORMAT_VERSION, 0, digest.digest(), len(meta_json))
        data_head = _DATA_HEAD.pack(b"data", len(payload))
        return [head + sptc + meta_json + b"\0" * padding + data_head, payload]

    def _parse(self, data: EntryBytes) -> tuple[int, int, memoryview, int, int]:
        """Check layout and digest; return (sample_rate, samples, json, data offset, n bytes)."""
        if len(data) < self.min_size:
            raise CorruptEntryError(f"file is {len(data)} bytes, too short for an entry")
        (
            riff,
            riff_size,
            wave,
            fmt,
            fmt_size,
            fmt_tag,
            channels,
            rate,
            byte_rate,
            align,
            bits,
            cb_size,
            fact,
            fact_size,
            samples,
            sptc,
            sptc_size,
        ) = _WAV_HEAD.unpack_from(data)
        if (riff, wave, fmt, fact, sptc) != (b"RIFF", b"WAVE", b"fmt ", b"fact", b"sptc") or (
            (fmt_size, fmt_tag, channels, align, bits, cb_size, fact_size)
            != (18, 3, 1, 4, 32, 0, 4)
        ):
            raise CorruptEntryError("not a sparktts_cache WAV entry")
        if riff_size + 8 != len(data):
            raise CorruptEntryError(
                f"file is {len(data)} bytes but its header says {riff_size + 8}"
            )
        version, _flags, digest, json_len = _SPTC_HEAD.unpack_from(data, _WAV_HEAD.size)
        if version != FORMAT_VERSION:
            raise CorruptEntryError(f"unknown entry format version {version}")
        data_at = _WAV_HEAD.size + sptc_size
        if json_len > sptc_size - _SPTC_HEAD.size or data_at + _DATA_HEAD.size > len(data):
            raise CorruptEntryError("metadata chunk overruns the file")
        tag, n_bytes = _DATA_HEAD.unpack_from(data, data_at)
        data_at += _DATA_HEAD.size
        if (
            tag != b"data"
            or n_bytes != samples * 4
            or data_at + n_bytes != len(data)
            or samples == 0
        ):
            raise CorruptEntryError("sample chunk does not match the header")
        view = memoryview(data)
        meta_json = view[_HEAD_SIZE : _HEAD_SIZE + json_len]
        hasher = xxhash.xxh3_128(meta_json)
        hasher.update(view[data_at:])
        if hasher.digest() != digest:
            raise CorruptEntryError("checksum mismatch")
        if byte_rate != rate * 4 or not 0 < rate <= self.max_sample_rate:
            raise CorruptEntryError("inconsistent sample rate")
        return rate, samples, meta_json, data_at, n_bytes

    @staticmethod
    def _check_names(meta_json: memoryview, key: str) -> None:
        """Raise CorruptEntryError unless the metadata names ``key``.

        The metadata starts with ``{"v":1,"key":"<key>",`` and the digest covers it, so comparing
        those bytes is the whole check (a few hundred nanoseconds); ``decode`` also parses it, and
        refuses a second "key".
        """
        expected = b'%s%s",' % (_JSON_START, key.encode("utf-8", "surrogatepass"))
        if meta_json[: len(expected)] != expected:
            named = bytes(meta_json[len(_JSON_START) : len(_JSON_START) + 32])
            raise CorruptEntryError(
                f"entry belongs to key {named.decode('ascii', 'replace')}, not {key}"
            )

    def decode_audio(self, data: EntryBytes, key: str) -> npt.NDArray[np.float32]:
        _rate, samples, meta_json, offset, _n = self._parse(data)
        self._check_names(meta_json, key)
        return np.frombuffer(data, dtype="<f4", count=samples, offset=offset)

    def decode_for(
        self, data: EntryBytes, key: str, recorded: bytes
    ) -> tuple[npt.NDArray[np.float32], EntryMeta | None]:
        rate, samples, meta_json, offset, _n = self._parse(data)
        # The verified hot path: metadata that is, byte for byte under the digest, what
        # ``EntryMeta.to_json`` writes for this key, this request's text and parameters (right
        # after '"key":"<key>",') and this sample chunk, with a creation time as it writes one, is
        # this request's entry, and one the full parse would accept; anything else is parsed.
        known = b'%s%s",%s%d,"samples":%d,"created":' % (
            _JSON_START,
            key.encode("utf-8", "surrogatepass"),
            recorded,
            rate,
            samples,
        )
        whole = meta_json.tobytes()
        if whole.startswith(known) and _CREATED_END.fullmatch(whole, len(known)) is not None:
            return np.frombuffer(data, dtype="<f4", count=samples, offset=offset), None
        entry = self.decode(data, key)
        return entry.audio, entry.meta

    def decode(self, data: EntryBytes, key: str) -> Entry:
        rate, samples, meta_json, offset, _n = self._parse(data)
        self._check_names(meta_json, key)
        meta, record = EntryMeta.from_json(bytes(meta_json), self.max_sample_rate)
        if meta.key != key or meta.sample_rate != rate or record["samples"] != samples:
            raise CorruptEntryError("metadata does not match the sample chunk")
        return Entry(np.frombuffer(data, dtype="<f4", count=samples, offset=offset), meta)


class FlacCodec:
    """16-bit FLAC; the Vorbis comment holds the metadata and an XXH3-128 of the 16-bit samples."""

    extension: ClassVar[str] = "flac"
    min_size: ClassVar[int] = 42  # "fLaC" + STREAMINFO
    max_sample_rate: ClassVar[int] = 655_350

    def encode(self, audio: npt.NDArray[np.float32], meta: EntryMeta) -> list[bytes | memoryview]:
        import soundfile

        pcm = np.clip(np.rint(audio * 32768.0), -32768, 32767).astype("<i2")
        extra = {"pcm16_xxh3_128": xxhash.xxh3_128_hexdigest(pcm.tobytes())}
        buffer = io.BytesIO()
        with soundfile.SoundFile(
            buffer, "w", meta.sample_rate, 1, subtype="PCM_16", format="FLAC"
        ) as flac:
            flac.comment = meta.to_json(len(pcm), extra).decode("utf-8")
            flac.write(pcm)
        return [buffer.getvalue()]

    def decode(self, data: EntryBytes, key: str) -> Entry:
        import soundfile

        if bytes(data[:4]) != b"fLaC":
            raise CorruptEntryError("not a FLAC file")
        try:
            with soundfile.SoundFile(io.BytesIO(memoryview(data).tobytes())) as flac:
                comment = flac.comment
                rate = flac.samplerate
                channels = flac.channels
                declared = flac.frames
                # Nothing is allocated for the samples before the header is checked against the
                # metadata and the file's real size (STREAMINFO may declare 2**36 - 1 samples).
                meta, record = EntryMeta.from_json(comment.encode("utf-8"), self.max_sample_rate)
                if meta.key != key:
                    raise CorruptEntryError(f"entry belongs to key {meta.key}, not {key}")
                if channels != 1 or rate != meta.sample_rate or declared != record["samples"]:
                    raise CorruptEntryError("FLAC stream does not match its metadata")
                if declared > max_flac_samples(len(data)):
                    raise CorruptEntryError(
                        f"FLAC stream declares {declared} samples, more than a file of "
                        f"{len(data)} bytes can hold"
                    )
                pcm = flac.read(declared, dtype="int16")
        except (soundfile.LibsndfileError, RuntimeError, ValueError, UnicodeError) as exc:
            raise CorruptEntryError(f"undecodable FLAC: {exc}") from None
        if pcm.ndim != 1 or len(pcm) != declared:
            raise CorruptEntryError("FLAC stream does not match its metadata")
        if xxhash.xxh3_128_hexdigest(pcm.astype("<i2").tobytes()) != record.get("pcm16_xxh3_128"):
            raise CorruptEntryError("checksum mismatch")
        return Entry(pcm.astype(np.float32) * np.float32(1.0 / 32768.0), meta)

    def decode_audio(self, data: EntryBytes, key: str) -> npt.NDArray[np.float32]:
        return self.decode(data, key).audio

    def decode_for(
        self, data: EntryBytes, key: str, recorded: bytes
    ) -> tuple[npt.NDArray[np.float32], EntryMeta | None]:
        entry = self.decode(data, key)  # parses the metadata anyway
        return entry.audio, entry.meta


#: The fewest bytes a FLAC frame takes: a 6-byte header (sync and coding fields, a frame number of
#: at least one byte, CRC-8), a subframe of at least one byte and a 2-byte CRC-16 (9 bytes; a
#: constant 16-bit subframe, as silence is coded, takes 3, for 11). 8 keeps the bound safe.
_MIN_FLAC_FRAME_BYTES = 8
#: The most samples one FLAC frame holds (its block size is a 16-bit count minus one).
_MAX_FLAC_BLOCK = 65536


def max_flac_samples(file_size: int) -> int:
    """The most samples a FLAC file of ``file_size`` bytes can hold, and any entry may hold.

    Every frame takes at least 8 bytes and holds at most 65,536 samples, so no FLAC file codes more
    than 8,192 samples a byte (silence at 16 kHz, the densest real case, codes about 340); and no
    entry holds more samples than ``MAX_ENTRY_BYTES`` of float32 (``cache_data`` refuses them).
    So a crafted 300-byte header that declares 2**36 samples gets at most 2.4 million (4.7 MiB of
    int16) allocated, not 128 GiB.
    """
    frames = file_size // _MIN_FLAC_FRAME_BYTES + 1
    return min(frames * _MAX_FLAC_BLOCK, MAX_ENTRY_BYTES // 4)


_CODECS: dict[str, Codec] = {codec.extension: codec for codec in (WavCodec(), FlacCodec())}
#: The entry formats by name, which is also their files' extension: WAV first, the default.
CODEC_NAMES = tuple(_CODECS)


def codec_named(name: object, option: str = "audio_format") -> Codec:
    """The codec of the entry format ``name`` (one of :data:`CODEC_NAMES`: ``"wav"`` or
    ``"flac"``), the extension of its files; the one place a format is chosen by name.

    Raises:
        InvalidOptionError: for any other name, naming ``option`` (what gave it) and the formats.
    """
    codec = _CODECS.get(name) if isinstance(name, str) else None
    if codec is None:
        raise InvalidOptionError(f"{option} must be one of {sorted(_CODECS)}, got {name!r}")
    return codec


def encode_entry(
    key: str,
    audio: npt.NDArray[Any],
    text: str,
    params: Mapping[str, Any] | None = None,
    *,
    sample_rate: int | None = None,
    default_rate: int | None = DEFAULT_SAMPLE_RATE,
) -> bytes:
    """Check the arguments of a ``cache_data`` call and return the whole entry as bytes.

    The bytes are the file store's self-checking WAV entry (metadata and XXH3-128 digest inside),
    so a blob backend stores exactly what the file store and Redis store, and accepts and refuses
    exactly what they do. Read it back with :func:`decode_entry`.

    Args:
        key: the entry's key (checked here).
        audio, text, params: as given to ``cache_data``.
        sample_rate: the audio's rate; ``default_rate`` (the backend's default) if None.
        default_rate: None for a backend without a default: a call without ``sample_rate`` then
            raises ``InvalidOptionError``.

    Raises:
        InvalidKeyError, UnsupportedTypeError, InvalidAudioError, InvalidTextError,
        InvalidParamsError: for bad arguments.

    Notes:
        Costs a copy and a checksum of the audio: for long audio, call it in a worker thread.
    """
    codec = codec_named("wav")
    samples, meta = new_entry(
        check_key(key), audio, text, params, sample_rate,
        None if default_rate is None else check_sample_rate(default_rate), codec,
    )  # fmt: skip
    return b"".join(codec.encode(samples, meta))


def decode_entry(key: str, data: bytes | bytearray | memoryview | None) -> Entry | None:
    """Return the entry of ``key`` held in ``data`` (from :func:`encode_entry`), or None.

    None (nothing stored) is a miss. So is anything that is not a whole, checksum-valid entry of
    ``key``: a truncated, bit-flipped or foreign blob, or another key's entry. Those are logged as
    warnings, never raised, as every backend treats damage.

    The samples are a writable view of ``data`` when it is a ``bytearray`` (hand over one nobody
    else writes to); any other buffer is copied first, so the caller owns what it gets.
    """
    if data is None:
        return None
    buffer = data if isinstance(data, bytearray) else bytearray(data)
    try:
        entry = codec_named("wav").decode(buffer, key)
    except CorruptEntryError as exc:
        log.warning("corrupt entry %s (%s); treating it as a miss", key, exc)
        return None
    return entry
