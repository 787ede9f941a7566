"""Streaming encoders for OpenAI's six response formats, through PyAV (FFmpeg's libraries).

Each format is the stream an ordinary decoder reads, at OpenAI's 24 kHz mono:

=======  =======================  ================  =========================================
format   container / codec        content type      note
=======  =======================  ================  =========================================
mp3      MP3 / LAME, 64 kbit/s    ``audio/mpeg``    no Xing header (it needs a seek back)
opus     Ogg / libopus, 32 kbit/s ``audio/opus``    one Ogg page per packet, flushed each segment
aac      ADTS / FFmpeg AAC        ``audio/aac``     self-framed, so any cut point decodes
flac     FLAC, 16-bit             ``audio/flac``    STREAMINFO completed at the end (see below)
wav      RIFF / PCM 16-bit        ``audio/wav``     sizes 0xFFFFFFFF as it streams, exact at the end
pcm      raw s16le                ``audio/pcm``     no header, as OpenAI sends it
=======  =======================  ================  =========================================

The output goes to a sink, not a file: what :meth:`StreamEncoder.encode` returns can be sent at
once, and is final. Encoders keep a little audio back (their look-ahead); it comes out with the
next segment, and :meth:`StreamEncoder.finish` flushes the rest.

FLAC and WAV state the stream's length in their header, which FFmpeg's muxers write before the
first sample (FLAC's STREAMINFO with 0 samples, no frame sizes and no MD5; WAV's RIFF and data
sizes as ``0xFFFFFFFF``) and rewrite at the end only if they can seek back. For these two the sink
lets them seek: the rewrite lands in a copy of the stream's first bytes, not in what was sent,
and :attr:`StreamEncoder.final_header` gives those bytes as they end up (STREAMINFO's sample count,
frame sizes and MD5 of the samples; the RIFF and data sizes), for a stored copy of the stream. A
streamed WAV with open sizes is read by every decoder; a FLAC with 0 samples is not (libsndfile
refuses it), so the server sends FLAC whole (:attr:`AudioFormat.sent_whole`).

Speed is applied here, after the segment cache, by FFmpeg's ``atempo`` (tempo without a pitch
change), so one cached segment serves every speed. Each segment is stretched on its own (the
filter is flushed at the segment's end), so that its audio goes out with it rather than waiting for
the next; segments are separated by silence, so nothing is heard at the seams.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.filter
import numpy as np
import numpy.typing as npt

__all__ = ["FORMATS", "OUTPUT_RATE", "AudioFormat", "StreamEncoder", "tempo_factors"]

#: OpenAI's output rate, which clients of ``pcm`` assume.
OUTPUT_RATE = 24000


@dataclass(frozen=True)
class AudioFormat:
    name: str
    container: str
    codec: str
    content_type: str
    bit_rate: int | None = None
    options: tuple[tuple[str, str], ...] = ()
    #: The muxer rewrites the header with the stream's length at the end, if it can seek back.
    length_in_header: bool = False
    #: Readers need the header's length (libsndfile refuses a FLAC of 0 samples): the server
    #: makes the whole stream before it sends the first byte.
    sent_whole: bool = False


FORMATS: dict[str, AudioFormat] = {
    f.name: f
    for f in [
        AudioFormat("mp3", "mp3", "libmp3lame", "audio/mpeg", 64000, (("write_xing", "0"),)),
        # page_duration: a page per packet, so Ogg never holds a segment's audio back
        AudioFormat("opus", "ogg", "libopus", "audio/opus", 32000, (("page_duration", "1"),)),
        AudioFormat("aac", "adts", "aac", "audio/aac", 64000),
        AudioFormat("flac", "flac", "flac", "audio/flac", length_in_header=True, sent_whole=True),
        AudioFormat("wav", "wav", "pcm_s16le", "audio/wav", length_in_header=True),
        AudioFormat("pcm", "s16le", "pcm_s16le", "audio/pcm"),
    ]
}


def tempo_factors(speed: float) -> list[float]:
    """``speed`` as a chain of ``atempo`` factors, each within the filter's 0.5-2.0."""
    factors: list[float] = []
    while speed > 2.0:
        factors.append(2.0)
        speed /= 2.0
    while speed < 0.5:
        factors.append(0.5)
        speed /= 0.5
    return [*factors, speed]


class _Sink:
    """A write-only file for PyAV: what the muxer wrote since the last :meth:`take`."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


#: How much of a stream's start :class:`_HeaderSink` keeps for the muxer to rewrite (FLAC's
#: STREAMINFO ends at byte 42, WAV's data size at byte 44).
HEADER_BYTES = 4096


class _HeaderSink(_Sink):
    """A :class:`_Sink` the muxer may seek back in, to rewrite its header at the end.

    What is appended is handed out by :meth:`take` as before; a write over bytes already written
    lands in ``head``, a copy of the stream's first :data:`HEADER_BYTES`, and ``rewritten`` is how
    far such writes reached (0: none).
    """

    __slots__ = ("end", "head", "position", "rewritten")

    def __init__(self) -> None:
        super().__init__()
        self.head = bytearray()
        self.rewritten = 0
        self.position = 0
        self.end = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if self.position == self.end:
            if self.end < HEADER_BYTES:
                self.head += chunk[: HEADER_BYTES - self.end]
            self.parts.append(chunk)
            self.end += len(chunk)
            self.position = self.end
            return len(chunk)
        stop = self.position + len(chunk)
        # The muxers rewrite a few fixed header fields; anything else would be sent wrong.
        assert stop <= min(self.end, HEADER_BYTES), "the muxer rewrote more than the header"
        self.head[self.position : stop] = chunk
        self.rewritten = max(self.rewritten, stop)
        self.position = stop
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.end}[whence]
        assert 0 <= base + offset <= self.end, "the muxer sought past the stream's end"
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def final_header(self) -> bytes:
        return bytes(self.head[: self.rewritten])


class StreamEncoder:
    """Encode mono float32 audio, segment by segment, into one stream of ``audio_format``.

    Args:
        audio_format: a key of :data:`FORMATS`.
        input_rate: the sample rate of the audio given to :meth:`encode`.
        speed: the tempo, 0.25-4.0 (1.0: as synthesised).

    Notes:
        Blocking and not thread-safe: call it from one worker thread at a time (an encoder
        segment takes milliseconds; the server runs it off the event loop). :meth:`close` frees
        FFmpeg's state if the stream is abandoned; :meth:`finish` closes it too.
    """

    def __init__(self, audio_format: str, input_rate: int, speed: float = 1.0) -> None:
        spec = FORMATS[audio_format]
        self.format = spec
        self.input_rate = input_rate
        self.speed = speed
        self._sink = _HeaderSink() if spec.length_in_header else _Sink()
        # bitexact: no random Ogg serial number and no encoder version tag, so the same audio
        # always gives the same bytes (and the same ETag) on every server of the same build
        options = {"fflags": "+bitexact", **dict(spec.options)}
        container: Any = av.open(self._sink, mode="w", format=spec.container, options=options)
        stream: Any = container.add_stream(spec.codec, rate=OUTPUT_RATE, layout="mono")
        if spec.bit_rate is not None:
            stream.bit_rate = spec.bit_rate
        self._container = container
        self._stream = stream
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=OUTPUT_RATE)
        self._pts = 0
        self._closed = False

    def encode(self, samples: npt.NDArray[np.float32]) -> bytes:
        """Encode one segment's samples; return the bytes that are ready (maybe empty)."""
        if len(samples):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
                format="flt",
                layout="mono",
            )
            frame.sample_rate = self.input_rate
            frame.time_base = Fraction(1, self.input_rate)
            frame.pts = self._pts
            self._pts += len(samples)
            for stretched in self._stretch(frame):
                self._write(self._resampler.resample(stretched))
        return self._sink.take()

    def finish(self) -> bytes:
        """Flush the resampler, encoder and muxer; return the stream's last bytes."""
        self._write(self._resampler.resample(None))
        self._mux(self._stream.encode(None))
        self.close()
        return self._sink.take()

    @property
    def final_header(self) -> bytes:
        """After :meth:`finish`: the stream's first bytes as the muxer rewrote them once the
        length was known, to put in place of the streamed ones in a stored copy (same length:
        FLAC's first 42 bytes, WAV's first 44); empty for a format whose header holds no length.
        """
        assert self._closed, "the header is final only after finish()"
        return self._sink.final_header() if isinstance(self._sink, _HeaderSink) else b""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.close()

    def _write(self, frames: list[Any]) -> None:
        for frame in frames:
            frame.pts = None  # the encoder numbers its own frames
            self._mux(self._stream.encode(frame))

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            self._container.mux(packet)

    def _stretch(self, frame: Any) -> list[Any]:
        if self.speed == 1.0:
            return [frame]
        graph = av.filter.Graph()
        node = graph.add_abuffer(
            format="flt", sample_rate=self.input_rate, layout="mono", time_base=frame.time_base
        )
        source = node
        for factor in tempo_factors(self.speed):
            tempo = graph.add("atempo", str(factor))
            node.link_to(tempo)
            node = tempo
        sink = graph.add("abuffersink")
        node.link_to(sink)
        graph.configure()
        source.push(frame)
        source.push(None)
        out = []
        while True:
            try:
                out.append(sink.pull())
            except (av.BlockingIOError, av.EOFError):
                return out
