"""``sparktts-cache serve`` end to end: the real ``openai`` client against a server subprocess
on 127.0.0.1, with the eSpeak engine (and one Piper voice from a voices file)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import av
import httpx
import numpy as np
import pytest
import soundfile
from openai import OpenAI

from sparktts_cache import LongTextTTS, TextSegmenter, load_tts_model
from sparktts_cache.server.audio_formats import tempo_factors

from .speech_server import SpeechServer, running_server

pytestmark = pytest.mark.slow

TEXT = "The server streams audio. Each segment is sent when ready. Nothing is made twice."
ALLOY = {"gender": "female", "pitch": "moderate", "speed": "moderate"}
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac",
                 "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}  # fmt: skip
#: Encoders pad: LAME and AAC add up to a few frames of priming and padding (1152 / 1024 samples).
DURATION_TOLERANCE = 0.12

VOICES_TOML = """
[voices.narrator]
engine = "espeak:en-us"
gender = "male"
pitch = "low"
description = "American, low"

[voices.joe]
engine = "piper"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    base = tmp_path_factory.mktemp("server")
    (base / "voices.toml").write_text(VOICES_TOML)
    options = ["--voices", str(base / "voices.toml"), "--max-input-chars", "12000",
               "--cache-headers"]  # fmt: skip
    with running_server(base / "cache", *options) as running:
        yield running


def client_of(server: SpeechServer, api_key: str = "unused") -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=api_key, max_retries=0)


def decoded_seconds(data: bytes, audio_format: str) -> float:
    if audio_format == "pcm":
        return len(data) / 2 / 24000
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        # Opus decoders always give 48 kHz; the stream says it was 24 kHz audio.
        assert stream.rate == (48000 if audio_format == "opus" else 24000)
        assert stream.channels == 1
        samples = sum(frame.samples for frame in container.decode(audio=0))
        return float(samples / stream.rate)


def library_seconds(server: SpeechServer, text: str, params: dict[str, str]) -> float:
    """The text's duration as the library makes it, from the server's own cache entries (the
    same ones: nothing is synthesised here; the server normalises its inputs by default)."""
    long_text = LongTextTTS(load_tts_model("espeak"), cache_dir=server.cache_dir, normalize=True)
    audio, fully_cached = anyio.run(long_text.generate, text, params)
    assert fully_cached and long_text.synthesis_count == 0
    return len(audio) / long_text.model.sample_rate


def sentences(count: int, tag: str) -> str:
    """``count`` sentences, each long enough (over 100 characters) to be a segment of its own."""
    text = " ".join(
        f"This is sentence {number} of the {tag} test, long enough that the segmenter keeps it "
        "apart from its neighbours."
        for number in range(count)
    )
    assert len(TextSegmenter().segment_text(text)) == count
    return text


def socket_buffer_bytes() -> int:
    """The most the kernel buffers on one loopback connection (both ends' largest buffers)."""
    read = Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[-1]
    write = Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[-1]
    return int(read) + int(write)


def test_every_format_decodes_to_the_texts_duration(server: SpeechServer) -> None:
    client = client_of(server)
    bodies = {}
    for audio_format in FORMATS:
        response = client.audio.speech.create(
            model="tts-1",
            voice="alloy",
            input=TEXT,
            response_format=audio_format,  # type: ignore[arg-type]
        )
        assert response.response.headers["content-type"] == CONTENT_TYPES[audio_format]
        bodies[audio_format] = response.content
    expected = library_seconds(server, TEXT, ALLOY)
    assert expected > 3
    for audio_format, body in bodies.items():
        assert decoded_seconds(body, audio_format) == pytest.approx(
            expected, abs=DURATION_TOLERANCE
        ), audio_format
    # WAV is a standard file libsndfile reads: 16-bit mono at 24 kHz, the pcm's very samples.
    samples, rate = soundfile.read(io.BytesIO(bodies["wav"]), dtype="int16")
    info = soundfile.info(io.BytesIO(bodies["wav"]))
    assert rate == 24000 and info.subtype == "PCM_16" and info.channels == 1
    assert bodies["wav"][4:8] == b"\xff\xff\xff\xff"  # streamed: the size left open
    pcm = np.frombuffer(bodies["pcm"], dtype="<i2")
    np.testing.assert_array_equal(samples, pcm)
    assert np.abs(pcm).max() > 1000  # speech, not silence


def test_speed_stretches_without_new_synthesis(server: SpeechServer) -> None:
    client = client_of(server)
    text = "Speed is applied after the cache. The same segments serve every speed."
    normal = client.audio.speech.create(model="tts-1", voice="echo", input=text,
                                        response_format="pcm")  # fmt: skip
    made = server.synthesised()
    for speed in (0.5, 2.0, 4.0):
        fast = client.audio.speech.create(
            model="tts-1", voice="echo", input=text, response_format="pcm", speed=speed
        )
        assert len(fast.content) / len(normal.content) == pytest.approx(1 / speed, rel=0.05)
    assert server.synthesised() == made


def test_sse_events_decode(server: SpeechServer) -> None:
    text = "Events carry the audio. The last one says it is done."
    with httpx.stream(
        "POST", f"{server.url}/v1/audio/speech", timeout=30,
        json={"model": "gpt-4o-mini-tts", "voice": "coral", "input": text,
              "response_format": "mp3", "stream_format": "sse"},
    ) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert len(events) >= 3 and events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["input_tokens"] == len(text)
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    expected = library_seconds(
        server, text, {"gender": "female", "pitch": "high", "speed": "moderate"}
    )
    assert decoded_seconds(audio, "mp3") == pytest.approx(expected, abs=DURATION_TOLERANCE)
    # The same request again is served from the stored response, as the same events.
    with httpx.stream(
        "POST", f"{server.url}/v1/audio/speech", timeout=30,
        json={"model": "gpt-4o-mini-tts", "voice": "coral", "input": text,
              "response_format": "mp3", "stream_format": "sse"},
    ) as again:  # fmt: skip
        assert again.headers["x-cache"] == "hit"
        replayed = [
            json.loads(line[6:]) for line in again.iter_lines() if line.startswith("data: ")
        ]
    assert b"".join(base64.b64decode(e["audio"]) for e in replayed[:-1]) == audio
    assert replayed[-1]["type"] == "speech.audio.done"


def test_a_multi_segment_text_streams_as_it_is_made_and_a_leaving_client_stops_it(
    server: SpeechServer,
) -> None:
    """The first piece arrives while most segments are still to be made (pcm slowed to 0.25 is
    over 1 MB a segment: 80 of them are more than the socket buffers can hold, so the server
    cannot run ahead to the end); then the client leaves, and the server stops synthesising."""
    count = 80
    text = sentences(count, "disconnect")
    assert count * 1_000_000 > 2 * socket_buffer_bytes()
    kept = set(server.cache_dir.rglob("*.pcm.blob"))  # stored responses
    before = server.synthesised()
    with httpx.Client(timeout=30) as http, http.stream(
        "POST", f"{server.url}/v1/audio/speech",
        json={"model": "tts-1", "voice": "ash", "input": text, "response_format": "pcm",
              "speed": 0.25},
    ) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        assert response.headers["x-cache"] == "miss"
        pieces = response.iter_raw()  # kept: a dropped iterator closes the connection
        assert next(pieces)
        assert server.synthesised() - before < count
        del pieces
    # The connection is closed. Once the server has finished with the request (the only
    # request left in progress is this /metrics one), it must have stopped early.
    deadline = time.monotonic() + 30
    while server.metric("sparktts_requests_in_progress") > 1:
        assert time.monotonic() < deadline, "the abandoned request is still running"
        time.sleep(0.05)
    made = server.synthesised() - before
    assert 1 <= made < count
    assert (
        not list(server.cache_dir.rglob("*.tmp"))
        and set(server.cache_dir.rglob("*.pcm.blob")) == kept
    )


def test_a_short_multi_segment_text_arrives_in_several_pieces(server: SpeechServer) -> None:
    text = sentences(6, "pieces")
    pieces = []
    with httpx.stream(
        "POST", f"{server.url}/v1/audio/speech", timeout=30,
        json={"model": "tts-1", "voice": "nova", "input": text, "response_format": "wav"},
    ) as response:  # fmt: skip
        pieces = list(response.iter_raw())
    assert len(pieces) > 1
    assert soundfile.info(io.BytesIO(b"".join(pieces))).samplerate == 24000


def test_a_repeated_request_synthesises_nothing_and_is_served_whole(server: SpeechServer) -> None:
    client = client_of(server)
    text = sentences(2, "repeat")
    first = client.audio.speech.create(model="tts-1", voice="sage", input=text)
    assert first.response.headers["x-cache"] == "miss"
    made = server.synthesised()
    hits = server.metric("sparktts_cache_hits_total", 'kind="response"')
    again = client.audio.speech.create(model="tts-1", voice="sage", input=text)
    assert again.response.headers["x-cache"] == "hit"
    assert again.content == first.content
    assert server.synthesised() == made
    assert server.metric("sparktts_cache_hits_total", 'kind="response"') == hits + 1
    # The other formats of the same text need no synthesis either (the segments are cached).
    flac = client.audio.speech.create(
        model="tts-1", voice="sage", input=text, response_format="flac"
    )
    assert flac.response.headers["x-cache"] == "partial"
    assert flac.response.headers["x-cache-segments"] == "2/2"
    assert server.synthesised() == made


def test_etag_if_none_match_and_cache_control(server: SpeechServer) -> None:
    url = f"{server.url}/v1/audio/speech"
    body = {
        "model": "tts-1",
        "voice": "fable",
        "input": "Tags and cache control.",
        "response_format": "opus",
    }
    miss = httpx.post(url, json=body, timeout=30)
    assert miss.headers["x-cache"] == "miss" and "etag" not in miss.headers
    hit = httpx.post(url, json=body, timeout=30)
    etag = hit.headers["etag"]
    assert hit.headers["x-cache"] == "hit" and hit.content == miss.content
    # A POST is never conditional here (RFC 9110 section 13.1.2: the speech route has no
    # representation to match): If-None-Match, even the stored response's tag or *, is ignored.
    for tag in (etag, "*", '"0000"'):
        again = httpx.post(url, json=body, headers={"If-None-Match": tag}, timeout=30)
        assert again.status_code == 200 and again.content == miss.content
    made = server.synthesised()
    refreshed = httpx.post(url, json=body, headers={"Cache-Control": "no-cache"}, timeout=30)
    assert refreshed.headers["x-cache"] == "partial" and refreshed.content == miss.content
    assert server.synthesised() == made  # refreshing re-encodes; segments stay cached
    # no-store: neither served from nor kept in the response store.
    fresh = {**body, "input": "Nothing is kept of this one."}
    for _ in range(2):
        bypass = httpx.post(url, json=fresh, headers={"Cache-Control": "no-store"}, timeout=30)
        assert bypass.headers["x-cache"] in {"miss", "partial"}
    assert httpx.post(url, json=fresh, timeout=30).headers["x-cache"] == "partial"


def test_eight_concurrent_identical_requests_synthesise_six_segments_once(
    server: SpeechServer,
) -> None:
    text = sentences(6, "concurrency")
    client = client_of(server)
    barrier = threading.Barrier(8)
    bodies: list[bytes] = []
    failures: list[BaseException] = []
    before = server.synthesised()

    def request() -> None:
        try:
            barrier.wait(timeout=30)
            response = client.audio.speech.create(model="tts-1", voice="onyx", input=text,
                                                  response_format="pcm")  # fmt: skip
            bodies.append(response.content)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [] and len(bodies) == 8
    assert server.synthesised() - before == 6
    assert len(set(bodies)) == 1


def test_voices_file_and_listings(server: SpeechServer) -> None:
    client = client_of(server)
    listed = httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()
    names = {voice["id"] for voice in listed["voices"]}
    assert {"alloy", "ash", "shimmer", "verse", "narrator", "joe"} <= names
    assert all("/" not in json.dumps(voice) for voice in listed["voices"])  # no paths
    models = client.models.list()
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= {m.id for m in models.data}
    before = server.metric("sparktts_segments_synthesised_total", 'engine="piper"')
    joe = client.audio.speech.create(model="tts-1-hd", voice="joe", input="Piper speaks here.",
                                     response_format="wav")  # fmt: skip
    assert soundfile.info(io.BytesIO(joe.content)).duration > 0.5
    assert server.metric("sparktts_segments_synthesised_total", 'engine="piper"') == before + 1
    narrator = client.audio.speech.create(model="tts-1", voice="narrator", input="Good evening.",
                                          response_format="pcm")  # fmt: skip
    assert len(narrator.content) > 24000
    assert httpx.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"voice": "alloy", "input": "hi"}, "model"),
        ({"model": "whisper-1", "voice": "alloy", "input": "hi"}, "model"),
        ({"model": "tts-1", "voice": "alloy"}, "input"),
        ({"model": "tts-1", "voice": "alloy", "input": "   \n "}, "input"),
        ({"model": "tts-1", "voice": "alloy", "input": "x" * 12001}, "input"),
        ({"model": "tts-1", "voice": "alloy", "input": 5}, "input"),
        ({"model": "tts-1", "input": "hi"}, "voice"),
        ({"model": "tts-1", "voice": "../../etc/passwd", "input": "hi"}, "voice"),
        (
            {"model": "tts-1", "voice": "alloy", "input": "hi", "response_format": "ogg"},
            "response_format",
        ),
        ({"model": "tts-1", "voice": "alloy", "input": "hi", "speed": 4.5}, "speed"),
        ({"model": "tts-1", "voice": "alloy", "input": "hi", "speed": 0.1}, "speed"),
        ({"model": "tts-1", "voice": "alloy", "input": "hi", "speed": "fast"}, "speed"),
        ({"model": "tts-1", "voice": "alloy", "input": "hi", "speed": True}, "speed"),
        (
            {"model": "tts-1", "voice": "alloy", "input": "hi", "stream_format": "ws"},
            "stream_format",
        ),
        ({"model": "tts-1", "voice": "alloy", "input": "hi", "instructions": 3}, "instructions"),
        ([1, 2], None),
    ],
)
def test_bad_requests_are_400_in_openais_shape(
    server: SpeechServer, body: object, param: str | None
) -> None:
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "Traceback" not in response.text and "etc/passwd" not in response.text


JSON = {"Content-Type": "application/json"}


def test_other_errors_keep_the_shape(server: SpeechServer) -> None:
    url = f"{server.url}/v1/audio/speech"
    for response, status in [
        (httpx.post(url, content=b"{not json", headers=JSON, timeout=10), 400),
        (httpx.post(url, content=b"\xff\xfe", headers=JSON, timeout=10), 400),
        (httpx.post(url, content=b"x" * 200_000, headers=JSON, timeout=10), 413),
        (httpx.post(url, content=b"{}", timeout=10), 415),
        (httpx.get(url, timeout=10), 405),
        (httpx.get(f"{server.url}/v1/nothing", timeout=10), 404),
    ]:
        assert response.status_code == status
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    # The SDK raises its own error from the shape.
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        client_of(server).audio.speech.create(model="tts-1", voice="nobody", input="hi")
    assert caught.value.status_code == 400 and "voice" in str(caught.value)


def test_api_key_and_limits(tmp_path: Path) -> None:
    options = ["--api-key", "s3cret", "--max-concurrent", "1", "--max-input-chars", "10000",
               "--queue-timeout", "0.5", "--cache-headers"]  # fmt: skip
    with running_server(tmp_path / "cache", *options) as server:
        url = f"{server.url}/v1/audio/speech"
        body = {"model": "tts-1", "voice": "alloy", "input": "Authorised speech."}
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}]:
            denied = httpx.post(url, json=body, headers=headers, timeout=10)
            assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
            assert denied.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{server.url}/v1/models", timeout=10).status_code == 401
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        import openai

        with pytest.raises(openai.AuthenticationError):
            client_of(server, "wrong").audio.speech.create(model="tts-1", voice="alloy", input="x")
        ok = client_of(server, "s3cret").audio.speech.create(**body)  # type: ignore[arg-type]
        assert len(ok.content) > 1000
        too_long = httpx.post(url, json={**body, "input": "y" * 10001},
                              headers={"Authorization": "Bearer s3cret"}, timeout=10)  # fmt: skip
        assert too_long.status_code == 400
        assert too_long.json()["error"]["code"] == "string_above_max_length"
        # One synthesis at a time: a second one while the first streams waits its turn for
        # --queue-timeout (0.5 s here), then is told to retry.
        auth = {"Authorization": "Bearer s3cret"}
        assert 80 * 1_000_000 > 2 * socket_buffer_bytes()  # the stream cannot end unread
        long_body = {**body, "input": sentences(80, "limit"), "response_format": "pcm",
                     "speed": 0.25}  # fmt: skip
        with httpx.Client(timeout=30) as http, http.stream("POST", url, json=long_body,
                                                          headers=auth) as streaming:  # fmt: skip
            pieces = streaming.iter_raw()  # kept: a dropped iterator closes the connection
            assert streaming.status_code == 200 and next(pieces)
            busy = httpx.post(url, json={**body, "input": "Another text."}, headers=auth,
                              timeout=10)  # fmt: skip
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
            assert busy.json()["error"]["code"] == "rate_limit_exceeded"
            # A stored response needs no synthesis slot.
            stored = httpx.post(url, json=body, headers=auth, timeout=10)
            assert stored.status_code == 200 and stored.headers["x-cache"] == "hit"


def test_tempo_factors_stay_within_atempos_range() -> None:
    for speed in (0.25, 0.3, 0.5, 1.0, 1.7, 2.0, 3.9, 4.0):
        factors = tempo_factors(speed)
        assert all(0.5 <= f <= 2.0 for f in factors)
        product = 1.0
        for factor in factors:
            product *= factor
        assert product == pytest.approx(speed)
