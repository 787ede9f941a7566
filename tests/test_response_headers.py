"""FLAC and WAV responses state their length in their header, and readers rely on it: libsndfile
refuses a FLAC whose STREAMINFO says 0 samples (what FFmpeg's muxer leaves when it cannot seek
back). So a stored response carries its exact header (FLAC: sample count, frame sizes and MD5;
WAV: RIFF and data sizes), a FLAC miss is made whole and sent with that header, and a streamed
WAV keeps its open sizes, which libsndfile accepts. Saved to a file, every such response reads
back as the very samples of the same request's ``pcm``."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import soundfile
import xxhash

from sparktts_cache import SyncTTSCache
from sparktts_cache._file.blobs import BLOB_TRAILER
from sparktts_cache.server.audio_formats import FORMATS, StreamEncoder

from .speech_server import SpeechServer, running_server

RATE = 16000
#: FLAC's STREAMINFO: bytes 8-42 of the file; its sample count is the low 36 bits of bytes 18-26,
#: its MD5 (of the samples as 16-bit little-endian) bytes 26-42.
STREAMINFO = slice(8, 42)
WAV_HEADER_BYTES = 44


def segments() -> list[npt.NDArray[np.float32]]:
    """Three segments of a tone, of different lengths, as an engine's 16 kHz float audio."""
    return [
        (0.3 * np.sin(np.arange(length) * 0.05 * (1 + n))).astype(np.float32)
        for n, length in enumerate([12_345, 30_000, 7_777])
    ]


def encoded(audio_format: str) -> tuple[list[bytes], bytes]:
    """What :class:`StreamEncoder` hands out for :func:`segments`, piece by piece (the last
    piece is :meth:`~StreamEncoder.finish`'s), and its final header."""
    encoder = StreamEncoder(audio_format, RATE)
    pieces = [encoder.encode(samples) for samples in segments()]
    pieces.append(encoder.finish())
    return pieces, encoder.final_header


def flac_lengths(data: bytes) -> tuple[int, bytes]:
    """A FLAC file's STREAMINFO sample count and MD5."""
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    return int.from_bytes(data[18:26], "big") & ((1 << 36) - 1), data[26:42]


def test_libsndfile_refuses_the_flac_the_muxer_streams_and_reads_the_completed_one() -> None:
    pieces, header = encoded("flac")
    streamed = b"".join(pieces)
    pcm = b"".join(encoded("pcm")[0])
    frames = len(pcm) // 2
    assert flac_lengths(streamed) == (0, bytes(16))  # unknown: what the muxer leaves unseekable
    info = soundfile.info(io.BytesIO(streamed))
    assert info.frames != frames  # libsndfile takes 0 for "unknown" (2**63 - 1 frames)
    with pytest.raises((ValueError, MemoryError, RuntimeError)):  # "array is too big"
        soundfile.read(io.BytesIO(streamed))
    stored = header + streamed[len(header) :]
    assert soundfile.info(io.BytesIO(stored)).frames == frames
    samples, rate = soundfile.read(io.BytesIO(stored), dtype="int16")
    assert rate == 24000
    np.testing.assert_array_equal(samples, np.frombuffer(pcm, dtype="<i2"))


def test_the_final_header_is_the_streamed_one_with_its_lengths_filled_in() -> None:
    pcm = b"".join(encoded("pcm")[0])
    pieces, header = encoded("flac")
    streamed = b"".join(pieces)
    assert len(header) == STREAMINFO.stop and header[:8] == streamed[:8]
    assert flac_lengths(header) == (len(pcm) // 2, hashlib.md5(pcm).digest())
    # The smallest frame's size was 0 (unknown) and the largest's the encoder's bound; the block
    # sizes and the format were already right.
    assert streamed[12:15] == bytes(3) and header[12:15] != bytes(3)
    assert int.from_bytes(header[15:18], "big") <= int.from_bytes(streamed[15:18], "big")
    assert header[8:12] == streamed[8:12] and header[18:21] == streamed[18:21]

    pieces, header = encoded("wav")
    streamed = b"".join(pieces)
    assert streamed[4:8] == streamed[40:44] == b"\xff\xff\xff\xff"
    assert len(header) == WAV_HEADER_BYTES
    assert int.from_bytes(header[4:8], "little") == len(streamed) - 8
    assert int.from_bytes(header[40:44], "little") == len(streamed) - WAV_HEADER_BYTES == len(pcm)
    assert header[8:40] == streamed[8:40] and header[:4] == streamed[:4]
    for audio_format in FORMATS.keys() - {"flac", "wav"}:
        assert encoded(audio_format)[1] == b"", audio_format


def test_a_wav_still_streams_each_segment_at_once() -> None:
    # The muxer may seek back in a WAV's sink now: what each segment gives out must not change.
    wav, _ = encoded("wav")
    pcm, _ = encoded("pcm")
    assert [len(piece) for piece in wav] == [WAV_HEADER_BYTES + len(pcm[0])] + [
        len(piece) for piece in pcm[1:]
    ]
    assert all(pcm[:-1])  # every segment's audio came out with it


# --- the server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    with running_server(tmp_path_factory.mktemp("headers") / "cache") as running:
        yield running


def speak(
    server: SpeechServer,
    text: str,
    audio_format: str,
    *,
    speed: float = 1.0,
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, bool]:
    """The response, and whether it was the stored one (read from /metrics: ``X-Cache`` is not
    sent by every configuration)."""
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": audio_format,
            "speed": speed}  # fmt: skip
    hits = stored_responses_served(server)
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return response, stored_responses_served(server) > hits


def stored_responses_served(server: SpeechServer) -> float:
    return server.metric("sparktts_cache_hits_total", 'kind="response"')


def pcm_samples(server: SpeechServer, text: str, speed: float = 1.0) -> npt.NDArray[np.int16]:
    samples = np.frombuffer(speak(server, text, "pcm", speed=speed)[0].content, dtype="<i2")
    assert len(samples) > 24000  # over a second of speech
    return samples


def read_saved(path: Path, body: bytes) -> tuple[npt.NDArray[np.int16], int]:
    """``body`` saved as ``path``, read back by libsndfile: the samples, and the frame count its
    header gives."""
    path.write_bytes(body)
    samples, rate = soundfile.read(path, dtype="int16")
    assert rate == 24000
    return samples, soundfile.info(path).frames


def stored_blobs(server: SpeechServer, audio_format: str, body: bytes) -> list[Path]:
    """The stored responses whose bytes are ``body``."""
    return [
        path
        for path in server.cache_dir.rglob(f"*.{audio_format}.blob")
        if path.read_bytes()[: -BLOB_TRAILER.size] == body
    ]


def stored_blob(server: SpeechServer, audio_format: str, body: bytes) -> Path:
    (found,) = stored_blobs(server, audio_format, body)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("audio_format", ["flac", "wav"])
def test_a_miss_and_a_stored_hit_read_back_with_exact_lengths(
    server: SpeechServer, tmp_path: Path, audio_format: str
) -> None:
    text = f"A {audio_format} response is saved. A reader needs its length. Here it is exact."
    miss, stored = speak(server, text, audio_format)
    assert not stored
    pcm = pcm_samples(server, text)
    samples, frames = read_saved(tmp_path / f"miss.{audio_format}", miss.content)
    assert frames == len(pcm)
    np.testing.assert_array_equal(samples, pcm)
    if audio_format == "flac":  # made whole, sent with its length
        assert miss.headers["content-length"] == str(len(miss.content))
    else:  # streamed: the sizes left open
        assert "content-length" not in miss.headers
        assert miss.content[4:8] == miss.content[40:44] == b"\xff\xff\xff\xff"

    hit, stored = speak(server, text, audio_format)
    assert stored
    samples, frames = read_saved(tmp_path / f"hit.{audio_format}", hit.content)
    assert frames == len(pcm)
    np.testing.assert_array_equal(samples, pcm)
    if audio_format == "flac":
        assert hit.content == miss.content
        assert flac_lengths(hit.content)[0] == len(pcm)
    else:
        assert hit.content[WAV_HEADER_BYTES:] == miss.content[WAV_HEADER_BYTES:]
        assert int.from_bytes(hit.content[4:8], "little") == len(hit.content) - 8
        assert int.from_bytes(hit.content[40:44], "little") == 2 * len(pcm)

    # The stored bytes are what was sent; their trailer's digest is theirs (the ETag), and the
    # store's own check of the blob agrees.
    path = stored_blob(server, audio_format, hit.content)
    digest = xxhash.xxh3_128_hexdigest(hit.content)
    assert path.read_bytes()[-BLOB_TRAILER.size :][:16].hex() == digest
    assert hit.headers.get("etag", f'"{digest}"') == f'"{digest}"'  # where ETags are sent
    blob = SyncTTSCache(server.cache_dir).open_blob(path.name.split(".")[0], audio_format)
    assert blob is not None and blob.digest == digest
    assert b"".join(blob.chunks()) == hit.content


@pytest.mark.slow
@pytest.mark.parametrize(("audio_format", "offset"), [("flac", 22), ("wav", 41)])
def test_a_damaged_header_in_a_stored_response_is_caught(
    server: SpeechServer, audio_format: str, offset: int
) -> None:
    text = f"This {audio_format} header will be damaged on disk. The digest covers it."
    first, _ = speak(server, text, audio_format)
    good, stored = speak(server, text, audio_format)
    assert stored
    path = stored_blob(server, audio_format, good.content)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01  # the sample count (FLAC), the data size (WAV)
    path.write_bytes(bytes(data))
    again, stored = speak(server, text, audio_format)
    assert not stored  # not served: made again from the cached segments
    assert again.content == first.content
    assert "damaged blob" in server.log.read_text()
    restored, stored = speak(server, text, audio_format)
    assert stored and restored.content == good.content


@pytest.mark.slow
def test_a_long_flac_miss_is_spooled_and_sent_whole(server: SpeechServer, tmp_path: Path) -> None:
    """Slowed to 0.25, six sentences are minutes of audio: several MB of FLAC, past the spool's
    memory part and sent in several pieces."""
    text = " ".join(
        f"Sentence {number} of the spooled response is long enough to be a segment of its own."
        for number in range(6)
    )
    miss, stored = speak(server, text, "flac", speed=0.25)
    assert not stored and len(miss.content) > 2 << 20
    assert miss.headers["content-length"] == str(len(miss.content))
    pcm = pcm_samples(server, text, speed=0.25)
    samples, frames = read_saved(tmp_path / "long.flac", miss.content)
    assert frames == len(pcm)
    np.testing.assert_array_equal(samples, pcm)
    again, stored = speak(server, text, "flac", speed=0.25)
    assert stored and again.content == miss.content


@pytest.mark.slow
def test_flac_not_kept_and_flac_as_events_are_whole_too(server: SpeechServer) -> None:
    text = "Events of a FLAC response. They carry the stored bytes."
    bypass, _ = speak(server, text, "flac", headers={"Cache-Control": "no-store"})
    assert bypass.headers["content-length"] == str(len(bypass.content))
    assert stored_blobs(server, "flac", bypass.content) == []
    with httpx.stream(
        "POST", f"{server.url}/v1/audio/speech", timeout=120,
        json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "flac",
              "stream_format": "sse"},
    ) as response:  # fmt: skip
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data:")
        ]
    assert events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(event["audio"]) for event in events[:-1])
    assert audio == bypass.content
    assert soundfile.info(io.BytesIO(audio)).frames == len(pcm_samples(server, text))
    hit, stored = speak(server, text, "flac")
    assert stored and hit.content == audio
