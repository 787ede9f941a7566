"""The audio's sample rate: a file cache made the seed's way (no rate) stores Spark-TTS's 16,000 Hz,
as the seed's API (which has no rate) did; everything that knows the real rate passes it, and a
LongTextTTS refuses a cache whose rate is not its model's (eSpeak's 22,050 Hz stored as 16,000 Hz
would play slowed, and ``show`` would give the wrong length)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest
import soundfile

from sparktts_cache import (
    InvalidOptionError,
    LongTextTTS,
    SyncLongTextTTS,
    SyncTTSCache,
    TTSCache,
    generate_cache_key,
    load_tts_model,
)
from sparktts_cache._cli import main
from sparktts_cache.testing import sealed_audio


def test_a_cache_made_the_seeds_way_stores_spark_ttss_rate(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path / "cache")
    assert cache.sample_rate == 16000 == TTSCache(tmp_path / "cache").sample_rate
    key = cache.generate_cache_key("Hello world")
    assert cache.cache_data(key, sealed_audio(1), "Hello world")
    entry = cache.get_entry(key)
    assert entry is not None and entry.meta.sample_rate == 16000
    # Given with the call, or by the cache, the rate is stored with the entry.
    assert cache.cache_data(key, sealed_audio(1), "Hello world", sample_rate=22050)
    entry = cache.get_entry(key)
    assert entry is not None and entry.meta.sample_rate == 22050
    fixed = SyncTTSCache(tmp_path / "cache", sample_rate=24000)
    assert fixed.cache_data(key, sealed_audio(1), "Hello world")
    entry = fixed.get_entry(key)
    assert entry is not None and entry.meta.sample_rate == 24000


def test_a_cache_made_without_a_rate_refuses_audio_without_one(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path / "cache", sample_rate=None)
    assert cache.sample_rate is None
    key = cache.generate_cache_key("Hello world")
    with pytest.raises(InvalidOptionError, match=r"sample_rate=model\.sample_rate") as caught:
        cache.cache_data(key, sealed_audio(1), "Hello world")
    assert isinstance(caught.value, ValueError)
    assert "TTSCache(..., sample_rate=model.sample_rate)" in str(caught.value)
    assert not (tmp_path / "cache").exists()  # nothing written, not even a directory

    async def the_async_front() -> None:
        with pytest.raises(InvalidOptionError, match="needs the audio's sample rate"):
            cache = TTSCache(tmp_path / "cache", sample_rate=None)
            await cache.cache_data(key, sealed_audio(1), "Hello world")

    anyio.run(the_async_front)
    assert cache.get_cached_data(key) is None
    assert cache.cache_data(key, sealed_audio(1), "Hello world", sample_rate=22050)
    entry = cache.get_entry(key)
    assert entry is not None and entry.meta.sample_rate == 22050


def test_the_readme_example_stores_espeak_audio_at_its_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = load_tts_model("espeak")
    cache = SyncTTSCache(tmp_path / "cache", sample_rate=model.sample_rate)
    text = "Hello world"
    audio = model.inference(text)
    key = cache.generate_cache_key(text)
    assert cache.cache_data(key, audio, text)
    assert main(["--cache-dir", str(tmp_path / "cache"), "show", key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["sample_rate"] == 22050
    out = tmp_path / "hello.wav"
    assert main(["--cache-dir", str(tmp_path / "cache"), "export", key, str(out)]) == 0
    assert soundfile.info(str(out)).samplerate == 22050
    assert soundfile.info(str(out)).duration == pytest.approx(len(audio) / 22050)


def test_long_text_refuses_a_cache_at_another_rate_naming_both(tmp_path: Path) -> None:
    model = load_tts_model("espeak")
    for cache in (TTSCache(tmp_path / "a"), TTSCache(tmp_path / "b", sample_rate=24000)):
        with pytest.raises(InvalidOptionError) as caught:
            LongTextTTS(model, cache=cache)
        assert f"the cache's sample rate is {cache.sample_rate} Hz" in str(caught.value)
        assert "the model's is 22050 Hz" in str(caught.value)
    with pytest.raises(InvalidOptionError, match="16000 Hz and the model's is 22050 Hz"):
        SyncLongTextTTS(model, cache=SyncTTSCache(tmp_path / "c"))
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_long_text_stores_its_models_rate(tmp_path: Path) -> None:
    model = load_tts_model("espeak")

    async def run() -> None:
        for long_text in (
            LongTextTTS(model, cache=TTSCache(tmp_path / "a", sample_rate=None)),
            LongTextTTS(model, cache=TTSCache(tmp_path / "b", sample_rate=model.sample_rate)),
            LongTextTTS(model, cache_dir=tmp_path / "c"),
        ):
            audio, _ = await long_text.generate("Hello there.")
            key = long_text.cache.generate_cache_key("Hello there.", long_text.key_params(None))
            entry = await long_text.cache.get_entry(key)
            assert entry is not None and entry.meta.sample_rate == 22050
            np.testing.assert_array_equal(entry.audio, audio)

    anyio.run(run)


def test_redis_and_the_backend_kit_refuse_audio_without_a_rate_too() -> None:
    pytest.importorskip("redis")
    from sparktts_cache import RedisCache, decode_entry, encode_entry

    key = generate_cache_key("Hello world")
    with pytest.raises(InvalidOptionError, match="needs the audio's sample rate"):
        encode_entry(key, sealed_audio(1), "Hello world", default_rate=None)
    entry = decode_entry(key, encode_entry(key, sealed_audio(1), "Hello world", sample_rate=8000))
    assert entry is not None and entry.meta.sample_rate == 8000

    async def redis() -> None:
        cache = RedisCache("redis://127.0.0.1:1/0")  # refused before anything connects
        assert cache.sample_rate is None
        with pytest.raises(InvalidOptionError, match="needs the audio's sample rate"):
            await cache.cache_data(key, sealed_audio(1), "Hello world")

    anyio.run(redis)
