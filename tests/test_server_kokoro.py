"""``serve --engine kokoro`` (issue 26): the real bundled Kokoro model answering the real ``openai``
client, with ``model="kokoro"``, Kokoro's voice names and blends and OpenAI's, cached like every
engine."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import openai
import pytest
import soundfile
from openai import OpenAI
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from wyoming.tts import SynthesizeVoice

from .redis_server import free_port
from .speech_server import SpeechServer, running_server
from .test_wyoming import _read, synthesize

pytestmark = pytest.mark.slow

ENGLISH = "The cache keeps every sentence it has heard."
CHINESE = "今天天气很好，我们去公园散步吧。"


WYOMING_PORT = free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    cache = tmp_path_factory.mktemp("kokoro") / "cache"
    wyoming = f"tcp://127.0.0.1:{WYOMING_PORT}"
    with running_server(cache, "--engine", "kokoro", "--wyoming", wyoming) as run:
        yield run


@pytest.fixture(scope="module")
def client(server: SpeechServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def speak(client: OpenAI, text: str, voice: str, **extra: Any) -> tuple[npt.NDArray[Any], int]:
    response = client.audio.speech.create(
        model="kokoro", voice=voice, input=text, response_format="wav", **extra
    )
    audio, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    return audio, rate


def test_english_and_chinese_through_the_openai_client(client: OpenAI) -> None:
    english, rate = speak(client, ENGLISH, "jm_kumo")
    assert rate == 24000
    assert 0.03 < len(english) / rate / len(ENGLISH) < 0.12
    chinese, rate = speak(client, CHINESE, "jm_kumo")
    # Mandarin at a speaking pace (about 0.24 s a character), not letters spelled
    assert 0.15 < len(chinese) / rate / len(CHINESE) < 0.4


def test_a_second_request_synthesises_nothing(client: OpenAI, server: SpeechServer) -> None:
    first, _ = speak(client, "A sentence heard once.", "jf_alpha")
    made = server.synthesised()
    again, _ = speak(client, "A sentence heard once.", "jf_alpha")
    assert np.array_equal(first, again)
    assert server.synthesised() == made


def test_openai_names_are_kokoro_voices_of_their_gender(
    client: OpenAI, server: SpeechServer
) -> None:
    voices = {v["id"]: v for v in httpx.get(f"{server.url}/v1/audio/voices").json()["voices"]}
    assert {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"} <= set(voices)
    assert "kokoro's voice jf_alpha" in voices["alloy"]["description"]
    assert "kokoro's voice jm_kumo" in voices["onyx"]["description"]
    # alloy is jf_alpha: the same audio, from the same cached segments
    alloy, _ = speak(client, ENGLISH, "alloy")
    made = server.synthesised()
    jf_alpha, _ = speak(client, ENGLISH, "jf_alpha")
    assert np.array_equal(alloy, jf_alpha)
    assert server.synthesised() == made


def test_a_blend_is_a_voice_of_its_own(client: OpenAI) -> None:
    blend, _ = speak(client, ENGLISH, "jf_alpha+jm_kumo")
    weighted, _ = speak(client, ENGLISH, "jf_alpha(3)+jm_kumo(1)")
    parts = [speak(client, ENGLISH, name)[0] for name in ("jf_alpha", "jm_kumo")]
    for other in [weighted, *parts]:
        assert not (len(other) == len(blend) and np.array_equal(other, blend))


def test_an_unknown_voice_is_a_400_naming_the_known_ones(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        speak(client, ENGLISH, "af_nobody+jm_kumo")
    error: Any = caught.value.body
    assert error["code"] == "voice_not_found" and "jf_alpha" in error["message"]


def test_kokoro_is_a_model_name(client: OpenAI) -> None:
    assert "kokoro" in [model.id for model in client.models.list()]
    assert client.models.retrieve("kokoro").id == "kokoro"


def test_korean_is_read_by_the_fallback_voice_at_kokoros_rate(
    client: OpenAI, server: SpeechServer
) -> None:
    text = "안녕하세요. 만나서 반갑습니다."
    audio, rate = speak(client, text, "jm_kumo")
    assert rate == 24000  # eSpeak's 22,050 Hz resampled: one stream at one rate
    assert 0.1 < len(audio) / rate / len(text) < 0.5
    assert server.metric("sparktts_fallback_segments_total", 'engine="kokoro",language="ko"') >= 1


def test_wyoming_speaks_a_blend_at_kokoros_rate(server: SpeechServer) -> None:
    heard = asyncio.run(synthesize(WYOMING_PORT, ENGLISH, SynthesizeVoice(name="jf_alpha+jm_kumo")))
    assert heard.error is None and heard.start is not None and heard.start.rate == 24000
    assert 0.03 < len(heard.audio) / 2 / 24000 / len(ENGLISH) < 0.12
    unknown = asyncio.run(synthesize(WYOMING_PORT, ENGLISH, SynthesizeVoice(name="nobody")))
    assert unknown.error is not None and unknown.error.code == "voice_not_found"


def test_wyoming_lists_kokoro_voices_by_the_languages_they_read(server: SpeechServer) -> None:
    async def describe() -> Info:
        async with AsyncTcpClient("127.0.0.1", WYOMING_PORT) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await _read(client))

    voices = {voice.name: voice.languages for voice in asyncio.run(describe()).tts[0].voices}
    # English by Kokoro's front end, Chinese and Japanese by their scripts, Korean by eSpeak's
    assert sorted(voices["alloy"]) == sorted(voices["jm_kumo"]) == ["en", "ja", "ko", "zh"]
    heard = asyncio.run(synthesize(WYOMING_PORT, ENGLISH, SynthesizeVoice(language="en")))
    assert heard.error is None and heard.start is not None and heard.start.rate == 24000
