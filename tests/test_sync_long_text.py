"""Seed-style blocking code: ``SyncLongTextTTS``, and ``LongTextTTS`` refusing a blocking cache."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
import pytest

from sparktts_cache import (
    BlockingCallError,
    Cache,
    CacheError,
    CacheStatus,
    InvalidOptionError,
    LongTextTTS,
    SyncLongTextTTS,
    SyncTTSCache,
    TextSegmenter,
    TTSCache,
    UnsupportedTypeError,
    generate_cache_key,
)

from .models import CountingModel

TEXT = "One sentence here. Another sentence there.\n\nA second paragraph, short."


def _sync(tmp_path: Path, model: CountingModel | None = None, **options: Any) -> SyncLongTextTTS:
    return SyncLongTextTTS(
        model or CountingModel(), tmp_path, segmenter=TextSegmenter(max_chars=30), **options
    )


def test_generate_blocks_and_gives_what_the_async_form_gives(tmp_path: Path) -> None:
    model = CountingModel()
    long_text = _sync(tmp_path / "cache", model, max_concurrency=2)
    audio, fully_cached = long_text.generate(TEXT, {"gender": "female"})
    assert isinstance(audio, np.ndarray) and fully_cached is False
    assert long_text.synthesis_count == model.total_calls == 3
    again, fully_cached = long_text.generate(TEXT, {"gender": "female"})  # a new event loop
    assert fully_cached is True and long_text.synthesis_count == 3
    np.testing.assert_array_equal(again, audio)

    async def the_async_form() -> tuple[npt.NDArray[np.float32], bool]:
        async_form = LongTextTTS(
            model, cache_dir=tmp_path / "cache", segmenter=TextSegmenter(max_chars=30)
        )
        return await async_form.generate(TEXT, {"gender": "female"})

    shared, fully_cached = anyio.run(the_async_form)  # the same entries
    assert fully_cached is True
    np.testing.assert_array_equal(shared, audio)
    # Entries are stored at the model's rate, with the model's identity in the key.
    segment = long_text.segmenter.segment_text(TEXT)[0]
    key = long_text.cache.generate_cache_key(segment, long_text.key_params({"gender": "female"}))
    entry = long_text.cache.get_entry(key)
    assert entry is not None and entry.meta.sample_rate == model.sample_rate
    assert long_text.cache.traffic.writes == 3


def test_stream_yields_chunks_that_join_to_generate(tmp_path: Path) -> None:
    long_text = _sync(tmp_path)
    chunks = list(long_text.stream(TEXT))
    assert len(chunks) == 3 and long_text.synthesis_count == 3
    audio, fully_cached = long_text.generate(TEXT)
    assert fully_cached is True
    np.testing.assert_array_equal(np.concatenate(chunks), audio)


def test_stream_takes_the_read_ahead_window(tmp_path: Path) -> None:
    long_text = _sync(tmp_path)
    with pytest.raises(InvalidOptionError, match="read_ahead"):
        next(long_text.stream(TEXT, read_ahead=0))
    chunks = list(long_text.stream(TEXT, read_ahead=1))
    audio, _ = long_text.generate(TEXT)
    np.testing.assert_array_equal(np.concatenate(chunks), audio)


def test_stream_closed_early_stops_the_synthesis(tmp_path: Path) -> None:
    model = CountingModel()
    long_text = _sync(tmp_path, model)
    stream = long_text.stream(TEXT)
    first = next(stream)
    assert len(first) > 0
    stream.close()  # returns once the producer has stopped: no model call is left running
    assert model._active == 0
    made = model.total_calls
    assert 1 <= made <= 3
    audio, _ = long_text.generate(TEXT)
    np.testing.assert_array_equal(audio[: len(first)], first)


def test_a_model_error_reaches_the_caller_of_both_forms(tmp_path: Path) -> None:
    long_text = _sync(tmp_path, CountingModel(fail_on="Another"))
    with pytest.raises(RuntimeError, match="model failed"):
        long_text.generate(TEXT)
    with pytest.raises(RuntimeError, match="model failed"):
        list(long_text.stream(TEXT))
    assert long_text.synthesis_count == 1  # the segment before it was made once and cached


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_refused_on_an_event_loop_thread_and_fine_from_a_worker_thread(
    tmp_path: Path, backend: str
) -> None:
    long_text = _sync(tmp_path)

    async def inside() -> tuple[npt.NDArray[np.float32], bool]:
        with pytest.raises(BlockingCallError, match="await LongTextTTS") as caught:
            long_text.generate(TEXT)
        assert isinstance(caught.value, RuntimeError) and isinstance(caught.value, CacheError)
        assert f"this thread runs an event loop ({backend})" in str(caught.value)
        with pytest.raises(BlockingCallError, match=r"LongTextTTS\(\.\.\.\)\.stream"):
            next(long_text.stream(TEXT))
        return await anyio.to_thread.run_sync(long_text.generate, TEXT)

    audio, fully_cached = anyio.run(inside, backend=backend)
    assert fully_cached is False and len(audio) > 0


def test_long_text_refuses_a_sync_tts_cache_at_construction(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedTypeError, match="SyncTTSCache is the blocking one") as caught:
        LongTextTTS(CountingModel(), cache=SyncTTSCache(tmp_path))  # type: ignore[arg-type]
    message = str(caught.value)
    assert "cache=TTSCache(...)" in message and "SyncLongTextTTS(model, cache=" in message
    assert isinstance(caught.value, TypeError)


class BlockingCache(Cache):
    """The seed README's custom backend, written with plain ``def`` as there."""

    def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
        return generate_cache_key(text, tts_params)

    def get_cached_data(self, key: str) -> None:  # type: ignore[override]
        return None

    def cache_data(self, key: str, audio: Any, text: str, params: Any = None) -> bool:  # type: ignore[override]
        return True

    def clear_cache(self) -> bool:  # type: ignore[override]
        return True

    def get_cache_status(self, segments: Any, tts_params: Any = None) -> CacheStatus:  # type: ignore[override]
        raise AssertionError("not called")


class FixedRateCache(Cache):
    """A backend shaped as the seed's: ``cache_data`` takes no rate, its own is fixed."""

    sample_rate = 16000

    def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
        return generate_cache_key(text, tts_params)

    async def get_cached_data(self, key: str) -> None:
        return None

    async def cache_data(self, key: str, audio: Any, text: str, params: Any = None) -> bool:  # type: ignore[override]
        return True

    async def clear_cache(self) -> bool:
        return True


class Model22k(CountingModel):
    sample_rate = 22050


def test_long_text_refuses_blocking_backends_and_a_wrong_fixed_rate(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedTypeError, match=r"BlockingCache\.get_cache_status is not an"):
        LongTextTTS(CountingModel(), cache=BlockingCache())
    with pytest.raises(InvalidOptionError, match=r"is 16000 Hz and the model's is 22050 Hz"):
        LongTextTTS(Model22k(), cache=FixedRateCache())
    LongTextTTS(CountingModel(), cache=FixedRateCache())  # the same rate: fine
    # A cache that takes the rate with each entry is refused too: what its own caller stores
    # through it without one would be labelled 16 kHz.
    with pytest.raises(InvalidOptionError, match=r"is 16000 Hz and the model's is 22050 Hz"):
        LongTextTTS(Model22k(), cache=TTSCache(tmp_path, sample_rate=16000))
    LongTextTTS(Model22k(), cache=TTSCache(tmp_path, sample_rate=None))  # no rate of its own


def test_sync_long_text_options(tmp_path: Path) -> None:
    model = CountingModel()
    with pytest.raises(UnsupportedTypeError, match="await LongTextTTS"):
        SyncLongTextTTS(model, cache=TTSCache(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="not both"):
        SyncLongTextTTS(model, tmp_path, cache=SyncTTSCache(tmp_path))
    with pytest.raises(InvalidOptionError):
        SyncLongTextTTS(model, tmp_path, max_concurrency=0)
    locked = SyncLongTextTTS(model, cache=SyncTTSCache(tmp_path), cross_process_lock=True)
    audio, fully_cached = locked.generate("Locked text.")
    assert fully_cached is False and len(audio) > 0
    assert (tmp_path / "locks").is_dir()
