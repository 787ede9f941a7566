"""Crafted key collisions: a hit is served only for the request its entry was made for.

Constructing a real XXH3-128 collision takes work a test should not do, so one is simulated: a
cache whose status keys "Text B." as if it were "Text A." (as a crafted pair of texts would key),
or an entry that another request's ``cache_data`` wrote under a key. The control experiments show
what a read by key alone (the code before) serves: the other text's audio, with no synthesis.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import pytest

from sparktts_cache import (
    CacheStatus,
    LongTextTTS,
    SyncTTSCache,
    TextSegmenter,
    TieredCache,
    TTSCache,
    generate_cache_key,
)

from .models import CountingModel, audio_for

pytestmark = pytest.mark.anyio

PARAMS = {"gender": "female", "pitch": "moderate"}
RATE = CountingModel.sample_rate  # the rate the stand-in model makes audio at
A, B = "Text A.", "Text B."


class CollidingCache(TTSCache):
    """A file cache in which B's key is A's: what a crafted pair of texts does to XXH3-128."""

    def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
        return super().generate_cache_key(A if text.strip() == B else text, tts_params)

    async def get_cache_status(
        self, segments: Sequence[str], tts_params: Mapping[str, Any] | None = None
    ) -> CacheStatus:
        keyed_as = [A if segment.strip() == B else segment for segment in segments]
        status = await super().get_cache_status(keyed_as, tts_params)
        return CacheStatus(status.cache_keys, status.cached_keys, status.segments_to_generate)


class KeyOnlyLongText(LongTextTTS):
    """LongTextTTS reading by key alone, as before reads were verified (the control)."""

    def __init__(self, model: CountingModel, **options: Any) -> None:
        super().__init__(model, **options)

        async def read_by_key(
            keys: Sequence[str], segments: Sequence[str], tts_params: Mapping[str, Any]
        ) -> list[npt.NDArray[np.float32] | None]:
            return await self.cache.get_cached_batch(keys)

        self._calls.read_verified = read_by_key  # every read LongTextTTS makes goes through it


def long_text(cls: type[LongTextTTS], cache: Any, model: CountingModel) -> LongTextTTS:
    return cls(model, cache=cache, segmenter=TextSegmenter(max_chars=40))


async def test_a_colliding_text_is_synthesised_and_overwrites_the_entry(tmp_path: Path) -> None:
    cache = CollidingCache(tmp_path)
    key = cache.generate_cache_key(A, {})
    assert cache.generate_cache_key(B, {}) == key  # the simulated collision
    first = long_text(LongTextTTS, cache, CountingModel())
    audio_a, _ = await first.generate(A, PARAMS)
    np.testing.assert_array_equal(audio_a, audio_for(A, "female"))
    [stored_key] = (await cache.get_cache_status([A], first.key_params(PARAMS))).cache_keys

    # Control: read by key alone, B is answered with A's audio and nothing is synthesised.
    control_model = CountingModel()
    control = long_text(KeyOnlyLongText, cache, control_model)
    served, fully_cached = await control.generate(B, PARAMS)
    assert fully_cached is True and control_model.total_calls == 0
    np.testing.assert_array_equal(served, audio_a)

    # Verified: B is a miss, synthesised, and its entry replaces A's.
    model = CountingModel()
    verified = long_text(LongTextTTS, cache, model)
    audio_b, fully_cached = await verified.generate(B, PARAMS)
    assert fully_cached is False and model.calls == {B: 1}
    np.testing.assert_array_equal(audio_b, audio_for(B, "female"))
    entry = await cache.get_entry(stored_key)
    assert entry is not None and entry.meta.text == B
    np.testing.assert_array_equal(entry.audio, audio_b)
    # Now B is a hit, and A (which collides with it) is made again, in generate and in stream.
    again, fully_cached = await verified.generate(B, PARAMS)
    assert fully_cached is True and model.calls == {B: 1}
    np.testing.assert_array_equal(again, audio_b)
    chunks = [chunk async for chunk in verified.stream(A, PARAMS)]
    assert model.calls == {B: 1, A: 1}
    np.testing.assert_array_equal(np.concatenate(chunks), audio_a)


async def test_the_recheck_before_synthesis_is_verified_too(tmp_path: Path) -> None:
    # The status says B's key is missing; while B waits for the lock, another process writes A
    # under that key. The re-check under the lock must not take A's audio for B.
    cache = CollidingCache(tmp_path)
    model = CountingModel()
    tts = long_text(LongTextTTS, cache, model)
    writer = long_text(LongTextTTS, cache, CountingModel())
    plan = await tts.plan(B, PARAMS)
    assert plan.segments == [B] and not plan.cached_keys  # planned as a miss
    await writer.generate(A, PARAMS)  # A's entry now sits under B's key
    made, fully_cached = await tts.generate(plan)  # the stale plan: re-checked under the lock
    np.testing.assert_array_equal(made, audio_for(B, "female"))
    assert model.calls == {B: 1} and fully_cached is False


async def test_concurrent_colliding_requests_do_not_share_one_synthesis(tmp_path: Path) -> None:
    entered, release = anyio.Event(), anyio.Event()
    token = anyio.lowlevel.current_token()

    def hold_first_call(number: int) -> None:
        if number == 1:  # A's synthesis waits until B's request is in flight
            anyio.from_thread.run_sync(entered.set, token=token)
            anyio.from_thread.run(release.wait, token=token)

    model = CountingModel(before_call=hold_first_call)
    tts = LongTextTTS(model, cache=CollidingCache(tmp_path), max_concurrency=2)
    results: dict[str, npt.NDArray[np.float32]] = {}

    async def generate(text: str) -> None:
        results[text], _ = await tts.generate(text, PARAMS)

    async with anyio.create_task_group() as group:
        group.start_soon(generate, A)
        await entered.wait()
        group.start_soon(generate, B)
        with anyio.fail_after(30):
            while model.calls[B] == 0:  # B synthesises its own audio, not A's in flight
                await anyio.sleep(0.01)
        release.set()
    np.testing.assert_array_equal(results[A], audio_for(A, "female"))
    np.testing.assert_array_equal(results[B], audio_for(B, "female"))


async def test_tiered_promotes_only_an_entry_made_for_the_request(tmp_path: Path) -> None:
    local, shared = (
        TTSCache(tmp_path / "local", sample_rate=RATE),
        TTSCache(tmp_path / "shared", sample_rate=RATE),
    )
    tiered = TieredCache(local, shared)
    key = tiered.generate_cache_key(B, PARAMS)
    audio_a, audio_b = audio_for(A), audio_for(B)
    assert await shared.cache_data(key, audio_a, A, PARAMS)  # a collision, in the shared tier

    [verified] = await tiered.get_verified_batch([key], [B], PARAMS)
    assert verified is None
    assert await local.get_entry(key) is None  # not copied to the local tier
    # Control: a read by key serves and promotes A's audio.
    np.testing.assert_array_equal(await tiered.get_cached_data(key), audio_a)
    assert (entry := await local.get_entry(key)) is not None and entry.meta.text == A

    # The shared tier has B's entry, the local tier A's: the verified read takes B's and
    # replaces the local one.
    assert await shared.cache_data(key, audio_b, B, PARAMS)
    [verified] = await tiered.get_verified_batch([key], [B], PARAMS)
    np.testing.assert_array_equal(verified, audio_b)
    assert (entry := await local.get_entry(key)) is not None and entry.meta.text == B


async def test_long_text_over_tiers_synthesises_a_collision_and_overwrites_both(
    tmp_path: Path,
) -> None:
    local, shared = (
        CollidingCache(tmp_path / "local", sample_rate=RATE),
        TTSCache(tmp_path / "shared", sample_rate=RATE),
    )
    await long_text(LongTextTTS, TieredCache(local, shared), CountingModel()).generate(A, PARAMS)
    model = CountingModel()
    tts = long_text(LongTextTTS, TieredCache(local, shared), model)
    audio, fully_cached = await tts.generate(B, PARAMS)
    assert fully_cached is False and model.calls == {B: 1}
    np.testing.assert_array_equal(audio, audio_for(B, "female"))
    key = local.generate_cache_key(B, tts.key_params(PARAMS))
    for tier in (local, shared):
        assert (entry := await tier.get_entry(key)) is not None and entry.meta.text == B


def test_what_a_verified_read_compares(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path / "cache", sample_rate=RATE)
    audio = audio_for(A)
    params = {"gender": "female", "temperature": 0.5, "top_k": 50}
    key = cache.generate_cache_key(A, params)
    assert cache.cache_data(key, audio, "  Text   A. ", params)

    def served(text: str, request: Mapping[str, Any]) -> bool:
        [got] = cache.get_verified_batch([key], [text], request)
        return got is not None

    assert served(A, params)
    assert served("Text\nA.", {"top_k": 50.0, "temperature": 0.5, "gender": "female", "x": None})
    assert not served("Text A!", params)
    assert not served(A, {**params, "temperature": 0.6})
    assert not served(A, {**params, "seed": 1})
    assert not served(A, {**params, "top_k": "50"})
    assert cache.traffic.hits == 2 and cache.traffic.misses == 4
    assert cache.get_cached_data(key) is not None  # a mismatch leaves the entry in place


def test_a_speaker_file_is_compared_by_content_not_by_path(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path / "cache", sample_rate=RATE)
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(b"speaker one" * 100)
    moved = tmp_path / "moved.wav"
    shutil.copyfile(prompt, moved)
    other = tmp_path / "other.wav"
    other.write_bytes(b"speaker two" * 100)
    key, audio = cache.lookup(A, {"prompt_speech_path": str(prompt)})
    assert audio is None
    assert cache.cache_data(key, audio_for(A), A, {"prompt_speech_path": str(prompt)})

    def served(path: Path) -> bool:
        [got] = cache.get_verified_batch([key], [A], {"prompt_speech_path": str(path)})
        return got is not None

    assert served(prompt) and served(moved)  # the same content: the key says so too
    assert not served(other)  # a collision of the key with another speaker
    prompt.unlink()
    assert not served(moved)  # the recorded prompt is gone: nothing proves it is the same


async def test_lookup_keys_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    keyed_in: list[int] = []
    real_key = generate_cache_key

    def watched_key(text: object, tts_params: Mapping[str, Any] | None = None) -> str:
        keyed_in.append(threading.get_ident())
        return real_key(text, tts_params)

    class WatchedTiered(TieredCache):
        def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
            return watched_key(text, tts_params)

    monkeypatch.setattr("sparktts_cache._file.cache.generate_cache_key", watched_key)
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(b"voice" * 1000)
    params = {"prompt_speech_path": str(prompt)}
    local = TTSCache(tmp_path / "local", sample_rate=RATE)
    for cache in (local, WatchedTiered(local, TTSCache(tmp_path / "shared", sample_rate=RATE))):
        keyed_in.clear()
        key, audio = await cache.lookup(A, params)
        assert audio is None and key == real_key(A, params)
        assert keyed_in and loop_thread not in keyed_in


def test_an_entry_recording_the_request_verbatim_is_served_without_parsing_its_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=RATE)
    key = cache.generate_cache_key(A, PARAMS)
    assert cache.cache_data(key, audio_for(A), A, PARAMS)

    def refuse(*args: object) -> None:
        raise AssertionError("the metadata was parsed")

    monkeypatch.setattr("sparktts_cache._core.codec.EntryMeta.from_json", refuse)
    [served] = cache.get_verified_batch([key], [A], PARAMS)  # the bytes compared: a hit
    np.testing.assert_array_equal(served, audio_for(A))
    with pytest.raises(AssertionError, match="parsed"):  # anything else is parsed and compared
        cache.get_verified_batch([key], [B], PARAMS)
