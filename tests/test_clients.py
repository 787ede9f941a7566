"""Real clients of OpenAI's speech API, replayed against ``sparktts-cache serve``.

Each test sends what one client sends, as its source builds it (method, path, the headers it sets,
the body's bytes where its JSON encoder fixes them), and checks what that client checks before it
plays the audio. The sources, read for docs/clients.md:

- Open WebUI: open-webui/open-webui, ``backend/open_webui/routers/audio.py`` (``speech``,
  ``get_available_models``, ``get_available_voices``, ``build_openai_tts_url``,
  ``parse_openai_tts_voice``) and ``backend/open_webui/utils/headers.py``
  (``include_user_info_headers``).
- Home Assistant, custom integration: sfortis/openai_tts (3.7),
  ``custom_components/openai_tts/config_flow.py`` (``async_validate_api_key``) and
  ``custom_components/openai_tts/openaitts_engine.py`` (``get_tts``, ``async_get_tts_stream``).
- Home Assistant, core: home-assistant/core,
  ``homeassistant/components/openai_conversation/tts.py`` (``async_get_tts_audio``) and
  ``homeassistant/components/openai_conversation/__init__.py`` (``models.list`` at set-up);
  defaults from ``tests/components/openai_conversation/test_tts.py``.
- SillyTavern: SillyTavern/SillyTavern, ``public/scripts/extensions/tts/openai-compatible.js``
  (settings, the comma-separated voice list) and ``src/endpoints/openai.js`` (the request its
  server makes for the browser).
- The ``openai`` SDK: its call styles are tested in tests/test_server_api.py and the README, its
  names and voice forms in tests/test_server_protocol.py; here only its set-up by the
  environment, as docs/clients.md gives it.

One server for the module: eSpeak, an API key (every client here sends one), and the model name
(``--models kokoro``) and a voice name (a voices file) of Kokoro-FastAPI, as a user moving from it
keeps them.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import openai
import pytest

from .speech_server import SpeechServer, running_server
from .test_server_api import decoded_seconds

pytestmark = pytest.mark.slow

API_KEY = "sk-local-3c1f"
AUTH = {"Authorization": f"Bearer {API_KEY}"}

VOICES_TOML = """
[voices.af_bella]
engine = "espeak:en-us"
gender = "female"
pitch = "high"
description = "a Kokoro-FastAPI voice name, kept for clients set up for Kokoro"
"""

#: OpenAI's content types, which the clients below map formats to (Open WebUI's
#: ``OPENAI_TTS_RESPONSE_FORMATS``).
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac",
                 "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    base = tmp_path_factory.mktemp("clients")
    (base / "voices.toml").write_text(VOICES_TOML)
    options = ["--engine", "espeak", "--api-key", API_KEY, "--voices", str(base / "voices.toml"),
               "--models", "kokoro"]  # fmt: skip
    with running_server(base / "cache", *options) as running:
        yield running


def assert_speech(audio: bytes, audio_format: str, at_least: float = 0.5) -> None:
    """The audio decodes (24 kHz mono) and lasts at least ``at_least`` seconds."""
    assert decoded_seconds(audio, audio_format) >= at_least


# -- Open WebUI ----------------------------------------------------------------------------------
# Admin Panel > Settings > Audio, engine "OpenAI": the base URL is http://HOST:8000/v1.


def open_webui_headers(key: str) -> dict[str, str]:
    """The headers Open WebUI's ``speech`` sets, with ENABLE_FORWARD_USER_INFO_HEADERS on
    (``include_user_info_headers``: the name percent-encoded, spaces kept)."""
    return {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "X-OpenWebUI-User-Name": quote("Zoë Example", safe=" "),
        "X-OpenWebUI-User-Id": "5b0c7e7e-6f4e-4c53-9d1a-2f3b8e1c9a47",
        "X-OpenWebUI-User-Email": "zoe@example.com",
        "X-OpenWebUI-User-Role": "user",
    }


def test_open_webui_fills_its_voice_list(server: SpeechServer) -> None:
    """``get_available_voices``: GET {base}/audio/voices (``requests``, the key as Bearer), then
    ``{voice["id"]: voice["name"] for voice in data.get("voices", [])}``; on any error it falls
    back to OpenAI's names."""
    response = httpx.get(f"{server.url}/v1/audio/voices", headers=AUTH, timeout=10)
    response.raise_for_status()
    voices = {voice["id"]: voice["name"] for voice in response.json().get("voices", [])}
    assert {"alloy", "marin", "shimmer", "af_bella"} <= set(voices)


def test_open_webui_fills_its_model_list(server: SpeechServer) -> None:
    """``get_available_models``: GET {base}/audio/models, then ``data.get("models", [])``, a list
    of ``{"id": ...}`` (on an error: tts-1 and tts-1-hd, or OpenAI's three)."""
    response = httpx.get(f"{server.url}/v1/audio/models", headers=AUTH, timeout=10)
    response.raise_for_status()
    ids = [model["id"] for model in response.json().get("models", [])]
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= set(ids)


@pytest.mark.parametrize(
    ("voice_setting", "params"),
    [
        pytest.param("alloy", None, id="defaults"),
        # The TTS voice typed as JSON: parse_openai_tts_voice sends the object.
        pytest.param('{"id": "nova"}', None, id="voice-object"),
        # "Additional parameters" (TTS_OPENAI_PARAMS) go first in the body.
        pytest.param("fable", {"response_format": "wav", "speed": 1.25}, id="params"),
    ],
)
def test_open_webui_speech(
    server: SpeechServer, voice_setting: str, params: dict[str, Any] | None
) -> None:
    """``speech`` with the OpenAI engine: ``{**TTS_OPENAI_PARAMS, "model", "input", "voice"}``
    posted by aiohttp (``json=``: ``json.dumps``' default separators) to
    ``build_openai_tts_url(base)``; a status >= 400 is an error; the content type, before any
    ``;``, is the file's media type, and the file's extension is ``params["response_format"]``
    (default mp3). Each sentence of a chat message is one request."""
    voice: object = voice_setting
    if voice_setting.startswith("{"):
        voice = json.loads(voice_setting)
    text = f"Open WebUI reads this message aloud, with the {voice_setting} voice."
    payload = {**(params or {}), "model": "tts-1", "input": text, "voice": voice}
    url = f"{server.url}/v1".rstrip("/") + "/audio/speech"
    headers = open_webui_headers(API_KEY)
    made = server.synthesised()
    response = httpx.post(url, content=json.dumps(payload).encode(), headers=headers, timeout=60)
    assert response.status_code < 400, response.text
    audio_format = (params or {}).get("response_format", "mp3")
    assert response.headers["content-type"].split(";", 1)[0] == CONTENT_TYPES[audio_format]
    assert_speech(response.content, audio_format)
    assert server.synthesised() > made
    # Open WebUI keys its own cache by the body; another instance (or a cleared one) asks again,
    # and this server answers from its cache: the same audio, nothing synthesised. (A stored WAV
    # may differ from the streamed one in its header's sizes, not in its samples.)
    made = server.synthesised()
    again = httpx.post(url, content=json.dumps(payload).encode(), headers=headers, timeout=60)
    assert again.status_code == 200
    assert decoded_seconds(again.content, audio_format) == decoded_seconds(
        response.content, audio_format
    )
    assert server.synthesised() == made


# -- Home Assistant: the custom integration sfortis/openai_tts ------------------------------------
# Its URL field takes the whole endpoint: http://HOST:8000/v1/audio/speech.


def test_home_assistant_openai_tts_setup_check(server: SpeechServer) -> None:
    """``async_validate_api_key`` (config_flow.py): aiohttp posts ``{"model": "tts-1", "input":
    ".", "voice": "alloy", "response_format": "mp3"}`` with the key; 401 or 403 is "invalid API
    key", any other status >= 400 "cannot connect". (3.7 sends it for OpenAI's URL and on
    re-authentication; earlier versions for every URL.)"""
    payload = {"model": "tts-1", "input": ".", "voice": "alloy", "response_format": "mp3"}
    headers = {"Content-Type": "application/json", **AUTH}
    url = f"{server.url}/v1/audio/speech"
    response = httpx.post(url, content=json.dumps(payload).encode(), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/mpeg"
    wrong_key = {**headers, "Authorization": "Bearer sk-wrong"}
    wrong = httpx.post(url, content=json.dumps(payload).encode(), headers=wrong_key, timeout=30)
    assert wrong.status_code == 401  # the integration's "invalid API key"


def openai_tts_payload(text: str, response_format: str) -> dict[str, object]:
    """The engine's payload for a profile with its defaults but for instructions and speed: model
    tts-1, voice shimmer (the profile form's defaults), the speed slider at 1.25."""
    return {
        "model": "tts-1",
        "input": text,
        "voice": "shimmer",
        "response_format": response_format,
        "speed": 1.25,
        "instructions": "Speak in a calm, friendly tone.",
    }


def test_home_assistant_openai_tts_speech(server: SpeechServer) -> None:
    """``get_tts`` (openaitts_engine.py), used whenever a chime or normalisation is on: urllib's
    ``Request(url, data=json.dumps(payload).encode("utf-8"), headers=..., method="POST")`` and
    ``urlopen(req, timeout=30).read()``; the mp3 is played or processed by ffmpeg. Sent here
    through urllib itself, as the integration does."""
    text = "The washing machine has finished. The front door is unlocked."
    payload = openai_tts_payload(text, "mp3")
    headers = {"Content-Type": "application/json", "User-Agent": "HomeAssistant-OpenAI-TTS"}
    headers["Authorization"] = f"Bearer {API_KEY}"
    request = urllib.request.Request(
        f"{server.url}/v1/audio/speech",
        data=json.dumps(payload).encode("utf-8"),
        headers=headers,
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "audio/mpeg"
        audio = response.read()
    assert_speech(audio, "mp3", at_least=2.0)


def test_home_assistant_openai_tts_streams(server: SpeechServer) -> None:
    """``async_get_tts_stream``: aiohttp posts the same payload (``json=``) with
    ``response_format`` "mp3" (opus is disabled in 3.7), ``raise_for_status``, then reads 8 KiB
    chunks and starts playing once 1 KiB has arrived."""
    text = "Streaming starts with the first sentence. The second one follows it."
    payload = openai_tts_payload(text, "mp3")
    headers = {"Content-Type": "application/json", "User-Agent": "HomeAssistant-OpenAI-TTS",
               **AUTH}  # fmt: skip
    with httpx.stream(
        "POST", f"{server.url}/v1/audio/speech", content=json.dumps(payload).encode(),
        headers=headers, timeout=60,
    ) as response:  # fmt: skip
        response.raise_for_status()
        assert response.headers["content-type"] == "audio/mpeg"
        chunks = list(response.iter_bytes(8192))
    audio = b"".join(chunks)
    assert len(audio) >= 1024
    assert_speech(audio, "mp3", at_least=2.0)


# -- Home Assistant: the core OpenAI integration (openai_conversation) ----------------------------
# Its client is the openai SDK's AsyncOpenAI with no base URL: the SDK takes $OPENAI_BASE_URL.


@pytest.mark.parametrize(
    ("preferred_format", "codec", "instructions"),
    [
        pytest.param("mp3", "mp3", "", id="mp3"),
        pytest.param("ogg", "opus", "", id="ogg-as-opus"),
        pytest.param("raw", "pcm", "", id="raw-as-pcm"),
        # str(options.get(CONF_PROMPT)) of a TTS entry saved without a prompt.
        pytest.param("mp3", "mp3", "None", id="instructions-None"),
    ],
)
def test_home_assistant_core_openai_tts(
    server: SpeechServer,
    monkeypatch: pytest.MonkeyPatch,
    preferred_format: str,
    codec: str,
    instructions: str,
) -> None:
    """``async_setup_entry`` (__init__.py) lists models (GET /v1/models) with the key, and
    ``async_get_tts_audio`` (tts.py) calls ``client.audio.speech.with_streaming_response.create(
    model="gpt-4o-mini-tts", voice="marin", input=..., instructions=str(prompt), speed=1.0,
    response_format=codec)`` and joins ``iter_bytes()``; a preferred format of ogg or oga is
    asked as opus, raw as pcm. The defaults are those core's own tests assert."""
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    text = "There is a person at the front door."

    async def home_assistant() -> bytes:
        client = openai.AsyncOpenAI(api_key=API_KEY)
        try:
            models = await client.with_options(timeout=10.0).models.list()
            assert "gpt-4o-mini-tts" in {model.id for model in models.data}
            async with client.audio.speech.with_streaming_response.create(
                model="gpt-4o-mini-tts",
                voice="marin",
                input=text,
                instructions=instructions,
                speed=1.0,
                response_format=codec,  # type: ignore[arg-type]
            ) as response:
                assert response.headers["content-type"] == CONTENT_TYPES[codec]
                data = bytearray()
                async for chunk in response.iter_bytes():
                    data.extend(chunk)
            return bytes(data)
        finally:
            await client.close()

    audio = anyio.run(home_assistant)
    assert_speech(audio, codec, at_least=1.0)


# -- SillyTavern ---------------------------------------------------------------------------------
# Extensions > TTS, provider "OpenAI Compatible": the endpoint field defaults to
# http://127.0.0.1:8000/v1/audio/speech, this server's own default address.


def sillytavern_request(server: SpeechServer, **fields: object) -> httpx.Response:
    """What SillyTavern's server (src/endpoints/openai.js, ``custom.post('/generate-voice')``)
    sends for its browser: ``fetch(provider_endpoint, {method: "POST", headers: {"Content-Type":
    "application/json", Authorization: `Bearer ${key ?? ''}`}, body: JSON.stringify({input,
    response_format, voice, speed, model})})``. JSON.stringify writes no spaces and leaves
    non-ASCII characters as they are."""
    body = {"input": "", "response_format": "mp3", "voice": "alloy", "speed": 1, "model": "tts-1"}
    body.update(fields)
    return httpx.post(
        f"{server.url}/v1/audio/speech",
        content=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": "application/json", **AUTH},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("voice_index", "speed"),
    [
        pytest.param(0, 1, id="first-voice"),
        # "alloy, echo, nova" is split on "," only: the second voice is " echo".
        pytest.param(1, 1.25, id="voice-after-a-space"),
    ],
)
def test_sillytavern_speaks_a_reply(server: SpeechServer, voice_index: int, speed: float) -> None:
    """``fetchTtsGeneration`` (openai-compatible.js) sends the voice as typed in "Available
    Voices (comma separated)", split on "," (``String(...).split(',')``), the speed slider's
    number and the model field; the server (openai.js) answers 500 with the text of any status
    that is not ok, and otherwise forwards the bytes as audio/mpeg."""
    voices = "alloy, echo, nova".split(",")
    text = "“Welcome back,” she said, and smiled. “The tea is ready.”"
    response = sillytavern_request(server, input=text, voice=voices[voice_index], speed=speed)
    assert response.is_success, response.text
    assert_speech(response.content, "mp3", at_least=1.0)


def test_sillytavern_set_up_for_kokoro(server: SpeechServer) -> None:
    """A SillyTavern set up for Kokoro-FastAPI sends ``model: "kokoro"`` and Kokoro's voice
    names: this server takes the model once ``--models kokoro`` names it, and a voice once a
    voices file defines it (af_bella, in this module's). A blend ("af_bella+af_sky") is
    Kokoro's own: it is refused in OpenAI's error shape, which SillyTavern shows."""
    response = sillytavern_request(server, input="Kokoro's names work here.", voice="af_bella",
                                   model="kokoro")  # fmt: skip
    assert response.is_success, response.text
    assert_speech(response.content, "mp3")
    blend = sillytavern_request(server, input="A blend.", voice="af_bella+af_sky", model="tts-1")
    assert blend.status_code == 400
    assert blend.json()["error"]["param"] == "voice"


# -- The openai SDK (openai/openai-python) -------------------------------------------------------
# Its call styles (create, with_streaming_response, stream_format="sse", models.list) are tested in
# tests/test_server_api.py and the README, its model names (dated ones), voices with spaces or as
# objects and models.retrieve in tests/test_server_protocol.py, AsyncOpenAI above (core Home
# Assistant). Here: the set-up docs/clients.md gives, through the environment.


def test_openai_sdk_set_up_by_its_environment(
    server: SpeechServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OpenAI()`` reads ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``; a custom voice is the object
    ``{"id": ...}`` (``VoiceID``), here naming a voice of the voices file."""
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    with openai.OpenAI(max_retries=0) as client:
        response = client.audio.speech.create(
            model="tts-1", voice={"id": "af_bella"}, input="A custom voice.", response_format="flac"
        )
    assert response.response.headers["content-type"] == "audio/flac"
    assert_speech(response.content, "flac")
