"""The example asyncio server, driven in-process with httpx."""

from __future__ import annotations

import io
import json
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest
import soundfile

from examples.server import create_app, wav_header
from sparktts_cache import LongTextTTS, TextSegmenter

from .models import CountingModel

pytestmark = pytest.mark.anyio

TEXTS = [
    "The server streams audio. Each segment is sent when ready. Nothing is made twice.",
    "Each segment is sent when ready. A new sentence here. Nothing is made twice.",
    "A new sentence here. The server streams audio. One more at the end.",
]
SEGMENTER = TextSegmenter(max_chars=40)


def _json(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def make_app(tmp_path: Path, model: CountingModel) -> tuple[httpx.AsyncClient, LongTextTTS]:
    long_text = LongTextTTS(model, cache_dir=tmp_path, segmenter=SEGMENTER, max_concurrency=2)
    transport = httpx.ASGITransport(app=create_app(long_text))
    return httpx.AsyncClient(transport=transport, base_url="http://tts.test"), long_text


async def test_streamed_wav_is_valid_and_matches_generate(tmp_path: Path) -> None:
    client, long_text = make_app(tmp_path, CountingModel())
    async with client:
        response = await client.post("/tts", json={"text": TEXTS[0], "params": {"gender": "male"}})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    body = response.content
    header = wav_header(16000)
    assert body.startswith(header)
    streamed = np.frombuffer(body[len(header) :], dtype="<f4")
    expected, fully_cached = await long_text.generate(TEXTS[0], {"gender": "male"})
    assert fully_cached is True  # the request cached every segment
    np.testing.assert_array_equal(streamed, expected)
    samples, rate = soundfile.read(io.BytesIO(body), dtype="float32")  # a real WAV reader agrees
    assert rate == 16000
    np.testing.assert_array_equal(samples, expected)


async def test_fifty_concurrent_requests_synthesise_each_segment_once(tmp_path: Path) -> None:
    model = CountingModel(delay=0.005)
    client, _long_text = make_app(tmp_path, model)
    bodies: dict[int, bytes] = {}

    async def request(number: int) -> None:
        response = await client.post("/tts", json={"text": TEXTS[number % 3]})
        assert response.status_code == 200
        bodies[number] = response.content

    async with client, anyio.create_task_group() as group:
        for number in range(50):
            group.start_soon(request, number)
    distinct = {segment for text in TEXTS for segment in SEGMENTER.segment_text(text)}
    assert dict(model.calls) == dict.fromkeys(distinct, 1)
    for number, body in bodies.items():
        assert body == bodies[number % 3]  # the same text always streams the same audio


@pytest.mark.parametrize(
    "body",
    [_json({"params": {}}), _json({"text": 5}),
     _json({"text": "x", "params": {"v": float("inf")}}), b"not json"],
    ids=["no text", "text not a string", "infinite parameter", "not json"],
)  # fmt: skip
async def test_bad_requests_are_refused(tmp_path: Path, body: bytes) -> None:
    client, _long_text = make_app(tmp_path, CountingModel())
    async with client:
        assert (await client.post("/tts", content=body)).status_code == 400


async def test_stats(tmp_path: Path) -> None:
    client, _long_text = make_app(tmp_path, CountingModel())
    async with client:
        await client.post("/tts", json={"text": "One. Two."})
        await client.post("/tts", json={"text": "One. Two."})
        stats = (await client.get("/cache/stats")).json()
    assert stats["syntheses"] == 1 and stats["writes"] == 1 and stats["hits"] >= 1
