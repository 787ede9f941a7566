"""A reusable contract test for :class:`~sparktts_cache.Cache` backends (needs pytest and anyio).

Subclass :class:`CacheContract` in a test module, name the backend class, and provide a ``cache``
fixture and a ``reopen`` fixture; every test then runs against the backend on each event loop its
class declares in ``async_backends`` (asyncio and trio unless it says otherwise)::

    class TestMyCache(CacheContract):
        cache_classes = (MyCache,)

        @pytest.fixture
        def cache(self, tmp_path):
            return MyCache(tmp_path)

        @pytest.fixture
        def reopen(self, tmp_path):
            return lambda: MyCache(tmp_path)  # a new object over the same storage

:func:`sealed_audio` makes test audio that carries its own seed and length, and :func:`is_sealed`
tells whole audio from torn or mixed audio without any metadata: the tests and the reliability
harnesses write it everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import anyio
import numpy as np
import numpy.typing as npt
import pytest

from ._core.cache import Cache
from ._core.codec import DEFAULT_SAMPLE_RATE
from ._core.errors import InvalidOptionError

__all__ = ["CacheContract", "is_sealed", "sealed_audio"]

PARAMS: dict[str, Any] = {"gender": "female", "pitch": "moderate", "speed": "moderate"}
BAD_KEYS: list[object] = [
    "../../etc/passwd",
    "../" * 10 + "etc/passwd",
    "0" * 31,
    "0" * 33,
    "A" * 32,
    "g" * 32,
    "0" * 30 + "/a",
    "0" * 31 + "\n",
    "",
]


#: Seeds and lengths are stored as ``n / _SEAL_SCALE``: exact in float32 for ``n < 2**24``.
_SEAL_SCALE = 2**24


def sealed_audio(seed: int, samples: int = 4000) -> npt.NDArray[np.float32]:
    """Deterministic float32 audio that carries its own seed and length.

    Sample 0 is ``seed / 2**24`` and sample 1 is ``samples / 2**24`` (both exact in float32); the
    rest is uniform noise in [-0.1, 0.1) drawn from ``seed``. :func:`is_sealed` regenerates the
    whole array from those two samples, so any reader, in any process, can tell a whole entry from
    a truncated, extended, zeroed or torn one, or a mix of two writers' entries, without metadata.
    The default length is 0.25 s at 16 kHz. Every sample lies well within [-1, 1), so a lossy
    format (FLAC) keeps the audio close, but only lossless round trips stay sealed.

    Raises:
        InvalidOptionError: unless ``0 <= seed < 2**24`` and ``2 <= samples < 2**24``.
    """
    if not 0 <= seed < _SEAL_SCALE or not 2 <= samples < _SEAL_SCALE:
        raise InvalidOptionError(
            f"need 0 <= seed < 2**24 and 2 <= samples < 2**24, not {seed}, {samples}"
        )
    audio = np.empty(samples, dtype=np.float32)
    audio[0] = seed / _SEAL_SCALE
    audio[1] = samples / _SEAL_SCALE
    noise = np.random.default_rng(seed).random(samples - 2, dtype=np.float32)  # fast, float32
    audio[2:] = (noise - np.float32(0.5)) * np.float32(0.2)
    return audio


def is_sealed(audio: npt.NDArray[Any] | None) -> bool:
    """Whether ``audio`` is exactly what :func:`sealed_audio` made for the seed and length it
    carries: False for ``None`` (a miss), another dtype or shape, and any torn or mixed array."""
    if audio is None or audio.dtype != np.float32 or audio.ndim != 1 or len(audio) < 2:
        return False
    seed, samples = float(audio[0]) * _SEAL_SCALE, float(audio[1]) * _SEAL_SCALE
    if not (seed.is_integer() and 0 <= seed < _SEAL_SCALE) or samples != len(audio):
        return False
    return bool(np.array_equal(audio, sealed_audio(int(seed), len(audio))))


@pytest.mark.anyio
class CacheContract:
    """The behaviour every ``Cache`` backend promises.

    Subclasses set :attr:`cache_classes` and provide two fixtures: ``cache``, a backend over empty
    storage, and ``reopen``, a callable that builds a new backend object over the same storage as
    ``cache`` (as another process would). A backend that cannot do something the contract asks
    (a cache kept in memory cannot be reopened) marks that test
    ``pytest.mark.xfail(strict=True, reason=...)`` in its subclass, so it is reported, and fails
    the run if the test ever passes.
    """

    #: The ``Cache`` classes the ``cache`` fixture builds (all of them, for a composite such as
    #: ``TieredCache``): the tests run on the event loops that all of their ``async_backends`` name.
    cache_classes: ClassVar[tuple[type[Cache], ...]] = (Cache,)
    #: Whether float32 samples come back bit for bit (False for lossy formats such as FLAC).
    lossless = True
    #: The sample rate the ``cache`` fixture records when ``cache_data`` gets none.
    default_sample_rate = DEFAULT_SAMPLE_RATE

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run each test on the event loops every class in :attr:`cache_classes` supports."""
        if "anyio_backend" in metafunc.fixturenames:
            loops = [
                loop
                for loop in ("asyncio", "trio")
                if all(loop in cls.async_backends for cls in self.cache_classes)
            ]
            metafunc.parametrize("anyio_backend", loops, indirect=True)

    @pytest.fixture
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def reopen(self) -> Callable[[], Cache]:
        pytest.fail(
            f"{type(self).__name__} must provide a reopen fixture: a callable that builds a new "
            "backend over the same storage as the cache fixture"
        )

    def assert_audio_equal(self, got: npt.NDArray[Any] | None, expected: npt.NDArray[Any]) -> None:
        assert got is not None
        assert got.dtype == np.float32 and got.ndim == 1
        if self.lossless:
            np.testing.assert_array_equal(got, expected.astype(np.float32))
        else:
            np.testing.assert_allclose(got, expected, atol=1.0 / 32767)

    # -- keys ------------------------------------------------------------------------------------

    async def test_key_is_32_lowercase_hex_and_deterministic(self, cache: Cache) -> None:
        key = cache.generate_cache_key("Hello world", PARAMS)
        assert len(key) == 32 and set(key) <= set("0123456789abcdef")
        assert cache.generate_cache_key("Hello world", dict(reversed(list(PARAMS.items())))) == key
        assert cache.generate_cache_key("  Hello \n\t world ", {**PARAMS, "emotion": None}) == key
        assert cache.generate_cache_key("Hello world!", PARAMS) != key
        assert cache.generate_cache_key("Hello world", {**PARAMS, "pitch": "high"}) != key

    async def test_key_rejects_blank_text_and_bad_params(self, cache: Cache) -> None:
        with pytest.raises(ValueError, match="blank"):
            cache.generate_cache_key(" \n\t ", PARAMS)
        with pytest.raises(TypeError):
            cache.generate_cache_key("hi", {"speaker": object()})
        with pytest.raises(ValueError):
            cache.generate_cache_key("hi", {"temperature": float("nan")})

    # -- reading and writing ---------------------------------------------------------------------

    async def test_missing_key_is_none(self, cache: Cache) -> None:
        assert await cache.get_cached_data(cache.generate_cache_key("never", PARAMS)) is None

    async def test_round_trip_float32(self, cache: Cache) -> None:
        audio = sealed_audio(1)
        key = cache.generate_cache_key("one", PARAMS)
        assert await cache.cache_data(key, audio, "one", PARAMS) is True
        self.assert_audio_equal(await cache.get_cached_data(key), audio)

    async def test_float64_int16_and_column_audio_are_accepted(self, cache: Cache) -> None:
        base = sealed_audio(2)
        cases: list[tuple[npt.NDArray[Any], npt.NDArray[Any]]] = [
            (base.astype(np.float64), base),
            (base.reshape(-1, 1), base),
            (np.array([0, 16384, -32768, 32767], dtype=np.int16),
             np.array([0, 0.5, -1.0, 32767 / 32768], dtype=np.float32)),
            (base[::2], base[::2]),  # not contiguous
            (base.astype(">f4"), base),  # big-endian
        ]  # fmt: skip
        for index, (audio, expected) in enumerate(cases):
            key = cache.generate_cache_key(f"case {index}", PARAMS)
            assert await cache.cache_data(key, audio, f"case {index}", PARAMS)
            self.assert_audio_equal(await cache.get_cached_data(key), expected)

    async def test_bad_audio_raises_and_writes_nothing(self, cache: Cache) -> None:
        key = cache.generate_cache_key("bad audio", PARAMS)
        bad: list[tuple[object, type[Exception]]] = [
            ([0.1, 0.2], TypeError),
            (np.zeros(10, dtype=np.int32), TypeError),
            (np.zeros(10, dtype=np.complex64), TypeError),
            (np.zeros(10, dtype=object), TypeError),
            (np.zeros((10, 2), dtype=np.float32), ValueError),
            (np.zeros((2, 3, 4), dtype=np.float32), ValueError),
            (np.zeros(0, dtype=np.float32), ValueError),
            (np.array([0.0, np.nan], dtype=np.float32), ValueError),
            (np.array([0.0, np.inf], dtype=np.float64), ValueError),
            (np.array([0.0, 1e300], dtype=np.float64), ValueError),
        ]
        for audio, error in bad:
            with pytest.raises(error):
                await cache.cache_data(key, audio, "bad audio", PARAMS)  # type: ignore[arg-type]
        assert await cache.get_cached_data(key) is None

    async def test_bad_keys_are_rejected_by_every_method(self, cache: Cache) -> None:
        audio = sealed_audio(3)
        for bad in [*BAD_KEYS, 12345, None, b"0" * 32]:
            with pytest.raises((ValueError, TypeError)):
                await cache.get_cached_data(bad)  # type: ignore[arg-type]
            with pytest.raises((ValueError, TypeError)):
                await cache.cache_data(bad, audio, "x", PARAMS)  # type: ignore[arg-type]

    async def test_second_write_replaces_the_first(self, cache: Cache) -> None:
        key = cache.generate_cache_key("twice", PARAMS)
        assert await cache.cache_data(key, sealed_audio(4), "twice", PARAMS)
        assert await cache.cache_data(key, sealed_audio(5), "twice", PARAMS)
        self.assert_audio_equal(await cache.get_cached_data(key), sealed_audio(5))

    async def test_concurrent_writers_and_readers_see_whole_entries(self, cache: Cache) -> None:
        key = cache.generate_cache_key("contended", PARAMS)
        candidates = {seed: sealed_audio(seed, 16_000) for seed in range(10, 16)}
        seen: list[npt.NDArray[Any]] = []

        async def write(seed: int) -> None:
            assert await cache.cache_data(key, candidates[seed], "contended", PARAMS)

        async def read() -> None:
            got = await cache.get_cached_data(key)
            if got is not None:
                seen.append(got)

        async with anyio.create_task_group() as group:
            for seed in candidates:
                group.start_soon(write, seed)
                group.start_soon(read)
                group.start_soon(read)
        final = await cache.get_cached_data(key)
        assert final is not None
        for got in [*seen, final]:
            assert any(
                np.allclose(got, audio, atol=1.0 / 32767, rtol=0) for audio in candidates.values()
            )

    # -- status ----------------------------------------------------------------------------------

    async def test_status_aligns_dedupes_and_keeps_first_occurrence_order(
        self, cache: Cache
    ) -> None:
        segments = ["A one.", "B two.", "A  one.", "C three.", "B two.", "D four.", "C three."]
        for text in ("B two.", "D four."):
            key = cache.generate_cache_key(text, PARAMS)
            assert await cache.cache_data(key, sealed_audio(len(text)), text, PARAMS)
        status = await cache.get_cache_status(segments, PARAMS)
        keys, cached, to_generate = status
        assert keys == [cache.generate_cache_key(s, PARAMS) for s in segments]
        assert cached == [keys[1], keys[5]]
        assert to_generate == ["A one.", "C three."]
        assert status.cache_keys is keys

    async def test_status_of_nothing_and_of_blank_segments(self, cache: Cache) -> None:
        assert tuple(await cache.get_cache_status([], PARAMS)) == ([], [], [])
        with pytest.raises(ValueError, match="segment 1"):
            await cache.get_cache_status(["fine", "   "], PARAMS)

    async def test_status_with_different_params_is_a_miss(self, cache: Cache) -> None:
        key = cache.generate_cache_key("voice", PARAMS)
        assert await cache.cache_data(key, sealed_audio(6), "voice", PARAMS)
        status = await cache.get_cache_status(["voice"], {**PARAMS, "gender": "male"})
        assert status.cached_keys == [] and status.segments_to_generate == ["voice"]

    # -- clearing --------------------------------------------------------------------------------

    async def test_clear_removes_every_entry(self, cache: Cache) -> None:
        keys = []
        for index in range(5):
            key = cache.generate_cache_key(f"clear {index}", PARAMS)
            assert await cache.cache_data(key, sealed_audio(index), f"clear {index}", PARAMS)
            keys.append(key)
        assert await cache.clear_cache() is True
        for key in keys:
            assert await cache.get_cached_data(key) is None
        assert await cache.clear_cache() is True  # clearing an empty cache is fine
        key = keys[0]
        assert await cache.cache_data(key, sealed_audio(0), "clear 0", PARAMS)
        self.assert_audio_equal(await cache.get_cached_data(key), sealed_audio(0))

    # -- batches and entries ---------------------------------------------------------------------

    async def test_batch_read_gives_the_single_reads_in_order(self, cache: Cache) -> None:
        texts = ["batch one", "batch two", "batch three"]
        keys = [cache.generate_cache_key(text, PARAMS) for text in texts]
        for seed, (key, text) in enumerate(zip(keys, texts, strict=True), 20):
            assert await cache.cache_data(key, sealed_audio(seed), text, PARAMS)
        missing = cache.generate_cache_key("batch missing", PARAMS)
        asked = [keys[1], missing, keys[0], keys[1], keys[2], missing]
        seeds: list[int | None] = [21, None, 20, 21, 22, None]
        batch = await cache.get_cached_batch(asked)
        singles = [await cache.get_cached_data(key) for key in asked]
        assert len(batch) == len(asked)
        for got, single, wanted in zip(batch, singles, seeds, strict=True):
            if wanted is None:
                assert got is None and single is None
            else:
                self.assert_audio_equal(got, sealed_audio(wanted))
                assert single is not None
                self.assert_audio_equal(got, single)
        assert await cache.get_cached_batch([]) == []
        with pytest.raises((ValueError, TypeError)):
            await cache.get_cached_batch([keys[0], "../" * 10 + "etc/passwd"])

    async def test_get_entry_gives_the_audio_under_its_key_and_none_on_a_miss(
        self, cache: Cache
    ) -> None:
        key = cache.generate_cache_key("entry audio", PARAMS)
        audio = sealed_audio(30)
        assert await cache.cache_data(key, audio, "entry audio", PARAMS)
        missing = cache.generate_cache_key("entry missing", PARAMS)
        assert await cache.get_entry(missing) is None
        entry = await cache.get_entry(key)
        assert entry is not None and entry.meta.key == key
        self.assert_audio_equal(entry.audio, audio)
        first, *found = await cache.get_entries([missing, key, key])
        assert first is None and len(found) == 2
        for entry in found:
            assert entry is not None and entry.meta.key == key
            self.assert_audio_equal(entry.audio, audio)
        for bad in BAD_KEYS[:3]:
            with pytest.raises((ValueError, TypeError)):
                await cache.get_entry(bad)  # type: ignore[arg-type]

    async def test_get_entry_gives_text_and_params_as_stored(self, cache: Cache) -> None:
        text = "Entry text, as written: Grüße!"
        params = {**PARAMS, "temperature": 0.7, "top_k": 50}
        key = cache.generate_cache_key(text, params)
        assert await cache.cache_data(key, sealed_audio(31), text, params)
        entry = await cache.get_entry(key)
        assert entry is not None
        assert (entry.meta.key, entry.meta.text, entry.meta.params) == (key, text, params)
        [again] = await cache.get_entries([key])
        assert again is not None and (again.meta.text, again.meta.params) == (text, params)

    async def test_sample_rate_round_trips_through_get_entry(self, cache: Cache) -> None:
        key = cache.generate_cache_key("at 22050 Hz", PARAMS)
        audio = sealed_audio(32)
        assert await cache.cache_data(key, audio, "at 22050 Hz", PARAMS, sample_rate=22050)
        entry = await cache.get_entry(key)
        assert entry is not None and entry.meta.sample_rate == 22050
        self.assert_audio_equal(entry.audio, audio)
        default_key = cache.generate_cache_key("at the default rate", PARAMS)
        assert await cache.cache_data(default_key, sealed_audio(33), "at the default rate", PARAMS)
        entry = await cache.get_entry(default_key)
        assert entry is not None and entry.meta.sample_rate == self.default_sample_rate

    # -- verified reads --------------------------------------------------------------------------

    async def test_verified_read_serves_only_the_request_an_entry_was_made_for(
        self, cache: Cache
    ) -> None:
        # A crafted collision, simulated: the entry under B's key was made for text A.
        key = cache.generate_cache_key("Text B", PARAMS)
        audio = sealed_audio(34)
        assert await cache.cache_data(key, audio, "Text A", PARAMS)
        self.assert_audio_equal(await cache.get_cached_data(key), audio)  # by key: served
        [collided] = await cache.get_verified_batch([key], ["Text B"], PARAMS)
        assert collided is None
        looked_up, collided = await cache.lookup("Text B", PARAMS)
        assert looked_up == key and collided is None
        [served] = await cache.get_verified_batch([key], ["  Text \n A "], PARAMS)
        self.assert_audio_equal(served, audio)  # the same text, normalised
        other_params = {**PARAMS, "pitch": "high"}
        [mismatched] = await cache.get_verified_batch([key], ["Text A"], other_params)
        assert mismatched is None
        # Written for B, the same key is a verified hit for B.
        assert await cache.cache_data(key, audio, "Text B", dict(reversed(PARAMS.items())))
        found_key, found = await cache.lookup("Text B", {**PARAMS, "unset": None})
        assert found_key == key
        self.assert_audio_equal(found, audio)
        missing = cache.generate_cache_key("never written", PARAMS)
        both = await cache.get_verified_batch([key, missing], ["Text B", "never written"], PARAMS)
        self.assert_audio_equal(both[0], audio)
        assert both[1] is None
        with pytest.raises(ValueError):
            await cache.get_verified_batch([key, missing], ["Text B"], PARAMS)

    # -- persistence -----------------------------------------------------------------------------

    async def test_a_reopened_backend_sees_what_the_first_wrote(
        self, cache: Cache, reopen: Callable[[], Cache]
    ) -> None:
        texts = [f"kept {index}" for index in range(3)]
        keys = [cache.generate_cache_key(text, PARAMS) for text in texts]
        for seed, (key, text) in enumerate(zip(keys, texts, strict=True), 40):
            assert await cache.cache_data(key, sealed_audio(seed), text, PARAMS, sample_rate=22050)
        again = reopen()
        assert again is not cache
        for seed, (key, text) in enumerate(zip(keys, texts, strict=True), 40):
            self.assert_audio_equal(await again.get_cached_data(key), sealed_audio(seed))
            entry = await again.get_entry(key)
            assert entry is not None
            assert (entry.meta.text, entry.meta.sample_rate) == (text, 22050)
        status = await again.get_cache_status([*texts, "not kept"], PARAMS)
        assert status.cached_keys == keys and status.segments_to_generate == ["not kept"]
        # And the other way round: the first object sees the new one's writes and clears.
        key = cache.generate_cache_key("written later", PARAMS)
        assert await again.cache_data(key, sealed_audio(43), "written later", PARAMS)
        self.assert_audio_equal(await cache.get_cached_data(key), sealed_audio(43))
        assert await again.clear_cache() is True
        assert await cache.get_cached_batch([*keys, key]) == [None] * 4
