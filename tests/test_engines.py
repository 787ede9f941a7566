"""The engines: real eSpeak NG end to end, and the Spark-TTS adapter against a stand-in class."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from sparktts_cache import LongTextTTS, SyncTTSCache, TextSegmenter, load_tts_model
from sparktts_cache.engines import EspeakModel, SparkTTSModel, accepted_params

pytestmark = pytest.mark.anyio


def test_espeak_speaks() -> None:
    model = load_tts_model("espeak")
    assert isinstance(model, EspeakModel) and model.sample_rate == 22050
    audio = model.inference("Hello world, this is a test.")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.8 < len(audio) / model.sample_rate < 5.0
    assert np.sqrt(np.mean(audio**2)) > 0.01  # not silence


def test_espeak_maps_spark_parameters() -> None:
    model = EspeakModel()
    text = "The quick brown fox jumps over the lazy dog."
    slow = model.inference(text, speed="very_low")
    fast = model.inference(text, speed="very_high")
    assert len(slow) > 1.5 * len(fast)
    female = model.inference(text, gender="female")
    male = model.inference(text, gender="male")
    assert not np.array_equal(female[: len(male)], male[: len(female)])
    with pytest.raises(ValueError, match="pitch"):
        model.inference(text, pitch="extreme")
    with pytest.raises(ValueError, match="gender"):
        model.inference(text, gender="robot")


async def test_espeak_through_long_text_and_the_cache(tmp_path: Path) -> None:
    model = load_tts_model("espeak")
    long_text = LongTextTTS(model, cache_dir=tmp_path, segmenter=TextSegmenter(max_chars=60))
    text = (
        "Spark is slow, so every sentence is cached. The second run reads them all.\n\n"
        "A new paragraph, with a clause, and another clause, and yet another one here."
    )
    params = {"gender": "male", "pitch": "low", "speed": "high", "emotion": "CALM"}
    audio, fully_cached = await long_text.generate(text, params)
    assert fully_cached is False and audio.dtype == np.float32
    assert len(audio) / model.sample_rate > 3.0
    again, fully_cached = await long_text.generate(text, params)
    assert fully_cached is True
    np.testing.assert_array_equal(again, audio)
    cache = SyncTTSCache(tmp_path)
    segment = TextSegmenter(max_chars=60).segment_text(text)[0]
    entry = cache.get_entry(cache.generate_cache_key(segment, long_text.key_params(params)))
    assert entry is not None and entry.meta.sample_rate == 22050
    assert entry.meta.params["_engine"]["engine"] == "espeak-ng"


def test_load_tts_model_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="espeak"):
        load_tts_model(tmp_path / "missing")


# -- Spark-TTS, with a stand-in for upstream's class (no weights can be downloaded here) ---------


class FakeSparkTTS:
    """Mimics upstream ``cli.SparkTTS.SparkTTS``: same constructor and ``inference`` signature."""

    instances: ClassVar[list[FakeSparkTTS]] = []

    def __init__(self, model_dir: Any, device: Any) -> None:
        self.model_dir, self.device = model_dir, device
        self.sample_rate = 16000
        self.calls: list[dict[str, Any]] = []
        FakeSparkTTS.instances.append(self)

    def inference(
        self, text: str, prompt_speech_path: Any = None, prompt_text: Any = None,
        gender: Any = None, pitch: Any = None, speed: Any = None,
        temperature: float = 0.8, top_k: int = 50, top_p: float = 0.95,
    ) -> npt.NDArray[np.float64]:  # fmt: skip
        self.calls.append(dict(text=text, prompt_speech_path=prompt_speech_path,
                               prompt_text=prompt_text, gender=gender, pitch=pitch, speed=speed,
                               temperature=temperature, top_k=top_k, top_p=top_p))  # fmt: skip
        return np.linspace(-0.5, 0.5, 1600)  # float64, as upstream returns


@pytest.fixture
def fake_spark(monkeypatch: pytest.MonkeyPatch) -> type[FakeSparkTTS]:
    module = types.ModuleType("spark_tts_lib")
    module.SparkTTS = FakeSparkTTS  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "spark_tts_lib", module)
    monkeypatch.setitem(sys.modules, "cli.SparkTTS", None)  # not on sys.path
    torch = types.ModuleType("torch")
    torch.device = lambda name: f"device({name})"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    FakeSparkTTS.instances.clear()
    return FakeSparkTTS


def test_spark_adapter_maps_parameters(fake_spark: type[FakeSparkTTS], tmp_path: Path) -> None:
    model = load_tts_model(tmp_path, device="cuda:0")
    assert isinstance(model, SparkTTSModel) and model.sample_rate == 16000
    inner = fake_spark.instances[0]
    assert inner.model_dir == str(tmp_path) and inner.device == "device(cuda:0)"
    params = {"gender": "female", "pitch": "high", "emotion": "HAPPY", "model_dir": str(tmp_path)}
    audio = model.inference("Hi.", **accepted_params(model, params))
    assert audio.dtype == np.float32 and audio.shape == (1600,)
    call = inner.calls[0]
    assert (call["gender"], call["pitch"], call["speed"]) == ("female", "high", "moderate")
    assert "emotion" not in call
    model.inference("Clone me.", prompt_speech_path="/voices/a.wav", prompt_text="hello")
    assert inner.calls[1]["gender"] is None and inner.calls[1]["speed"] is None
    assert model.cache_identity["engine"] == "spark-tts"


async def test_spark_adapter_through_long_text(
    fake_spark: type[FakeSparkTTS], tmp_path: Path
) -> None:
    (tmp_path / "model").mkdir()
    model = load_tts_model(tmp_path / "model")
    long_text = LongTextTTS(model, cache_dir=tmp_path / "cache")
    _audio, fully_cached = await long_text.generate("One. Two.", {"gender": "male"})
    assert fully_cached is False
    assert (await long_text.generate("One. Two.", {"gender": "male"}))[1] is True


def test_spark_missing_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "spark_tts_lib", None)
    monkeypatch.setitem(sys.modules, "cli.SparkTTS", None)
    with pytest.raises(ImportError, match=r"pip install .*sparktts_cache\[spark\]"):
        load_tts_model(tmp_path)
