"""``serve --wyoming``: Home Assistant's Wyoming protocol beside the HTTP API, driven with the
``wyoming`` package's ``AsyncTcpClient`` as Home Assistant drives it, against a server subprocess
with the eSpeak engine, on the same cache as the HTTP API."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from sparktts_cache import TextSegmenter

from .redis_server import free_port
from .speech_server import SpeechServer, running_server
from .test_cli import cli
from .test_server_startup import serve

pytestmark = pytest.mark.slow

TEXT = "Wyoming speaks from the cache. Each segment is sent when ready. Nothing is made twice."
#: Seconds a test waits for one event.
EVENT_SECONDS = 30.0


@dataclass
class Heard:
    """What a synthesis answered: its audio-start, the PCM, the events' types in order."""

    start: AudioStart | None = None
    audio: bytes = b""
    types: list[str] = field(default_factory=list)
    error: Error | None = None
    first_audio_at: float | None = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SpeechServer, int]]:
    port = free_port()
    cache_dir = tmp_path_factory.mktemp("wyoming") / "cache"
    with running_server(cache_dir, "--wyoming", f"tcp://127.0.0.1:{port}") as running:
        yield running, port


async def _read(client: AsyncTcpClient) -> Event:
    event = await asyncio.wait_for(client.read_event(), EVENT_SECONDS)
    assert event is not None, "the server closed the connection"
    return event


async def _listen(client: AsyncTcpClient, until: str) -> Heard:
    """Read events up to ``until`` (``audio-stop``, ``synthesize-stopped``) or an error."""
    heard = Heard()
    while True:
        event = await _read(client)
        heard.types.append(event.type)
        if AudioStart.is_type(event.type):
            heard.start = heard.start or AudioStart.from_event(event)
        elif AudioChunk.is_type(event.type):
            if heard.first_audio_at is None:
                heard.first_audio_at = time.perf_counter()
            heard.audio += AudioChunk.from_event(event).audio
        elif Error.is_type(event.type):
            heard.error = Error.from_event(event)
            return heard
        if event.type == until:
            return heard


async def synthesize(port: int, text: str, voice: SynthesizeVoice | None = None) -> Heard:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text=text, voice=voice).event())
        return await _listen(client, AudioStop().event().type)


def test_describe_lists_the_http_voices_with_streaming(server: tuple[SpeechServer, int]) -> None:
    running, port = server

    async def describe() -> Info:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await _read(client))

    info = asyncio.run(describe())
    http_voices = httpx.get(f"{running.url}/v1/audio/voices").json()["voices"]
    assert len(info.tts) == 1
    program = info.tts[0]
    assert program.supports_synthesize_streaming is True
    assert sorted(v.name for v in program.voices) == sorted(v["id"] for v in http_voices)
    assert all(v.languages for v in program.voices)


def test_synthesize_then_repeat_is_served_from_the_cache(
    server: tuple[SpeechServer, int],
) -> None:
    running, port = server
    text = "A first request over Wyoming. It is spoken once."
    before = running.synthesised()
    heard = asyncio.run(synthesize(port, text))
    assert heard.error is None
    assert heard.start is not None
    assert (heard.start.rate, heard.start.width, heard.start.channels) == (22050, 2, 1)
    assert heard.types[0] == "audio-start" and heard.types[-1] == "audio-stop"
    assert heard.types.count("audio-chunk") >= 2
    assert len(heard.audio) > 22050  # more than half a second of 16-bit samples
    made = running.synthesised() - before
    assert made >= 1
    again = asyncio.run(synthesize(port, text))
    assert again.audio == heard.audio
    assert running.synthesised() - before == made  # nothing synthesised the second time
    assert (
        running.metric(
            "sparktts_request_duration_seconds_count",
            'protocol="wyoming",route="synthesize",status="ok"',
        )
        >= 2
    )


def test_voice_by_name_and_by_language(server: tuple[SpeechServer, int]) -> None:
    _, port = server
    text = "Which voice is this?"
    echo = asyncio.run(synthesize(port, text, SynthesizeVoice(name="echo")))
    nova = asyncio.run(synthesize(port, text, SynthesizeVoice(name="nova")))
    assert echo.error is None and nova.error is None
    assert echo.audio != nova.audio  # male and female eSpeak voices
    english = asyncio.run(synthesize(port, text, SynthesizeVoice(language="en")))
    assert english.error is None and english.audio


def test_streaming_synthesis_speaks_sentences_before_the_stop(
    server: tuple[SpeechServer, int],
) -> None:
    _, port = server

    async def stream() -> tuple[Heard, Heard]:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(SynthesizeStart().event())
            for piece in ["The first sen", "tence streams. ", "The second"]:
                await client.write_event(SynthesizeChunk(text=piece).event())
            # The first sentence is complete: its audio comes before synthesize-stop is sent.
            first = await _listen(client, "audio-stop")
            await client.write_event(SynthesizeChunk(text=" follows it").event())
            await client.write_event(Synthesize(text="ignored inside a stream").event())
            await client.write_event(SynthesizeStop().event())
            rest = await _listen(client, SynthesizeStopped().event().type)
            return first, rest

    first, rest = asyncio.run(stream())
    assert first.error is None and rest.error is None
    assert first.types[0] == "audio-start" and first.audio
    assert rest.types[0] == "audio-start" and rest.audio
    assert rest.types[-2:] == ["audio-stop", "synthesize-stopped"]
    # The tail was spoken whole: the same audio as a synthesize of it.
    alone = asyncio.run(synthesize(port, "The second follows it"))
    assert alone.audio == rest.audio


def test_errors_are_events_and_the_connection_goes_on(
    server: tuple[SpeechServer, int],
) -> None:
    _, port = server

    async def errors() -> list[Heard]:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            heard = []
            for synthesize_event in [
                Synthesize(text="   "),
                Synthesize(text="Hello.", voice=SynthesizeVoice(name="nobody")),
                Synthesize(text="Hello.", voice=SynthesizeVoice(language="xx-unknown")),
                Synthesize(text="a" * 4097),
                Synthesize(text="Still here after the errors."),
            ]:
                await client.write_event(synthesize_event.event())
                heard.append(await _listen(client, "audio-stop"))
            return heard

    *refused, spoken = asyncio.run(errors())
    codes = [h.error.code if h.error else None for h in refused]
    assert codes == ["blank_text", "voice_not_found", "voice_not_found", "text_too_long"]
    assert spoken.error is None and spoken.audio


def test_a_stream_with_an_unknown_voice_is_one_error_then_stopped(
    server: tuple[SpeechServer, int],
) -> None:
    _, port = server

    async def refused_stream() -> tuple[list[str], Heard]:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="nobody")).event())
            for piece in ["Nobody speaks. ", "Not even ", "this."]:
                await client.write_event(SynthesizeChunk(text=piece).event())
            await client.write_event(SynthesizeStop().event())
            types = []
            while (event := await _read(client)).type != SynthesizeStopped().event().type:
                types.append(event.type)
            await client.write_event(Synthesize(text="The connection goes on.").event())
            return types, await _listen(client, "audio-stop")

    types, after = asyncio.run(refused_stream())
    assert types == ["error"]
    assert after.error is None and after.audio


def test_wyoming_then_http_synthesises_nothing_twice(server: tuple[SpeechServer, int]) -> None:
    running, port = server
    text = "Spoken first over Wyoming, then asked for over HTTP."
    before = running.synthesised()
    assert asyncio.run(synthesize(port, text, SynthesizeVoice(name="alloy"))).error is None
    made = running.synthesised() - before
    assert made >= 1
    response = httpx.post(
        f"{running.url}/v1/audio/speech",
        json={"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm"},
        timeout=60,
    )
    assert response.status_code == 200 and response.content
    assert running.synthesised() - before == made


def test_eight_concurrent_requests_over_both_protocols_synthesise_once(
    server: tuple[SpeechServer, int],
) -> None:
    running, port = server
    text = TEXT + " Eight clients ask at once."
    before = running.synthesised()

    async def http_request(client: httpx.AsyncClient) -> bytes:
        body = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm"}
        response = await client.post(f"{running.url}/v1/audio/speech", json=body)
        assert response.status_code == 200
        return response.content

    async def together() -> tuple[list[Heard], list[bytes]]:
        async with httpx.AsyncClient(timeout=60) as client:
            results = await asyncio.gather(
                *(synthesize(port, text) for _ in range(4)),
                *(http_request(client) for _ in range(4)),
            )
            heard = [r for r in results if isinstance(r, Heard)]
            bodies = [r for r in results if isinstance(r, bytes)]
            return heard, bodies

    heard, bodies = asyncio.run(together())
    assert all(h.error is None for h in heard)
    assert len({h.audio for h in heard}) == 1
    assert len(set(bodies)) == 1
    assert running.synthesised() - before == _segments(text)


def _segments(text: str) -> int:
    return len(TextSegmenter().segment_text(text))


def test_a_client_that_leaves_stops_its_synthesis(server: tuple[SpeechServer, int]) -> None:
    running, port = server
    sentences = [f"Sentence number {n} of a text nobody waits for." for n in range(40)]
    text = " ".join(sentences)

    async def leave() -> None:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Synthesize(text=text).event())
            while not AudioChunk.is_type((await _read(client)).type):
                pass

    before = running.synthesised()
    asyncio.run(leave())
    time.sleep(2.0)
    made = running.synthesised() - before
    assert 1 <= made < _segments(text)
    # The server goes on.
    assert asyncio.run(synthesize(port, "After a client left.")).error is None


def test_wyoming_access_log_lines(server: tuple[SpeechServer, int]) -> None:
    running, port = server
    asyncio.run(synthesize(port, "A line in the access log."))
    log = running.log.read_text()
    assert '"protocol": "wyoming"' in log and '"event": "synthesize"' in log


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--wyoming", "unix://wyoming.sock"], "--wyoming must be tcp://HOST:PORT"),
        (["--wyoming", "tcp://127.0.0.1"], "--wyoming must be tcp://HOST:PORT"),
        (["--wyoming", "tcp://127.0.0.1:10200", "--workers", "2"], "--wyoming needs one worker"),
        (["--wyoming", "tcp://127.0.0.1:10200", "--port", "10200"], "port 10200 is the HTTP"),
    ],
)
def test_a_bad_wyoming_option_is_one_line_and_exit_2(
    tmp_path: Path, options: list[str], expected: str
) -> None:
    status, stderr = serve(tmp_path, *options)
    assert status == 2 and stderr.count("\n") == 1, stderr
    assert expected in stderr, stderr


def test_a_wyoming_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = serve(tmp_path, "--wyoming", f"tcp://127.0.0.1:{port}")
    assert status == 2 and f"cannot listen on 127.0.0.1:{port}" in stderr, stderr


def test_the_environment_sets_it_and_a_bare_port_is_loopback(tmp_path: Path) -> None:
    port = free_port()
    with running_server(tmp_path / "cache", env={"SPARKTTS_WYOMING": str(port)}) as running:
        heard = asyncio.run(synthesize(port, "Set from the environment."))
        assert f"listening on tcp://127.0.0.1:{port}" in running.log.read_text()
    assert heard.error is None and heard.audio


def test_a_bad_value_in_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARKTTS_WYOMING", "udp://127.0.0.1:1")
    done = cli(tmp_path / "cache", "serve", "--port", str(free_port()), timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "SPARKTTS_WYOMING must be tcp://HOST:PORT" in done.stderr, done.stderr


def test_a_server_that_stops_ends_its_wyoming_work_first(tmp_path: Path) -> None:
    """SIGTERM during a synthesis: the connection is closed and its work ended (and logged)
    before the app's shutdown completes."""
    port = free_port()
    text = " ".join(f"Sentence {n} of a text cut short by a server that stops." for n in range(65))

    async def cut_short(running: SpeechServer) -> int:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Synthesize(text=text).event())
            while not AudioChunk.is_type((await _read(client)).type):
                pass
            running.proc.terminate()
            events = 1
            while await asyncio.wait_for(client.read_event(), EVENT_SECONDS) is not None:
                events += 1
            return events

    with running_server(tmp_path / "cache", "--wyoming", f"tcp://127.0.0.1:{port}") as running:
        asyncio.run(cut_short(running))
        assert running.proc.wait(timeout=15) is not None
    log = running.log.read_text()
    assert '"status": "disconnected"' in log, log
    ended = log.index('"status": "disconnected"')
    assert ended < log.index("Application shutdown complete"), log
    assert "Traceback" not in log, log


def test_a_url_is_spoken_as_its_domain(server: tuple[SpeechServer, int]) -> None:
    """Wyoming plans through the same call: its text is normalised as the server's default."""
    _, port = server
    heard = asyncio.run(synthesize(port, "Visit https://www.example.com/products/item?id=1 today."))
    plain = asyncio.run(synthesize(port, "Visit example dot com today."))
    assert heard.error is None and heard.audio == plain.audio
