"""LongTextTTS with a counting stand-in model: caching, sharing, streaming, errors, locks."""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
import pytest
from anyio import wait_all_tasks_blocked

from sparktts_cache import (
    FileSynthesisLock,
    InvalidAudioError,
    InvalidOptionError,
    LongTextTTS,
    SyncTTSCache,
    TextSegmenter,
    TTSCache,
)
from sparktts_cache._text.normalize import NORMALIZER_VERSION
from sparktts_cache._text.read_ahead import ReadAhead

from .helpers import Gate, Worker, hold_lock, long_text_worker
from .models import CountingModel, audio_for

pytestmark = pytest.mark.anyio

TEXT = (
    "The cache keeps every sentence. It never synthesises one twice! "
    "Does it really? Yes, it does.\n\n"
    "A second paragraph starts here. It never synthesises one twice!"
)
PARAMS = {"gender": "female", "pitch": "moderate", "speed": "moderate", "emotion": "HAPPY"}
SEGMENTER = TextSegmenter(max_chars=40)


def make(tmp_path: Path, model: CountingModel | None = None, **options: object) -> LongTextTTS:
    return LongTextTTS(model or CountingModel(), cache_dir=tmp_path, segmenter=SEGMENTER, **options)  # type: ignore[arg-type]


def expected_audio(tts: LongTextTTS, text: str) -> np.ndarray:
    pause = np.zeros(round(0.3 * 16000), np.float32)
    pieces: list[np.ndarray] = []
    for segment in SEGMENTER.segment_text(text):
        pieces += [pause] if pieces else []
        pieces.append(audio_for(segment, "female"))
    return np.concatenate(pieces)


async def test_generate_synthesises_each_distinct_segment_once_then_reads_the_cache(
    tmp_path: Path,
) -> None:
    tts = make(tmp_path)
    model = tts.model
    assert isinstance(model, CountingModel)
    segments = SEGMENTER.segment_text(TEXT)
    assert len(segments) > len(set(segments))  # the text repeats a segment
    audio, fully_cached = await tts.generate(TEXT, PARAMS)
    assert fully_cached is False
    assert dict(model.calls) == dict.fromkeys(segments, 1)
    np.testing.assert_array_equal(audio, expected_audio(tts, TEXT))
    again, fully_cached = await tts.generate(TEXT, PARAMS)
    assert fully_cached is True and model.total_calls == len(set(segments))
    np.testing.assert_array_equal(again, audio)
    # A fresh instance over the same directory reads the same entries.
    fresh = make(tmp_path)
    assert (await fresh.generate(TEXT, PARAMS))[1] is True


async def test_params_are_filtered_for_the_model_but_all_count_in_the_key(tmp_path: Path) -> None:
    tts = make(tmp_path)
    model = tts.model
    assert isinstance(model, CountingModel)
    await tts.generate("One sentence.", {**PARAMS, "model_dir": "/models/a"})
    assert model.received == [{"gender": "female", "pitch": "moderate", "speed": "moderate"}]
    await tts.generate("One sentence.", {**PARAMS, "model_dir": "/models/b"})
    await tts.generate("One sentence.", {**PARAMS, "model_dir": "/models/b", "emotion": "SAD"})
    assert model.total_calls == 3
    cache = SyncTTSCache(tmp_path)
    key = cache.generate_cache_key(
        "One sentence.", tts.key_params({**PARAMS, "model_dir": "/models/a"})
    )
    entry = cache.get_entry(key)
    assert entry is not None and entry.meta.params["_engine"] == {"engine": "counting"}
    assert entry.meta.params["emotion"] == "HAPPY" and entry.meta.sample_rate == 16000


async def test_force_regenerate_replaces_entries(tmp_path: Path) -> None:
    tts = make(tmp_path)
    model = tts.model
    assert isinstance(model, CountingModel)
    first, _ = await tts.generate(TEXT, PARAMS)
    model.version = 1
    forced, fully_cached = await tts.generate(TEXT, PARAMS, force_regenerate=True)
    assert fully_cached is False and not np.array_equal(forced, first)
    again, fully_cached = await tts.generate(TEXT, PARAMS)
    assert fully_cached is True
    np.testing.assert_array_equal(again, forced)


async def test_empty_text(tmp_path: Path) -> None:
    audio, fully_cached = await make(tmp_path).generate("  \n\n ", PARAMS)
    assert audio.dtype == np.float32 and audio.shape == (0,) and fully_cached is True
    assert [chunk async for chunk in make(tmp_path).stream("", PARAMS)] == []


async def test_stream_yields_segments_in_order_and_matches_generate(tmp_path: Path) -> None:
    tts = make(tmp_path)
    model = tts.model
    assert isinstance(model, CountingModel)
    await tts.generate("It never synthesises one twice!", PARAMS)  # one segment cached already
    chunks = []
    calls_seen = []
    async for chunk in tts.stream(TEXT, PARAMS):
        chunks.append(chunk)
        calls_seen.append(model.total_calls)
    assert len(chunks) == len(SEGMENTER.segment_text(TEXT))
    assert calls_seen == sorted(calls_seen) and calls_seen[0] < calls_seen[-1]  # made as it goes
    np.testing.assert_array_equal(np.concatenate(chunks), expected_audio(tts, TEXT))
    assert model.total_calls == len(set(SEGMENTER.segment_text(TEXT)))


async def test_stream_stopped_early_keeps_what_it_made(tmp_path: Path) -> None:
    tts = make(tmp_path)
    model = tts.model
    assert isinstance(model, CountingModel)
    stream = tts.stream(TEXT, PARAMS)
    async for _chunk in stream:
        break
    await stream.aclose()
    assert 1 <= model.total_calls <= 2  # the first, and perhaps the next, made ahead
    await tts.generate(TEXT, PARAMS)
    assert model.total_calls == len(set(SEGMENTER.segment_text(TEXT)))


async def test_concurrent_requests_share_segments(tmp_path: Path) -> None:
    # The first three calls wait for each other: three run at once for certain (or, were the
    # concurrency not honoured, the barrier breaks after its timeout and the test fails).
    meet = threading.Barrier(3)
    model = CountingModel(delay=0.01, before_call=lambda n: n > 3 or meet.wait(timeout=30))
    tts = make(tmp_path, model, max_concurrency=3)
    texts = [TEXT, TEXT + " And one more sentence.", "Yes, it does. " + TEXT]
    results: list[tuple[np.ndarray, bool]] = []

    async def request(text: str) -> None:
        results.append(await tts.generate(text, PARAMS))

    async with anyio.create_task_group() as group:
        for index in range(12):
            group.start_soon(request, texts[index % 3])
    distinct = {s for text in texts for s in SEGMENTER.segment_text(text)}
    assert dict(model.calls) == dict.fromkeys(distinct, 1)
    assert model.peak == 3


async def test_max_concurrency_one_is_the_default(tmp_path: Path) -> None:
    model = CountingModel(delay=0.005)
    await make(tmp_path, model).generate(TEXT, PARAMS)
    assert model.peak == 1


async def test_model_error_is_raised_after_earlier_segments_are_cached(tmp_path: Path) -> None:
    text = "First one is fine. Second one is fine too. Third will fail. Fourth never runs."
    model = CountingModel(fail_on="fail")
    tts = make(tmp_path, model)
    with pytest.raises(RuntimeError, match="model failed"):
        await tts.generate(text, PARAMS)
    cache = TTSCache(tmp_path)
    status = await cache.get_cache_status(SEGMENTER.segment_text(text), tts.key_params(PARAMS))
    assert "First one is fine." not in status.segments_to_generate
    assert any("fail" in s for s in status.segments_to_generate)
    model.fail_on = None
    before = model.total_calls
    _audio, fully_cached = await tts.generate(text, PARAMS)
    assert fully_cached is False
    assert model.total_calls - before == len(status.segments_to_generate)


async def test_bad_model_output_is_never_cached(tmp_path: Path) -> None:
    model = CountingModel(bad_on="broken")
    tts = make(tmp_path, model)
    with pytest.raises(InvalidAudioError):
        await tts.generate("A broken sentence.", PARAMS)
    status = await TTSCache(tmp_path).get_cache_status(
        ["A broken sentence."], tts.key_params(PARAMS)
    )
    assert status.cached_keys == []


async def test_interrupted_generate_resumes(tmp_path: Path) -> None:
    model = CountingModel()
    tts = make(tmp_path, model)
    with anyio.CancelScope() as scope:  # cancelled while the second segment is being made
        model.before_call = lambda n: n == 2 and anyio.from_thread.run_sync(scope.cancel)
        await tts.generate(TEXT, PARAMS)
    assert scope.cancelled_caught and model.total_calls == 2
    await tts.generate(TEXT, PARAMS)  # the segment in flight was cached all the same
    assert model.total_calls == len(set(SEGMENTER.segment_text(TEXT)))


async def test_constructor_checks(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        LongTextTTS(object(), cache_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LongTextTTS(CountingModel(), cache_dir=tmp_path, cache=TTSCache(tmp_path))
    with pytest.raises(ValueError):
        LongTextTTS(CountingModel(), cache_dir=tmp_path, pause_seconds=-1)
    tts = LongTextTTS(CountingModel(), cache_dir=tmp_path)
    assert isinstance(tts.cache, TTSCache) and tts.cache.sample_rate == 16000


# -- cross-process lock ------------------------------------------------------------------------

WORKERS = 3


def run_long_text_workers(tmp_path: Path, locked: bool) -> dict[str, int]:
    """``generate`` of TEXT in WORKERS processes at once, every segment's synthesis overlapping
    in all of them (see ``long_text_worker``); return the model calls of all, per segment."""
    (tmp_path / "gate").mkdir()
    gate = Gate(str(tmp_path / "gate"), WORKERS)
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(
                Worker(
                    long_text_worker,
                    str(tmp_path / "cache"),
                    gate,
                    locked=locked,
                    text=TEXT,
                    params=PARAMS,
                    max_chars=SEGMENTER.max_chars,
                )
            )
            for _ in range(WORKERS)
        ]
        calls: collections.Counter[str] = collections.Counter()
        for worker in workers:
            calls.update(worker.result(timeout=120))
    return dict(calls)


def test_processes_sharing_a_directory_synthesise_each_segment_once(tmp_path: Path) -> None:
    calls = run_long_text_workers(tmp_path, locked=True)
    assert calls == dict.fromkeys(SEGMENTER.segment_text(TEXT), 1)
    assert os.listdir(tmp_path / "cache" / "locks") == []


def test_without_the_lock_processes_duplicate_work(tmp_path: Path) -> None:
    # The control for the test above, in the same forced overlap: the lock is what prevents
    # duplicates.
    calls = run_long_text_workers(tmp_path, locked=False)
    assert calls == dict.fromkeys(SEGMENTER.segment_text(TEXT), WORKERS)


async def test_cross_process_lock_true_locks_files_in_the_cache_directory(tmp_path: Path) -> None:
    tts = make(tmp_path, cross_process_lock=True)
    assert (await tts.generate(TEXT, PARAMS))[1] is False
    assert tts.synthesis_count == len(set(SEGMENTER.segment_text(TEXT)))
    assert os.listdir(tmp_path / "locks") == []  # made there, and released


async def test_lock_of_a_crashed_holder_is_free_and_a_hung_holder_times_out(tmp_path: Path) -> None:
    lock = FileSynthesisLock(tmp_path / "locks", stale_after=0.3, poll=0.01)
    key = "0" * 32
    with Worker(hold_lock, str(tmp_path / "locks"), key) as holder:
        holder.wait_ready()
        began = anyio.current_time()
        async with lock.hold(key) as held:  # the holder hangs: we go ahead after stale_after
            assert held is False
        assert anyio.current_time() - began >= 0.3
        holder.kill()
        async with lock.hold(key) as held:  # the holder died: the kernel released its lock
            assert held is True
    assert os.listdir(tmp_path / "locks") == []


async def test_something_else_at_an_entry_path_is_synthesised_anyway(tmp_path: Path) -> None:
    # get_cache_status only looks at the directory; the read finds the directory and misses.
    tts = make(tmp_path)
    key = TTSCache(tmp_path).generate_cache_key("Blocked.", tts.key_params(PARAMS))
    path = TTSCache(tmp_path).entry_path(key)
    path.mkdir(parents=True)
    audio, fully_cached = await tts.generate("Blocked.", PARAMS)
    assert fully_cached is False
    np.testing.assert_array_equal(audio, audio_for("Blocked.", "female"))
    chunks = [chunk async for chunk in tts.stream("Blocked.", PARAMS)]
    np.testing.assert_array_equal(np.concatenate(chunks), audio)


# -- stream: the read-ahead window -------------------------------------------------------------

#: 40 distinct segments, one per paragraph.
LONG_TEXT = "\n\n".join(f"This is sentence number {index}." for index in range(40))
LONG_SEGMENTS = SEGMENTER.segment_text(LONG_TEXT)


class CountingReads(TTSCache):
    """Counts the keys read, and every read that would hold more than ``window`` segments past
    the ``received`` ones the consumer has (set by the test)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.keys_read = 0
        self.received = 0
        self.window: int | None = None
        self.excess: list[tuple[int, int]] = []

    async def get_cached_batch(self, keys: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        self._count(len(keys))
        return await super().get_cached_batch(keys)

    async def get_cached_data(self, key: str) -> npt.NDArray[np.float32] | None:
        self._count(1)
        return await super().get_cached_data(key)

    async def get_verified_batch(
        self,
        keys: Sequence[str],
        texts: Sequence[str],
        tts_params: Mapping[str, Any] | None = None,
    ) -> list[npt.NDArray[np.float32] | None]:
        self._count(len(keys))
        return await super().get_verified_batch(keys, texts, tts_params)

    def _count(self, keys: int) -> None:
        self.keys_read += keys
        if self.window is not None and self.keys_read > self.received + self.window:
            self.excess.append((self.keys_read, self.received))


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until true; fail after 10 s (which only a broken read-ahead takes)."""
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.002)


async def test_cached_stream_yields_the_first_segment_before_reading_the_rest(
    tmp_path: Path,
) -> None:
    cache = CountingReads(tmp_path)
    tts = LongTextTTS(CountingModel(), cache=cache, segmenter=SEGMENTER)
    await tts.generate(LONG_TEXT, PARAMS)
    cache.keys_read, cache.window = 0, 4
    stream = tts.stream(LONG_TEXT, PARAMS, read_ahead=4)
    async with contextlib.aclosing(stream):
        first = await anext(stream)
        # The first segment is read alone; at most the window after it by now.
        assert 1 <= cache.keys_read <= 5 < len(LONG_SEGMENTS)
        cache.received = 1
        chunks = [first]
        # With the consumer holding still, the reader fills the window ahead of it, no further.
        await wait_until(lambda: cache.keys_read == 1 + 4)
        async for chunk in stream:
            cache.received += 1
            chunks.append(chunk)
    assert cache.excess == []  # no read ever held more than the window past the consumer
    assert cache.keys_read == len(LONG_SEGMENTS) and tts.synthesis_count == len(LONG_SEGMENTS)
    np.testing.assert_array_equal(np.concatenate(chunks), expected_audio(tts, LONG_TEXT))


async def test_stream_synthesises_ahead_of_a_slow_consumer_in_text_order(tmp_path: Path) -> None:
    received = [0]
    excess: list[int] = []

    def check_window(call: int) -> None:  # call n makes segment n - 1 (one worker, text order)
        if call > received[0] + 3:
            excess.append(call)

    model = CountingModel(before_call=check_window)
    tts = make(tmp_path, model)
    stream = tts.stream(LONG_TEXT, PARAMS, read_ahead=3)
    chunks = []
    async with contextlib.aclosing(stream):
        async for chunk in stream:
            received[0] += 1
            chunks.append(chunk)
            if received[0] == 1:  # the consumer holds still: the next 3 are made meanwhile
                await wait_until(lambda: model.total_calls == 4)
    assert excess == []
    assert list(model.calls) == LONG_SEGMENTS and model.total_calls == len(LONG_SEGMENTS)
    np.testing.assert_array_equal(np.concatenate(chunks), expected_audio(tts, LONG_TEXT))


async def test_stream_synthesises_with_max_concurrency_workers(tmp_path: Path) -> None:
    # The first two model calls wait for each other: only two calls at once get past.
    meet = threading.Barrier(2)
    model = CountingModel(before_call=lambda n: n > 2 or meet.wait(timeout=10))
    tts = make(tmp_path, model, max_concurrency=2)
    chunks = [chunk async for chunk in tts.stream(TEXT, PARAMS)]
    assert model.peak == 2
    assert dict(model.calls) == dict.fromkeys(SEGMENTER.segment_text(TEXT), 1)
    np.testing.assert_array_equal(np.concatenate(chunks), expected_audio(tts, TEXT))


async def test_stream_with_force_makes_a_repeated_segment_once(tmp_path: Path) -> None:
    model = CountingModel()
    tts = make(tmp_path, model, max_concurrency=3)
    await tts.generate(TEXT, PARAMS)
    model.version = 1
    chunks = [chunk async for chunk in tts.stream(TEXT, PARAMS, force_regenerate=True)]
    assert dict(model.calls) == dict.fromkeys(SEGMENTER.segment_text(TEXT), 2)
    again, fully_cached = await tts.generate(TEXT, PARAMS)
    assert fully_cached is True
    np.testing.assert_array_equal(np.concatenate(chunks), again)


async def test_stream_raises_a_model_error_at_its_segment(tmp_path: Path) -> None:
    text = "First one is fine. Second one is fine too. Third will fail. Fourth never runs."
    model = CountingModel(fail_on="fail")
    tts = make(tmp_path, model, max_concurrency=2)
    yielded = 0
    with pytest.raises(RuntimeError, match="model failed"):
        async for _chunk in tts.stream(text, PARAMS):
            yielded += 1
    segments = SEGMENTER.segment_text(text)
    assert yielded == next(i for i, segment in enumerate(segments) if "fail" in segment) > 0
    assert tts._inflight == {} and model.peak <= 2


@pytest.mark.parametrize("how", ["aclose", "break", "cancel"])
async def test_a_stream_stopped_early_leaves_no_worker_running(
    tmp_path: Path, how: str, anyio_backend: str
) -> None:
    model = CountingModel()
    tts = make(tmp_path, model, max_concurrency=2)
    stream = tts.stream(LONG_TEXT, PARAMS, read_ahead=len(LONG_SEGMENTS))
    with anyio.CancelScope() as scope:
        async for _chunk in stream:
            await wait_until(lambda: model.total_calls >= 2)  # made ahead: workers are busy
            if how == "cancel":
                scope.cancel()
                await anyio.sleep(1)  # cancelled here, in the consumer's own code
            break
    if how == "aclose":
        await stream.aclose()
        del stream
    else:  # dropped unclosed: the event loop's finaliser closes it (trio says so)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del stream
        expected = ["garbage collected"] if anyio_backend == "trio" else []
        assert [w for w in expected if any(w in str(c.message) for c in caught)] == expected
    await wait_until(lambda: ReadAhead.running == 0)  # closed, and the workers are gone
    assert not tts._inflight and model._active == 0 and tts._limiter.borrowed_tokens == 0
    stopped_at = model.total_calls
    await anyio.sleep(0.2)  # workers left running would make the other segments meanwhile
    assert model.total_calls == stopped_at < len(LONG_SEGMENTS)
    await tts.generate(LONG_TEXT, PARAMS)  # what was made is cached, and made once
    assert dict(model.calls) == dict.fromkeys(LONG_SEGMENTS, 1)


async def test_closing_a_stream_waits_for_the_model_call_in_progress(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def hold_the_second(n: int) -> None:
        if n == 2:
            started.set()
            release.wait(timeout=30)

    model = CountingModel(before_call=hold_the_second)
    tts = make(tmp_path, model)
    stream = tts.stream(LONG_TEXT, PARAMS)
    await anext(stream)
    await anyio.to_thread.run_sync(started.wait, 30)
    closed = anyio.Event()

    async def close() -> None:
        await stream.aclose()
        closed.set()

    async with anyio.create_task_group() as group:
        group.start_soon(close)
        await wait_all_tasks_blocked()
        assert not closed.is_set()  # the call cannot be interrupted: close waits for it
        release.set()
    assert model._active == 0 and model.total_calls == 2 and not tts._inflight
    status = await tts.cache.get_cache_status(LONG_SEGMENTS[:3], tts.key_params(PARAMS))
    assert status.segments_to_generate == LONG_SEGMENTS[2:3]  # the second one was cached


async def test_read_ahead_must_be_a_positive_int(tmp_path: Path) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidOptionError):
            await anext(make(tmp_path).stream(TEXT, PARAMS, read_ahead=bad))  # type: ignore[arg-type]


async def test_normalised_formatting_variants_share_one_entry(tmp_path: Path) -> None:
    tts = make(tmp_path, normalize=True)
    model = tts.model
    assert isinstance(model, CountingModel)
    bold = await tts.plan("**Hello** there", PARAMS)
    assert bold.key_params["_normalizer"] == NORMALIZER_VERSION
    await tts.generate(bold)
    plain = await tts.plan("Hello there", PARAMS)
    assert bold.segments == plain.segments == ["Hello there"] and bold.keys == plain.keys
    assert (await tts.generate(plain))[1] is True and model.total_calls == 1
    # Per request: read as given, the two differ, and neither shares the normalised entry.
    texts = ("**Hello** there", "Hello there")
    as_given = [await tts.plan(text, PARAMS, normalize=False) for text in texts]
    assert as_given[0].segments == [texts[0]] and "_normalizer" not in as_given[0].key_params
    assert len({as_given[0].keys[0], as_given[1].keys[0], plain.keys[0]}) == 3
    for plan in as_given:
        await tts.generate(plan)
    assert model.total_calls == 3


async def test_text_is_read_as_given_by_default(tmp_path: Path) -> None:
    tts = make(tmp_path)
    plan = await tts.plan("**Hello** there", PARAMS)
    assert plan.segments == ["**Hello** there"] and "_normalizer" not in plan.key_params
    assert (await tts.plan("**Hello** there", PARAMS, normalize=True)).segments == ["Hello there"]


def test_the_normaliser_version_is_in_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparktts_cache._text import long_text

    tts = make(tmp_path, normalize=True)
    before = anyio.run(tts.plan, "Hello there", PARAMS)
    monkeypatch.setattr(long_text, "NORMALIZER_VERSION", NORMALIZER_VERSION + 1)
    after = anyio.run(tts.plan, "Hello there", PARAMS)
    assert before.segments == after.segments and before.keys != after.keys
