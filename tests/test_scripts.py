"""Every script in its language (issue 24): Piper's English voice hands the sentences it would
spell letter by letter (Han, kana, Hangul) to a fallback voice, eSpeak NG's by default, and the
response is one stream at the voice's rate."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import soundfile
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from wyoming.tts import SynthesizeVoice

from sparktts_cache import InvalidOptionError, InvalidParamsError, LongTextTTS, TTSCache
from sparktts_cache.engines import (
    EspeakModel,
    PiperModel,
    ScriptFallback,
    load_tts_model,
    model_scripts,
    with_fallbacks,
)
from sparktts_cache.engines._scripts import script_of, scripts_of_espeak_voice
from sparktts_cache.engines.espeak import reported_voice
from sparktts_cache.engines.scripts import shared_params

from .helpers import best_time
from .redis_server import free_port
from .speech_server import SpeechServer, running_server
from .test_wyoming import _read, synthesize

#: Piper without noise is deterministic: the wrapped voice's audio can be compared byte for byte.
QUIET: dict[str, Any] = {"noise_scale": 0.0, "noise_w_scale": 0.0}
CHINESE = "你好，世界。今天天气很好，我们去公园散步吧。"
MIXED = "Hello there. 你好，世界。 Goodbye now."


class Recorder:
    """A model that records what it was asked to read and returns a second of a tone."""

    def __init__(self, sample_rate: int, scripts: frozenset[str] = frozenset()) -> None:
        self.sample_rate = sample_rate
        self.scripts = scripts
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.cache_identity = {"engine": "recorder", "rate": sample_rate}

    def inference(self, text: str, speaker_id: int | None = None) -> npt.NDArray[np.float32]:
        self.calls.append((text, {"speaker_id": speaker_id}))
        t = np.arange(self.sample_rate, dtype=np.float32) / self.sample_rate
        return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def joe() -> Iterator[PiperModel]:
    model = load_tts_model("piper")
    assert isinstance(model, PiperModel)
    yield model


def seconds(audio: npt.NDArray[Any], rate: int) -> float:
    return len(audio) / rate


def test_scripts_are_told_apart() -> None:
    assert script_of("Hello, world.") is None
    assert script_of("你好") == "han"
    assert script_of("東京へ行きます") == "kana"  # Han with kana is Japanese
    assert script_of("안녕하세요") == "hangul"
    assert scripts_of_espeak_voice("en-us") == frozenset()
    assert scripts_of_espeak_voice("sit/cmn") == {"han"}
    assert scripts_of_espeak_voice("ja") == {"kana", "han"}


def test_piper_speaks_chinese_through_espeak_not_letter_by_letter(joe: PiperModel) -> None:
    spoken = with_fallbacks(joe)
    assert isinstance(spoken, ScriptFallback) and spoken.sample_rate == joe.sample_rate
    fallback_audio = spoken.inference(CHINESE)
    assert reported_voice()["language"] == "cmn"  # eSpeak's Mandarin voice really spoke
    spelled = joe.inference(CHINESE, **QUIET)
    per_character = seconds(fallback_audio, spoken.sample_rate) / len(CHINESE)
    # Mandarin is read at about 0.2-0.35 s a character; spelled, each one is "Chinese letter".
    assert 0.12 < per_character < 0.45, per_character
    assert seconds(spelled, joe.sample_rate) > 2 * seconds(fallback_audio, spoken.sample_rate)


def test_a_mixed_text_is_one_stream_of_both_voices(joe: PiperModel) -> None:
    used: list[str] = []
    espeak = EspeakModel()
    spoken = ScriptFallback(joe, {"zh": espeak}, on_fallback=used.append)
    audio = spoken.inference(MIXED, **QUIET)
    hello, goodbye = (joe.inference(text, **QUIET) for text in ("Hello there.", "Goodbye now."))
    # The fallback gets only the parameters it takes. eSpeak's length varies by a few samples
    # from call to call (0.1 % here), so its part is compared by length.
    chinese = espeak.inference("你好，世界。")
    assert np.array_equal(audio[: len(hello)], hello)
    assert np.array_equal(audio[-len(goodbye) :], goodbye)
    middle = len(audio) - len(hello) - len(goodbye)
    assert abs(middle - len(chinese)) < 0.01 * len(chinese), (middle, len(chinese))
    assert used == ["zh"]


def test_sentences_of_one_reader_are_read_in_one_call() -> None:
    model, fallback = Recorder(22050), Recorder(22050)
    spoken = ScriptFallback(model, {"zh": fallback, "ja": fallback, "ko": None})
    spoken.inference("One. Two! 你好。我很好。 Three? こんにちは。", speaker_id=1)
    assert [text for text, _ in model.calls] == ["One. Two!", "Three?"]
    assert [text for text, _ in fallback.calls] == ["你好。 我很好。", "こんにちは。"]
    assert model.calls[0][1] == {"speaker_id": 1}
    # a parameter of one engine's own (a speaker, a Kokoro voice) is not the fallback's
    assert fallback.calls[0][1] == {"speaker_id": None}
    assert shared_params({"voice": "jm_kumo", "speed": 1.5, "pitch": "low", "gender": "male"}) == {
        "pitch": "low",
        "gender": "male",
    }


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        # a line break ends a list item or a title; a Latin full stop right before Han ends one
        ("Shopping list:\n- apples\n- 苹果\n- bananas",
         [(None, "Shopping list: - apples"), ("zh", "- 苹果"), (None, "- bananas")]),
        ("Hello.你好。World.", [(None, "Hello."), ("zh", "你好。"), (None, "World.")]),
        # a Chinese sentence with English words in it is one sentence, read by the Chinese voice
        ("我喜欢Python。", [("zh", "我喜欢Python。")]),
        ("...", [(None, "...")]),
        ("", [(None, "")]),
    ],
)  # fmt: skip
def test_sentences_go_to_their_reader(text: str, pieces: list[tuple[str | None, str]]) -> None:
    spoken = ScriptFallback(Recorder(22050), {"zh": Recorder(22050)})
    assert spoken._pieces(text) == pieces


@pytest.mark.parametrize("hostile", [" " * 200_000, " \t" * 100_000, "\n " * 100_000,
                                     "。" * 200_000, ".你" * 100_000, "!?" * 100_000])  # fmt: skip
def test_checking_a_text_is_linear(hostile: str) -> None:
    spoken = ScriptFallback(Recorder(22050), {"zh": Recorder(22050), "ja": None, "ko": None})
    prose = ("The cache keeps every sentence. " * 7000)[: len(hostile)]
    baseline = best_time(3, lambda: spoken.check(prose))
    # a quadratic cut (" \t" * 20,000 took 2 s) would be thousands of times the prose's time
    assert best_time(3, lambda: spoken.check(hostile)) < 300 * baseline


def test_a_fallback_at_another_rate_is_resampled_to_the_voices() -> None:
    model, fallback = Recorder(22050), Recorder(16000)
    spoken = ScriptFallback(model, {"zh": fallback})
    audio = spoken.inference("你好。")
    assert audio.dtype == np.float32
    assert abs(len(audio) - 22050) <= 2  # one second at the voice's rate
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 22050 / len(audio) - 220) < 2  # the same tone, not shifted


def test_a_script_no_voice_reads_is_refused_before_anything_is_read() -> None:
    model = Recorder(22050)
    spoken = ScriptFallback(model, {"zh": Recorder(22050), "ko": None})
    with pytest.raises(InvalidParamsError, match=r"Korean \(Hangul\).*'ko'"):
        spoken.inference("Hello. 안녕하세요.")
    assert model.calls == []
    with pytest.raises(InvalidOptionError, match="set for fr: the languages are zh, ja, ko"):
        ScriptFallback(model, {"fr": None})


def test_a_voice_that_reads_every_script_is_not_wrapped() -> None:
    espeak = EspeakModel()
    assert with_fallbacks(espeak) is espeak
    assert isinstance(with_fallbacks(EspeakModel("en-us")), ScriptFallback)
    plain = Recorder(22050)
    assert model_scripts(with_fallbacks(plain, {"zh": None, "ja": None, "ko": None})) == set()


def test_the_fallbacks_are_part_of_the_identity(joe: PiperModel) -> None:
    default = with_fallbacks(joe)
    other = with_fallbacks(joe, {"zh": "espeak:yue"})
    assert isinstance(default, ScriptFallback) and isinstance(other, ScriptFallback)
    identities = {str(joe.cache_identity), str(default.cache_identity), str(other.cache_identity)}
    assert len(identities) == 3


@pytest.mark.anyio
async def test_a_cached_chinese_text_is_not_read_again(tmp_path: Path, joe: PiperModel) -> None:
    spoken = with_fallbacks(joe)
    long_text = LongTextTTS(spoken, cache=TTSCache(tmp_path, sample_rate=spoken.sample_rate))
    first, _ = await long_text.generate(MIXED)
    plan = await long_text.plan(MIXED)
    assert plan.cached_segments == len(plan.segments) > 0
    again, _ = await long_text.generate(MIXED)
    assert np.array_equal(again, first)


def test_synth_reads_chinese_with_piper(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    command = [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(tmp_path / "cache"),
               "synth", "--engine", "piper", CHINESE, "-o", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    audio, rate = soundfile.read(out)
    assert 0.12 < seconds(audio, rate) / len(CHINESE) < 0.45


@pytest.fixture(scope="module")
def piper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    directory = tmp_path_factory.mktemp("scripts")
    voices = directory / "voices.toml"
    voices.write_text('[languages]\nko = ""\n')
    wyoming = f"tcp://127.0.0.1:{free_port()}"
    with running_server(
        directory / "cache", "--engine", "piper", "--voices", str(voices), "--wyoming", wyoming
    ) as running:
        running.wyoming_port = int(wyoming.rpartition(":")[2])  # type: ignore[attr-defined]
        yield running


def speech(server: SpeechServer, text: str) -> httpx.Response:
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"}
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=120)


@pytest.mark.slow
def test_the_piper_server_speaks_chinese(piper_server: SpeechServer) -> None:
    response = speech(piper_server, CHINESE)
    assert response.status_code == 200, response.text
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert 0.12 < seconds(audio, rate) / len(CHINESE) < 0.45
    assert (
        piper_server.metric("sparktts_fallback_segments_total", 'engine="piper",language="zh"') >= 1
    )
    assert "was read by its fallback voice" in piper_server.log.read_text()


@pytest.mark.slow
def test_the_piper_server_refuses_a_language_it_has_no_voice_for(
    piper_server: SpeechServer,
) -> None:
    synthesised = piper_server.synthesised()
    response = speech(piper_server, "Hello. 안녕하세요.")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "input" and error["code"] == "unsupported_language"
    assert "Korean (Hangul)" in error["message"]
    assert piper_server.synthesised() == synthesised
    # The text is checked as it will be read: Hangul in a URL's path is not said (the domain is)
    assert speech(piper_server, "Read https://ko.example.com/wiki/안녕 today.").status_code == 200


@pytest.mark.slow
def test_a_languages_table_with_an_unknown_language_stops_the_server(tmp_path: Path) -> None:
    voices = tmp_path / "voices.toml"
    voices.write_text('[languages]\nfr = "espeak:fr"\n')
    command = [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(tmp_path / "cache"),
               "serve", "--voices", str(voices), "--port", "0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "'fr' is not one of zh, ja, ko" in result.stderr


@pytest.mark.slow
def test_wyoming_lists_and_speaks_the_fallback_language(piper_server: SpeechServer) -> None:
    port: int = piper_server.wyoming_port  # type: ignore[attr-defined]

    async def describe() -> Info:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await _read(client))

    voices = {voice.name: voice.languages for voice in asyncio.run(describe()).tts[0].voices}
    assert sorted(voices["alloy"]) == ["en", "ja", "zh"]  # Korean has no voice here
    heard = asyncio.run(synthesize(port, CHINESE, SynthesizeVoice(language="zh")))
    assert heard.error is None and heard.start is not None
    spoken = len(heard.audio) / 2 / heard.start.rate
    assert 0.12 < spoken / len(CHINESE) < 0.45
    refused = asyncio.run(synthesize(port, "안녕하세요.", SynthesizeVoice(name="alloy")))
    assert refused.error is not None and refused.error.code == "unsupported_language"
