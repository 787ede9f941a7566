"""Busy servers and failing streams, in process: a speech request past ``--max-concurrent`` waits
its turn (first come, first served) for up to ``--queue-timeout`` before a 429, a client that
leaves while it waits leaves the queue, and an SSE stream that fails after it started ends with
OpenAI's error event and a proper end of the body."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio import wait_all_tasks_blocked

from sparktts_cache import LongTextTTS, SyncTTSCache, TextSegmenter

from .models import CountingModel

pytest.importorskip("starlette", reason="the server's extra")
pytest.importorskip("espeakng_loader", reason="the server speaks through eSpeak NG")

from starlette.applications import Starlette
from starlette.types import Message

from sparktts_cache.server.app import create_app, load_engines
from sparktts_cache.server.config import ServerConfig
from sparktts_cache.server.metrics import Metrics
from sparktts_cache.server.state import ServerState

SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Waiting in line.", "response_format": "pcm"}


def state_of(tmp_path: Path, max_concurrent: int = 1, queue_timeout: float = 30.0) -> ServerState:
    config = ServerConfig(str(tmp_path), max_concurrent=max_concurrent,
                          queue_timeout=queue_timeout)  # fmt: skip
    return ServerState(config, {}, SyncTTSCache(tmp_path), Metrics())


@pytest.mark.anyio
async def test_waiters_are_served_first_come_first_served(tmp_path: Path) -> None:
    state = state_of(tmp_path)
    assert await state.acquire_synthesis()
    served: list[str] = []

    async def request(name: str) -> None:
        assert await state.acquire_synthesis()
        served.append(name)  # it keeps the slot: the test releases it for the next one

    async with anyio.create_task_group() as group:
        for name in "abcd":
            group.start_soon(request, name)
            await wait_all_tasks_blocked()  # each is in the queue before the next arrives
        assert state.waiting == 4 and state.running == 1
        state.release_synthesis()
        group.start_soon(request, "late")  # arrives as the slot is handed on: it waits too
        await wait_all_tasks_blocked()
        assert served == ["a"] and state.waiting == 4
        for expected in ("b", "c", "d", "late"):
            state.release_synthesis()
            await wait_all_tasks_blocked()
            assert served[-1] == expected
    state.release_synthesis()
    assert state.running == 0 and state.waiting == 0


@pytest.mark.anyio
async def test_a_wait_is_bounded_and_a_free_slot_is_taken_at_once(tmp_path: Path) -> None:
    state = state_of(tmp_path, queue_timeout=0.2)
    began = time.monotonic()
    assert await state.acquire_synthesis()
    assert time.monotonic() - began < 5
    began = time.monotonic()
    assert not await state.acquire_synthesis()  # the slot stays taken: 429 after the wait
    assert 0.15 <= time.monotonic() - began < 5
    assert state.waiting == 0 and state.running == 1
    state.release_synthesis()
    at_once = state_of(tmp_path, queue_timeout=0)
    assert await at_once.acquire_synthesis()  # 0: a free slot is still taken
    assert not await at_once.acquire_synthesis()  # and a busy one answered at once


@pytest.mark.anyio
async def test_a_waiter_that_leaves_leaves_the_queue(tmp_path: Path) -> None:
    state = state_of(tmp_path)
    assert await state.acquire_synthesis()
    served: list[str] = []

    async def request(name: str, scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            assert await state.acquire_synthesis()
            served.append(name)
            state.release_synthesis()

    leaving = anyio.CancelScope()
    async with anyio.create_task_group() as group:
        group.start_soon(request, "leaves", leaving)
        await wait_all_tasks_blocked()
        group.start_soon(request, "stays")
        await wait_all_tasks_blocked()
        assert state.waiting == 2
        leaving.cancel()
        await wait_all_tasks_blocked()
        assert state.waiting == 1
        state.release_synthesis()
    assert served == ["stays"] and state.running == 0


# -- the same through the app -------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    app = create_app(ServerConfig(cache_dir=str(tmp_path), max_concurrent=1))
    load_engines(app)
    yield app


def state_of_app(app: Starlette) -> ServerState:
    state: ServerState = app.state.server
    return state


def client_of(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


def test_a_queued_request_is_answered_when_a_slot_frees(app: Starlette) -> None:
    state = state_of_app(app)

    async def scenario() -> httpx.Response:
        assert await state.acquire_synthesis()  # the one slot is busy
        async with client_of(app) as client, anyio.create_task_group() as group:
            answers: list[httpx.Response] = []

            async def post() -> None:
                answers.append(await client.post("/v1/audio/speech", json=SPEECH))

            group.start_soon(post)
            while state.waiting == 0:
                await anyio.sleep(0.01)
            await anyio.sleep(0.2)
            assert answers == [] and state.waiting == 1  # still waiting, not refused
            state.release_synthesis()
        return answers[0]

    answer = anyio.run(scenario)
    assert answer.status_code == 200 and len(answer.content) > 10_000
    assert state.running == 0 and state.waiting == 0


def test_a_client_that_leaves_while_queued_leaves_the_queue(app: Starlette) -> None:
    state = state_of_app(app)
    body = json.dumps(SPEECH).encode()
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/audio/speech", "raw_path": b"/v1/audio/speech",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    sent: list[Message] = []

    async def scenario() -> None:
        assert await state.acquire_synthesis()
        gone = anyio.Event()
        messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Message:
            if messages:
                return messages.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        async def call() -> None:
            await app(scope, receive, send)

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            while state.waiting == 0:
                await anyio.sleep(0.01)
            gone.set()  # the client closes its connection while queued
            with anyio.fail_after(10):
                while state.waiting:
                    await anyio.sleep(0.01)
        assert state.running == 1  # still the test's: the one who left took no slot
        state.release_synthesis()
        async with client_of(app) as client:  # and the next one gets it at once
            answer = await client.post("/v1/audio/speech", json=SPEECH)
            assert answer.status_code == 200

    anyio.run(scenario)
    assert sent == []  # nothing was answered to the client that left


def test_a_full_queue_answers_429_after_the_timeout(tmp_path: Path) -> None:
    app = create_app(ServerConfig(str(tmp_path), max_concurrent=1, queue_timeout=0.3))
    load_engines(app)
    state = state_of_app(app)

    async def scenario() -> httpx.Response:
        assert await state.acquire_synthesis()
        async with client_of(app) as client:
            return await client.post("/v1/audio/speech", json=SPEECH)

    began = time.monotonic()
    answer = anyio.run(scenario)
    assert 0.25 <= time.monotonic() - began < 10
    assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["code"] == "rate_limit_exceeded"


def test_an_sse_stream_that_fails_ends_with_an_error_event(app: Starlette, tmp_path: Path) -> None:
    state = state_of_app(app)
    alloy = state.voices["alloy"]
    failing = LongTextTTS(CountingModel(fail_on="Second"), cache_dir=tmp_path / "failing",
                          segmenter=TextSegmenter(max_chars=30))  # fmt: skip
    state.voices["alloy"] = dataclasses.replace(alloy, long_text=failing)
    text = "The first sentence is here. Second one fails now."
    assert len(TextSegmenter(max_chars=30).segment_text(text)) == 2

    async def scenario() -> httpx.Response:
        async with client_of(app) as client:
            body = {**SPEECH, "input": text, "stream_format": "sse"}
            return await client.post("/v1/audio/speech", json=body)

    answer = anyio.run(scenario)
    assert answer.status_code == 200  # it had started: the first segment went out
    raw = answer.text
    assert raw.endswith("\n\n")
    events = [json.loads(line.removeprefix("data: ")) for line in raw.split("\n\n") if line]
    assert [event["type"] for event in events] == ["speech.audio.delta", "error"]
    error = events[-1]
    assert set(error) == {"type", "error"}
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["type"] == "server_error" and error["error"]["code"] == "engine_error"
    # Not kept: the same request fails again rather than replaying a cut response.
    again = anyio.run(scenario)
    assert '"type":"error"' in again.text
