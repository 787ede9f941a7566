"""One plan per request: a text is segmented once and the cache asked once, whether the request
comes through ``LongTextTTS``, the speech server or ``synth``; what a front end reports (the
``X-Cache`` header, the progress) is the plan that runs."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import numpy.typing as npt
import pytest

from sparktts_cache import (
    CacheStatus,
    InvalidOptionError,
    LongTextTTS,
    Plan,
    TextSegmenter,
    TTSCache,
    build_status,
    check_key,
    generate_cache_key,
)

from .models import CountingModel

TEXT = "The first sentence is here. A second one follows it. And a third closes the text."


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    """Counts of segmentations and cache status calls, wherever they are made from."""
    calls: collections.Counter[str] = collections.Counter()
    segment_text = TextSegmenter.segment_text
    get_cache_status = TTSCache.get_cache_status

    def counted_segment_text(self: TextSegmenter, text: str) -> list[str]:
        calls["segment"] += 1
        return segment_text(self, text)

    async def counted_status(
        self: TTSCache, segments: Sequence[str], tts_params: Mapping[str, Any] | None = None
    ) -> CacheStatus:
        calls["status"] += 1
        return await get_cache_status(self, segments, tts_params)

    monkeypatch.setattr(TextSegmenter, "segment_text", counted_segment_text)
    monkeypatch.setattr(TTSCache, "get_cache_status", counted_status)
    yield calls


def long_text(tmp_path: Path, model: CountingModel | None = None) -> LongTextTTS:
    return LongTextTTS(
        model or CountingModel(), cache_dir=tmp_path, segmenter=TextSegmenter(max_chars=30)
    )


@pytest.mark.anyio
async def test_a_planned_request_is_segmented_and_checked_once(
    tmp_path: Path, counted: collections.Counter[str]
) -> None:
    tts = long_text(tmp_path)
    plan = await tts.plan(TEXT, {"gender": "female"})
    assert len(plan.segments) == 3 and plan.cached == [False] * 3 and not plan.fully_cached
    assert plan.key_params == tts.key_params({"gender": "female"})
    assert plan.keys == [generate_cache_key(s, plan.key_params) for s in plan.segments]
    audio, fully_cached = await tts.generate(plan)
    assert fully_cached is False and len(audio) > 0
    assert counted == {"segment": 1, "status": 1}
    counted.clear()
    chunks = [chunk async for chunk in tts.stream(await tts.plan(TEXT, {"gender": "female"}))]
    np.testing.assert_array_equal(np.concatenate(chunks), audio)
    assert counted == {"segment": 1, "status": 1}
    counted.clear()
    # Given a text, generate and stream plan it themselves: once.
    again, fully_cached = await tts.generate(TEXT, {"gender": "female"})
    assert fully_cached is True and counted == {"segment": 1, "status": 1}
    np.testing.assert_array_equal(again, audio)


@pytest.mark.anyio
async def test_a_plan_says_what_was_cached_and_runs_only_where_it_was_made(tmp_path: Path) -> None:
    tts = long_text(tmp_path)
    await tts.generate("The first sentence is here.")
    plan = await tts.plan(TEXT)
    assert plan.cached == [True, False, False] and plan.cached_segments == 1
    empty = await tts.plan("   ")
    assert empty.segments == [] and empty.fully_cached
    nothing, fully_cached = await tts.generate(empty)
    assert len(nothing) == 0 and fully_cached is True
    other = long_text(tmp_path / "other")
    with pytest.raises(InvalidOptionError, match="made by another LongTextTTS"):
        await other.generate(plan)
    with pytest.raises(InvalidOptionError, match="a plan holds its parameters"):
        await tts.generate(plan, {"gender": "male"})
    with pytest.raises(InvalidOptionError, match="made by another LongTextTTS"):
        [chunk async for chunk in other.stream(plan)]


class SeedBackend:
    """A backend written to the seed module's interface: ``async def`` methods, no ``Cache``
    base, no bulk or verified read, and a ``cache_data`` that takes no sample rate."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.store: dict[str, npt.NDArray[np.float32]] = {}

    def generate_cache_key(self, text: str, params: Mapping[str, Any] | None = None) -> str:
        return generate_cache_key(text, params)

    async def get_cached_data(self, key: str) -> npt.NDArray[np.float32] | None:
        return self.store.get(check_key(key))

    async def cache_data(self, key: str, audio: Any, text: str, params: Any = None) -> bool:
        self.store[check_key(key)] = np.asarray(audio, dtype=np.float32)
        return True

    async def get_cache_status(self, segments: Sequence[str], params: Any = None) -> CacheStatus:
        keys = [self.generate_cache_key(segment, params) for segment in segments]
        return build_status(list(segments), keys, {key: key in self.store for key in keys})


@pytest.mark.anyio
async def test_a_seed_style_backend_without_a_verified_read_works(tmp_path: Path) -> None:
    # LongTextTTS read through get_verified_batch, which such a backend does not have: every
    # generate failed with AttributeError after the status call.
    model = CountingModel()
    tts = LongTextTTS(model, cache=SeedBackend(), segmenter=TextSegmenter(max_chars=30))  # type: ignore[arg-type]
    audio, fully_cached = await tts.generate(TEXT)
    assert fully_cached is False and model.total_calls == 3
    again, fully_cached = await tts.generate(TEXT)
    assert fully_cached is True and model.total_calls == 3
    np.testing.assert_array_equal(again, audio)


def test_the_server_plans_each_request_once(
    tmp_path: Path, counted: collections.Counter[str]
) -> None:
    pytest.importorskip("starlette", reason="the server's extra")
    pytest.importorskip("espeakng_loader", reason="the server speaks through eSpeak NG")
    from sparktts_cache.server.app import create_app, load_engines
    from sparktts_cache.server.config import ServerConfig

    app = create_app(ServerConfig(cache_dir=str(tmp_path), cache_headers=True))
    load_engines(app)
    counted.clear()  # loading keys the voices; count from the first request on

    async def requests() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            body = {"model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": "wav"}
            first = await client.post("/v1/audio/speech", json=body)
            counts = dict(counted)
            counted.clear()
            fresh = {"Cache-Control": "no-cache"}  # past the stored response, from the segments
            second = await client.post("/v1/audio/speech", json=body, headers=fresh)
            assert counts == {"segment": 1, "status": 1}, counts
            return [first, second]

    first, second = anyio.run(requests)
    assert counted == {"segment": 1, "status": 1}
    assert first.status_code == 200 and first.headers["x-cache"] == "miss"
    assert second.headers["x-cache"] == "partial"
    total = first.headers["x-cache-segments"].split("/")[1]
    assert first.headers["x-cache-segments"] == f"0/{total}"
    assert second.headers["x-cache-segments"] == f"{total}/{total}"


def test_synth_plans_once(tmp_path: Path, counted: collections.Counter[str]) -> None:
    pytest.importorskip("espeakng_loader", reason="synth speaks through eSpeak NG")
    from sparktts_cache._cli import main

    out = tmp_path / "out.wav"
    assert main(["--cache-dir", str(tmp_path / "cache"), "synth", TEXT, "-o", str(out)]) == 0
    assert counted == {"segment": 1, "status": 1}
    assert out.stat().st_size > 1000


def test_plan_is_exported() -> None:
    assert Plan.__module__.startswith("sparktts_cache")
