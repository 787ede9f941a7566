"""The engines: real eSpeak NG end to end, and the Spark-TTS adapter against a stand-in class."""

from __future__ import annotations

import os
import re
import shutil
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from sparktts_cache import (
    CacheError,
    EngineError,
    InvalidOptionError,
    InvalidParamsError,
    LongTextTTS,
    MissingDependencyError,
    SyncTTSCache,
    TextSegmenter,
    engines,
    load_tts_model,
)
from sparktts_cache._cli import main
from sparktts_cache.engines import (
    EspeakModel,
    SparkTTSModel,
    accepted_params,
    engine_names,
    spark,
)

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
    with pytest.raises(InvalidParamsError, match="pitch must be one of very_low, low") as caught:
        model.inference(text, pitch="extreme")
    assert isinstance(caught.value, ValueError)
    with pytest.raises(InvalidParamsError, match="gender must be one of female, male"):
        model.inference(text, gender="robot")
    with pytest.raises(InvalidParamsError, match="speed"):
        model.inference(text, speed=3)  # type: ignore[arg-type]


def test_espeak_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidOptionError, match="no voice 'no-such-voice'"):
        EspeakModel(voice="no-such-voice")
    assert load_tts_model("espeak:en-us").voice == "en-us"  # type: ignore[attr-defined]
    from sparktts_cache.engines import espeak

    monkeypatch.setattr(espeak, "_library", None)  # as in a process that has not loaded it yet
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(MissingDependencyError, match=r"sparktts_cache\[espeak\]") as caught:
        EspeakModel()
    assert isinstance(caught.value, ImportError)


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


def test_espeak_identity_names_library_and_data_versions() -> None:
    identity = EspeakModel().cache_identity
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", identity["version"]), identity
    assert identity["data"] == "espeakng-loader " + metadata.version("espeakng-loader")
    assert identity["sample_rate"] == 22050
    # No voice chosen: the identity is the choice by script, so changing it changes the keys.
    assert identity["voice"] == {"kana": "ja", "hangul": "ko", "han": "cmn", "other": "en"}
    assert EspeakModel("en-us").cache_identity["voice"] == "en-us"


#: About 23 s of Mandarin; the English voice spells it out as "Chinese letter" for about 58 s.
CHINESE = (
    "人工智能是计算机科学的一个分支，它企图了解智能的实质，并生产出一种新的能以人类智能相似的"
    "方式做出反应的智能机器。该领域的研究包括机器人、语言识别、图像识别、自然语言处理和专家系统等。"
)


def _seconds(audio: npt.NDArray[np.float32]) -> float:
    return len(audio) / 22050


def test_espeak_reads_chinese_with_the_mandarin_voice() -> None:
    from sparktts_cache.engines.espeak import reported_voice

    model = EspeakModel()
    chosen = model.inference(CHINESE)
    assert reported_voice()["language"] == "cmn"
    english = model.inference(CHINESE, voice="en")  # what every Chinese text got before
    assert reported_voice()["language"].startswith("en")
    # Letter names take well over twice as long as the Mandarin (measured: 2.5x).
    assert _seconds(english) > 2.0 * _seconds(chosen), (_seconds(english), _seconds(chosen))
    # eSpeak varies a run's length by a few samples in a thousand: compare lengths, not samples.
    assert _seconds(EspeakModel("cmn").inference(CHINESE)) == pytest.approx(_seconds(chosen), 0.02)
    # English text is still read by the English voice, as before.
    text = "The quick brown fox jumps over the lazy dog."
    assert _seconds(model.inference(text)) == pytest.approx(
        _seconds(EspeakModel("en").inference(text)), 0.02
    )
    assert reported_voice()["language"].startswith("en")


def test_espeak_chooses_the_voice_by_script() -> None:
    from sparktts_cache.engines.espeak import reported_voice, voice_for_text

    cases = {
        "Hello there.": "en",
        "我们使用Python和TensorFlow来训练模型。": "cmn",  # Mandarin reads Latin words as English
        "こんにちは、世界。東京": "ja",  # kana with Han is Japanese
        "안녕하세요": "ko",
        "1, 2, 3!": "en",
    }
    model = EspeakModel()
    for text, voice in cases.items():
        assert voice_for_text(text) == voice, text
        model.inference(text, gender="female")
        assert reported_voice()["language"].startswith(voice), (text, reported_voice())


def test_espeak_voice_parameter_overrides_the_model_and_the_script() -> None:
    from sparktts_cache.engines.espeak import reported_voice

    pinned = EspeakModel("en")  # espeak:en: one voice for everything, as before
    assert _seconds(pinned.inference(CHINESE)) > 2.0 * _seconds(EspeakModel().inference(CHINESE))
    pinned.inference("Hello.", voice="en-us")
    assert reported_voice()["identifier"] == "gmw/en-US"
    for bad in ("no-such-voice", "en+f3", "", "../x", 3):
        with pytest.raises(InvalidParamsError, match="voice") as caught:
            pinned.inference("Hello.", voice=bad)  # type: ignore[arg-type]
        assert isinstance(caught.value, ValueError)


async def test_espeak_voice_parameter_is_in_the_key(tmp_path: Path) -> None:
    long_text = LongTextTTS(EspeakModel(), cache_dir=tmp_path)
    chosen, _ = await long_text.generate(CHINESE)
    english, fully_cached = await long_text.generate(CHINESE, {"voice": "en"})
    assert fully_cached is False  # another entry, not the Mandarin one
    assert len(english) > 2 * len(chosen)
    again, fully_cached = await long_text.generate(CHINESE, {"voice": "en"})
    assert fully_cached is True
    np.testing.assert_array_equal(again, english)


def test_cli_synth_voice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import soundfile

    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main([*cache, "synth", CHINESE, "-o", str(tmp_path / "zh.wav")]) == 0
    assert main([*cache, "synth", CHINESE, "--voice", "en", "-o", str(tmp_path / "en.wav")]) == 0
    chosen = soundfile.info(str(tmp_path / "zh.wav")).duration
    english = soundfile.info(str(tmp_path / "en.wav")).duration
    assert english > 2 * chosen, (english, chosen)
    assert "synthesised" in capsys.readouterr().out


def test_load_tts_model_errors(tmp_path: Path) -> None:
    for spec in (tmp_path / "missing", str(tmp_path / "missing"), "nope", "Espeak"):
        with pytest.raises(
            InvalidOptionError, match="use one of espeak, kokoro, piper, spark,"
        ) as caught:
            load_tts_model(spec)
        assert isinstance(caught.value, ValueError)
    with pytest.raises(InvalidOptionError, match="no Spark-TTS model directory at"):
        load_tts_model(f"spark:{tmp_path / 'missing'}")
    with pytest.raises(InvalidOptionError, match="write spark:ARGUMENT"):
        load_tts_model("spark")
    with pytest.raises(InvalidOptionError, match="nothing after"):
        load_tts_model("espeak:")
    with pytest.raises(InvalidOptionError, match="unexpected keyword argument 'device'"):
        load_tts_model("espeak", device="cpu")


class RecordingEngine:
    """An engine as a new module would define it: a class taking an optional first argument."""

    sample_rate = 8000

    def __init__(self, voice: str | None = None, **options: Any) -> None:
        self.voice, self.options = voice, options

    def inference(self, text: str) -> npt.NDArray[np.float32]:
        return np.zeros(80, np.float32)


def test_a_new_engine_is_one_line_in_the_registry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(engines._ENGINES, "recording", f"{__name__}:RecordingEngine")
    monkeypatch.setitem(engines._ENGINES, "broken", "tests.no_such_module:Engine")
    assert engine_names() == ["broken", "espeak", "kokoro", "piper", "recording", "spark"]
    plain = load_tts_model("recording", speaker=3)
    assert isinstance(plain, RecordingEngine)
    assert (plain.voice, plain.options) == (None, {"speaker": 3})
    with_argument = load_tts_model("recording:voices/amy.onnx")
    assert isinstance(with_argument, RecordingEngine) and with_argument.voice == "voices/amy.onnx"
    # An engine whose module cannot be imported fails alone, saying so.
    with pytest.raises(MissingDependencyError, match="engine 'broken' cannot be imported"):
        load_tts_model("broken")
    assert isinstance(load_tts_model("espeak"), EspeakModel)
    # The command line's help and errors list the registered names.
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    assert "one of broken, espeak, kokoro, piper, recording, spark" in " ".join(
        capsys.readouterr().out.split()
    )


def test_a_directory_named_like_an_engine(
    fake_spark: type[FakeSparkTTS], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "espeak").mkdir()
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_tts_model("espeak"), EspeakModel)  # the name wins
    assert isinstance(load_tts_model("./espeak"), SparkTTSModel)
    assert isinstance(load_tts_model(Path("espeak")), SparkTTSModel)  # a path is a directory


# -- Spark-TTS, with a stand-in for upstream's class (no weights can be downloaded here) ---------


class FakeSparkTTS:
    """Mimics upstream ``cli.SparkTTS.SparkTTS``: same constructor and ``inference`` signature."""

    instances: ClassVar[list[FakeSparkTTS]] = []
    seeds: ClassVar[list[int]] = []  # what torch.manual_seed was called with

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
    torch.manual_seed = FakeSparkTTS.seeds.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    FakeSparkTTS.instances.clear()
    FakeSparkTTS.seeds.clear()
    return FakeSparkTTS


def test_spark_adapter_maps_parameters(fake_spark: type[FakeSparkTTS], tmp_path: Path) -> None:
    model = load_tts_model(f"spark:{tmp_path}", device="cuda:0")
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
    with pytest.raises(InvalidParamsError, match="pitch must be one of"):
        model.inference("Hi.", gender="male", pitch="loud")
    assert len(inner.calls) == 2  # rejected before upstream was called
    assert isinstance(load_tts_model(tmp_path), SparkTTSModel)  # a bare directory, as before


class FailingSparkTTS(FakeSparkTTS):
    """Upstream failing: at load when the directory has no weights, at inference when asked."""

    def __init__(self, model_dir: Any, device: Any) -> None:
        if not Path(model_dir, "config.yaml").exists():
            raise FileNotFoundError(f"{model_dir}/config.yaml")
        super().__init__(model_dir, device)

    def inference(self, text: str, *args: Any, **kwargs: Any) -> npt.NDArray[np.float64]:
        raise KeyError(text)


def test_spark_failures_are_engine_errors_with_the_cause(
    fake_spark: type[FakeSparkTTS], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["spark_tts_lib"], "SparkTTS", FailingSparkTTS)
    with pytest.raises(EngineError, match=r"failed to load .*config\.yaml") as caught:
        load_tts_model(tmp_path)
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    (tmp_path / "config.yaml").write_text("sample_rate: 16000\n")
    model = load_tts_model(tmp_path)
    with pytest.raises(EngineError, match="Spark-TTS failed: KeyError") as failed:
        model.inference("Hi.")
    assert isinstance(failed.value, CacheError) and isinstance(failed.value.__cause__, KeyError)


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
    with pytest.raises(MissingDependencyError, match=r"pip install .*sparktts_cache\[spark\]") as e:
        load_tts_model(tmp_path)
    assert isinstance(e.value, ImportError)


def test_spark_passes_a_seed_through(fake_spark: type[FakeSparkTTS], tmp_path: Path) -> None:
    model = load_tts_model(tmp_path)
    assert accepted_params(model, {"seed": 1234, "emotion": "HAPPY"}) == {"seed": 1234}
    model.inference("Seeded.", seed=1234)
    model.inference("Not seeded.")
    assert fake_spark.seeds == [1234]  # and upstream, which has no seed argument, was called
    assert [call["text"] for call in fake_spark.instances[0].calls] == ["Seeded.", "Not seeded."]


def spark_identity(model_dir: Path) -> dict[str, Any]:
    model = load_tts_model(model_dir)
    assert isinstance(model, SparkTTSModel)
    return model.cache_identity


def make_model_dir(root: Path) -> Path:
    """A directory shaped like Spark-TTS-0.5B, with small stand-ins for its files."""
    files = {
        "config.yaml": b"sample_rate: 16000\n",
        "BiCodec/config.yaml": b"audio_tokenizer: {}\n",
        "BiCodec/model.safetensors": bytes(range(256)) * 64,
        "LLM/config.json": b'{"hidden_size": 896}',
        "LLM/tokenizer.json": b'{"model": {}}',
        "LLM/merges.txt": b"a b\n",
        "LLM/model.safetensors": bytes(range(255, -1, -1)) * 64,
        "README.md": b"# Spark-TTS\n",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_spark_identity_is_the_model_directory_by_content(
    fake_spark: type[FakeSparkTTS], tmp_path: Path
) -> None:
    model_dir = make_model_dir(tmp_path / "Spark-TTS-0.5B")
    identity = spark_identity(model_dir)
    assert identity["engine"] == "spark-tts" and identity["model"].startswith("xxh3-128:")
    assert str(tmp_path) not in str(identity)  # the path does not count...
    copy = shutil.copytree(model_dir, tmp_path / "elsewhere")
    assert spark_identity(copy) == identity  # ...so a copy shares entries

    (model_dir / "README.md").write_text("# edited\n")  # documentation does not count
    (model_dir / ".cache").mkdir()
    (model_dir / ".cache" / "lock.json").write_text("{}")
    assert spark.model_dir_fingerprint(model_dir) == identity["model"]

    weights = model_dir / "LLM" / "model.safetensors"  # another model at the same path
    data = bytearray(weights.read_bytes())
    data[5000] ^= 0xFF
    weights.write_bytes(data)
    assert spark_identity(model_dir)["model"] != identity["model"]
    (copy / "LLM" / "config.json").write_text('{"hidden_size": 897}')
    edited = spark.model_dir_fingerprint(copy)
    assert edited != identity["model"]
    os.remove(copy / "BiCodec" / "config.yaml")
    assert spark.model_dir_fingerprint(copy) != edited


def test_spark_fingerprint_samples_big_weights_and_is_memoised(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "model")
    big = model_dir / "LLM" / "model.safetensors"
    size = spark.WHOLE_FILE_LIMIT + (1 << 20)
    big.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    spark._file_fingerprint.cache_clear()
    first = spark.model_dir_fingerprint(model_dir)
    files = spark._file_fingerprint.cache_info().misses
    assert spark.model_dir_fingerprint(model_dir) == first  # all from the memo: only stat
    assert spark._file_fingerprint.cache_info().misses == files
    assert spark._file_fingerprint.cache_info().hits == files
    with big.open("r+b") as file:  # a byte inside the first and inside the last sampled block
        file.seek(10)
        file.write(b"\x00\x01")
    changed = spark.model_dir_fingerprint(model_dir)
    assert changed != first
    with big.open("r+b") as file:
        file.seek(size - 10)
        file.write(b"\x02\x03")
    assert spark.model_dir_fingerprint(model_dir) not in (first, changed)


def test_spark_fingerprint_uses_hugging_face_blob_names(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    sha = "ab" * 32
    (blobs / sha).write_bytes(b"weights")
    snapshot = tmp_path / "snapshots" / "main"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(blobs / sha)
    assert (
        spark._file_fingerprint(str(snapshot / "model.safetensors"), 7, 0, 0, 0) == "sha256:" + sha
    )


def test_spark_fingerprint_of_an_unreadable_directory(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "model")
    (model_dir / "config.yaml").unlink()
    (model_dir / "config.yaml").symlink_to(tmp_path / "missing.yaml")
    with pytest.raises(InvalidOptionError, match="cannot fingerprint"):
        spark.model_dir_fingerprint(model_dir)
