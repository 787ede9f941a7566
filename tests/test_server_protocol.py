"""What real clients send and probe, against a real server (issue 22): every model name of the
``openai`` SDK and dated ones, ``/v1/models/{id}`` and ``/v1/audio/models``, ``HEAD``, voices
with spaces or as objects, CORS, the JSON content type, the ``Host`` check, the cache headers,
``If-None-Match`` on a POST, malformed bodies, and every option from the environment."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.audio import speech_model

from sparktts_cache.server import add_arguments

from .speech_server import SpeechServer, running_server
from .system_programs import require_program

pytestmark = pytest.mark.slow

JSON = {"Content-Type": "application/json"}
SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Protocol test."}
GET_ROUTES = ["/", "/health", "/metrics", "/v1/models", "/v1/models/tts-1", "/v1/audio/models",
              "/v1/audio/voices"]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    """The defaults, but for one more model name and one web origin."""
    base = tmp_path_factory.mktemp("protocol")
    options = ["--models", "kokoro, my-tts", "--cors-origins", "https://app.example"]
    with running_server(base / "cache", *options) as running:
        yield running


def client_of(server: SpeechServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def speech_url(server: SpeechServer) -> str:
    return f"{server.url}/v1/audio/speech"


# -- model names and the routes clients probe ---------------------------------------------------


def test_every_model_name_of_the_sdk_dated_ones_and_added_ones_are_accepted(
    server: SpeechServer,
) -> None:
    client = client_of(server)
    sdk_names = typing.get_args(speech_model.SpeechModel)
    assert "gpt-4o-mini-tts" in sdk_names
    for name in [*sdk_names, "gpt-4o-mini-tts-2025-03-20", "sparktts-cache", "kokoro", "my-tts"]:
        audio = client.audio.speech.create(model=name, voice="alloy", input="Model names.")
        assert len(audio.content) > 1000, name
    for bad in ("whisper-1", "gpt-4o-mini-tts-2025-13-45", "gpt-4o-mini-tts-latest", "Kokoro"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.speech.create(model=bad, voice="alloy", input="x")
        assert caught.value.code == "model_not_found", bad
        assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "model"


def test_every_model_name_shares_one_stored_response(server: SpeechServer) -> None:
    # Every name runs the same engine: a response stored for one serves the others (it was keyed
    # by the model name, so each dated name stored another copy of the same bytes).
    client = client_of(server)
    hits = 'kind="response"'
    text = "One stored response for every model name."
    first = client.audio.speech.create(model="tts-1", voice="alloy", input=text)
    before = server.metric("sparktts_cache_hits_total", hits)
    for name in ("tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-03-20", "kokoro"):
        again = client.audio.speech.create(model=name, voice="alloy", input=text)
        assert again.content == first.content, name
    assert server.metric("sparktts_cache_hits_total", hits) == before + 4


def test_models_retrieve_and_the_lists(server: SpeechServer) -> None:
    client = client_of(server)
    listed = [model.id for model in client.models.list()]
    assert set(typing.get_args(speech_model.SpeechModel)) <= set(listed)
    assert {"sparktts-cache", "kokoro", "my-tts"} <= set(listed)
    for name in ("tts-1", "gpt-4o-mini-tts-2025-03-20", "kokoro"):
        model = client.models.retrieve(name)
        assert (model.id, model.object, model.owned_by) == (name, "model", "sparktts-cache")
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("whisper-1")
    assert caught.value.status_code == 404 and caught.value.code == "model_not_found"
    # Open WebUI: `data.get("models", [])`, a list of {"id": ...}.
    audio_models = httpx.get(f"{server.url}/v1/audio/models", timeout=10).json()
    assert [model["id"] for model in audio_models["models"]] == listed
    assert audio_models["data"] == audio_models["models"]


def test_head_on_every_get_route(server: SpeechServer) -> None:
    for path in GET_ROUTES:
        got = httpx.get(server.url + path, timeout=10)
        head = httpx.head(server.url + path, timeout=10)
        assert got.status_code == head.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path


# -- voices -------------------------------------------------------------------------------------


def test_voices_with_spaces_and_as_objects(server: SpeechServer) -> None:
    client = client_of(server)
    plain = client.audio.speech.create(model="tts-1", voice="echo", input="Voices as sent.")
    for voice in (" echo", "echo ", "\techo\n", {"id": "echo"}, {"id": " echo"}):
        spoken = client.audio.speech.create(
            model="tts-1",
            voice=voice,  # type: ignore[arg-type]
            input="Voices as sent.",
        )
        assert spoken.content == plain.content, voice  # the same voice: the stored response
    bad: object
    for bad in ({"name": "echo"}, {"id": 3}, [], "  "):
        response = httpx.post(speech_url(server), json={**SPEECH, "voice": bad}, timeout=10)
        assert response.status_code == 400 and response.json()["error"]["param"] == "voice", bad


def test_the_voice_list_has_the_sdks_fields(server: SpeechServer) -> None:
    listed = httpx.get(f"{server.url}/v1/audio/voices", timeout=10).json()
    assert listed["data"] == listed["voices"] and listed["object"] == "list"
    for voice in listed["voices"]:
        assert voice["object"] == "audio.voice" and voice["id"] == voice["name"]
        assert isinstance(voice["created_at"], int) and voice["openai"] is True
        assert voice["engine"] == "espeak" and voice["description"].startswith("OpenAI's name: ")
    assert len(listed["voices"]) == 13
    # eSpeak takes gender and pitch, 10 pairs of them for 13 names: the list says which share.
    described = {voice["id"]: voice["description"] for voice in listed["voices"]}
    assert "same audio" not in described["ash"]
    assert "same audio as 1 other voice(s) here (cedar)" in described["echo"]


# -- cross-site requests ------------------------------------------------------------------------


def test_only_a_json_body_is_taken(server: SpeechServer) -> None:
    url = speech_url(server)
    body = json.dumps(SPEECH).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", "application/jsonp", None):  # fmt: skip
        headers = {"Content-Type": content_type} if content_type else {}
        refused = httpx.post(url, content=body, headers=headers, timeout=10)
        assert refused.status_code == 415, content_type
        assert refused.json()["error"]["code"] == "unsupported_media_type"
    for content_type in ("application/json", "application/json; charset=utf-8",
                         "Application/JSON;charset=UTF-8"):  # fmt: skip
        taken = httpx.post(url, content=body, headers={"Content-Type": content_type}, timeout=30)
        assert taken.status_code == 200, content_type
    assert httpx.post(url, json=SPEECH, timeout=30).status_code == 200  # httpx's json=
    assert len(client_of(server).audio.speech.create(**SPEECH).content) > 1000  # type: ignore[arg-type]
    curl = require_program("curl")
    done = subprocess.run(
        [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", url, "-H",
         "Content-Type: application/json", "-d", json.dumps(SPEECH)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.stdout == "200", done
    plain_curl = subprocess.run(  # curl -d alone sends a form's type
        [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", url, "-d", json.dumps(SPEECH)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert plain_curl.stdout == "415", plain_curl


def test_cors_for_the_listed_origin_only(server: SpeechServer) -> None:
    url = speech_url(server)
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization, x-stainless-os",
    }
    allowed = httpx.options(url, headers={"Origin": "https://app.example", **preflight}, timeout=10)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "x-stainless-os" in allowed.headers["access-control-allow-headers"]
    other = httpx.options(url, headers={"Origin": "https://evil.example", **preflight}, timeout=10)
    assert "access-control-allow-origin" not in other.headers
    spoken = httpx.post(url, json=SPEECH, headers={"Origin": "https://app.example"}, timeout=30)
    assert spoken.headers["access-control-allow-origin"] == "https://app.example"
    assert "retry-after" in spoken.headers["access-control-expose-headers"].lower()
    # Off by default: the page of no origin gets an allowance.
    with running_server(server.cache_dir.parent / "no-cors") as plain:
        headers = {"Origin": "https://app.example", **preflight}
        refused = httpx.options(speech_url(plain), headers=headers, timeout=10)
        assert refused.status_code == 405 and "access-control-allow-origin" not in refused.headers


def test_the_host_header_is_checked_on_loopback(server: SpeechServer) -> None:
    port = server.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        response = httpx.get(f"{server.url}/health", headers={"Host": host}, timeout=10)
        assert response.status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        refused = httpx.post(speech_url(server), json=SPEECH, headers={"Host": host}, timeout=10)
        assert refused.status_code == 400, host
        assert refused.json()["error"]["code"] == "host_not_allowed"
    cache = server.cache_dir.parent / "hosts"
    with running_server(cache, "--allowed-hosts", "tts.example,*.lan") as named:
        for host, status in [("tts.example", 200), ("box.lan", 200), ("127.0.0.1", 200),
                             ("evil.example", 400)]:  # fmt: skip
            got = httpx.get(f"{named.url}/health", headers={"Host": host}, timeout=10)
            assert got.status_code == status, host
    with running_server(cache, "--allowed-hosts", "*") as anything:
        got = httpx.get(f"{anything.url}/health", headers={"Host": "evil.example"}, timeout=10)
        assert got.status_code == 200


def test_cache_headers_are_off_by_default_and_post_is_never_conditional(
    server: SpeechServer,
) -> None:
    url = speech_url(server)
    body = {**SPEECH, "input": "Nothing tells another client what was said."}
    for _ in range(2):  # a miss, then a stored response
        response = httpx.post(url, json=body, headers={"If-None-Match": "*"}, timeout=30)
        assert response.status_code == 200 and len(response.content) > 1000
        hidden = {"x-cache", "x-cache-segments", "etag"}
        assert hidden.isdisjoint(response.headers), response.headers
    with running_server(server.cache_dir.parent / "shown", "--cache-headers") as shown:
        first = httpx.post(speech_url(shown), json=body, timeout=30)
        again = httpx.post(speech_url(shown), json=body, headers={"If-None-Match": "*"},
                           timeout=30)  # fmt: skip
        assert first.headers["x-cache"] == "miss" and first.headers["x-cache-segments"] == "0/1"
        assert again.status_code == 200 and again.headers["x-cache"] == "hit"
        assert again.content == first.content and again.headers["etag"].startswith('"')


# -- malformed requests -------------------------------------------------------------------------


def test_hostile_bodies_are_400s_without_a_traceback(server: SpeechServer) -> None:
    url = speech_url(server)
    speed = b'{"model": "tts-1", "voice": "alloy", "input": "hi", "speed": ' + b"9" * 400 + b"}"
    small = b'{"model": "tts-1", "voice": "alloy", "input": "hi", "speed": -' + b"9" * 400 + b"}"
    for body in (b"[" * 50_000, b'{"input": ' + b"[" * 50_000, speed, small):
        response = httpx.post(url, content=body, headers=JSON, timeout=10)
        assert response.status_code == 400, body[:60]
        assert "Traceback" not in response.text
    assert "Traceback" not in server.log.read_text(errors="replace")
    assert "internal error" not in server.log.read_text(errors="replace")


def test_a_client_closing_mid_body_is_one_quiet_line(server: SpeechServer) -> None:
    before = server.log.read_text(errors="replace").count("\n")
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
                     b'{"model": "tts-1", ')  # fmt: skip
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while True:  # the server notices the close, then logs
        lines = server.log.read_text(errors="replace").splitlines()[before:]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["status"] == 499 and "Traceback" not in lines[0]


# -- every option from the environment ----------------------------------------------------------


def test_every_option_has_its_environment_variable() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser, int)
    options = parser.parse_args([]).serve_options
    flags = {option.flag for option in options}
    documented = Path(__file__).parent.parent.joinpath("docs", "server.md").read_text()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.option_strings[0] in flags, action.option_strings
    for option in options:
        assert option.env == "SPARKTTS_" + option.flag[2:].upper().replace("-", "_")
        assert f"`{option.env}`" in documented, option.env
        assert f"`{option.flag}" in documented, option.flag


def test_a_server_configured_by_its_environment(tmp_path: Path) -> None:
    env = {
        "SPARKTTS_CACHE_HEADERS": "yes",
        "SPARKTTS_MODELS": "kokoro",
        "SPARKTTS_MAX_INPUT_CHARS": "20",
        "SPARKTTS_PORT": "1",  # the command line's --port wins
        "SPARKTTS_API_KEY": "from-env",
        "SPARKTTS_VOICES": "",  # empty: unset
    }
    with running_server(tmp_path / "cache", env=env) as server:
        auth = {"Authorization": "Bearer from-env"}
        body = {**SPEECH, "model": "kokoro", "input": "Twenty characters."}
        spoken = httpx.post(speech_url(server), json=body, headers=auth, timeout=30)
        assert spoken.status_code == 200 and spoken.headers["x-cache"] == "miss"
        long = httpx.post(speech_url(server), json={**body, "input": "x" * 21}, headers=auth,
                          timeout=10)  # fmt: skip
        assert long.json()["error"]["code"] == "string_above_max_length"
        assert httpx.post(speech_url(server), json=body, timeout=10).status_code == 401
