"""``TTSCache`` (async) and ``SyncTTSCache`` (blocking): two fronts over one synchronous core."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from .._core.audio import check_sample_rate
from .._core.cache import Cache, CacheStatus
from .._core.codec import DEFAULT_SAMPLE_RATE, Entry, codec_named, new_entry
from .._core.errors import InvalidOptionError, UnsupportedTypeError
from .._core.keys import check_key, generate_cache_key
from .._core.matching import RequestCheck, check_aligned
from . import maintenance as maintenance
from . import walk as walk
from .blobs import Blobs, BlobWriter, StoredBlob
from .eviction import PruneReport
from .maintenance import VerifyReport
from .status import MAX_THREADS, TICK_SECONDS, Checked, Governor, StatusPlan
from .store import FileStore, Inspection
from .walk import FileInfo, Progress

__all__ = ["SyncTTSCache", "TTSCache", "default_cache_dir"]

log = logging.getLogger("sparktts_cache")


def default_cache_dir() -> Path:
    """``$SPARKTTS_CACHE_DIR`` if set, else the platform's user cache directory."""
    configured = os.environ.get("SPARKTTS_CACHE_DIR")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("sparktts_cache", appauthor=False))


@dataclass
class TrafficStats:
    """This process's hits, misses and writes through one cache object."""

    hits: int = 0
    misses: int = 0
    writes: int = 0


@dataclass
class Stats:
    """What ``stats()`` returns: the directory's figures and this process's traffic."""

    entries: int
    bytes: int
    oldest: float | None
    newest: float | None
    temp_files: int
    hits: int
    misses: int
    writes: int
    max_size_bytes: int | None
    blobs: int = 0  # stored blobs (the speech server's responses), not counted in entries
    blob_bytes: int = 0


class _CacheCore:
    """The blocking implementation both fronts share: validation, then the file store."""

    __slots__ = ("_lock", "blobs", "cache_dir", "sample_rate", "store", "traffic")

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None,
        sample_rate: int | None,
        audio_format: str,
        fsync: bool,
        max_size_bytes: int | None,
    ) -> None:
        if max_size_bytes is not None and (
            isinstance(max_size_bytes, bool)
            or not isinstance(max_size_bytes, int)
            or max_size_bytes <= 0
        ):
            raise InvalidOptionError(
                f"max_size_bytes must be a positive int or None, got {max_size_bytes!r}"
            )
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise UnsupportedTypeError(f"cache_dir must be a path, not {type(cache_dir).__name__}")
        if cache_dir is not None and "\0" in os.fsdecode(cache_dir):
            # The OS cannot take such a path: every call would fail later, and less clearly.
            raise InvalidOptionError(f"cache_dir must not contain a NUL byte: {cache_dir!r}")
        codec = codec_named(audio_format)
        self.cache_dir = (
            Path(cache_dir).absolute() if cache_dir is not None else default_cache_dir()
        )
        self.sample_rate = None if sample_rate is None else check_sample_rate(sample_rate)
        self.store = FileStore(
            str(self.cache_dir), codec, fsync=bool(fsync), max_size_bytes=max_size_bytes
        )
        self.blobs = Blobs(self.store)
        self.traffic = TrafficStats()
        self._lock = threading.Lock()

    def _count(self, hits: int = 0, misses: int = 0, writes: int = 0) -> None:
        with self._lock:
            self.traffic.hits += hits
            self.traffic.misses += misses
            self.traffic.writes += writes

    def read(self, key: str) -> npt.NDArray[np.float32] | None:
        return self.read_many([key])[0]

    def read_many(self, keys: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        results = self.store.read_audio_many([check_key(key) for key in keys])
        hits = sum(result is not None for result in results)
        self._count(hits=hits, misses=len(results) - hits)
        return results

    def read_verified(
        self, keys: Sequence[str], texts: Sequence[str], tts_params: Mapping[str, Any] | None
    ) -> list[npt.NDArray[np.float32] | None]:
        """:meth:`read_many`, but an entry made for another text or parameters is a miss."""
        key_list, text_list = [check_key(key) for key in keys], list(texts)
        check_aligned(key_list, text_list)
        results = self.store.read_verified_many(key_list, text_list, RequestCheck(tts_params))
        hits = sum(result is not None for result in results)
        self._count(hits=hits, misses=len(results) - hits)
        return results

    def lookup(
        self, text: str, tts_params: Mapping[str, Any] | None
    ) -> tuple[str, npt.NDArray[np.float32] | None]:
        key = generate_cache_key(text, tts_params)
        return key, self.read_verified([key], [text], tts_params)[0]

    def stats(self, progress: Progress | None = None) -> Stats:
        found = maintenance.stats(self.store.root, progress)
        with self._lock:
            traffic = dataclasses.replace(self.traffic)
        return Stats(
            found.entries, found.bytes, found.oldest, found.newest, found.temp_files,
            traffic.hits, traffic.misses, traffic.writes, self.store.max_size_bytes,
            found.blobs, found.blob_bytes,
        )  # fmt: skip

    def read_entry(self, key: str) -> Entry | None:
        return self.store.read_entry(check_key(key))

    def read_entries(self, keys: Sequence[str]) -> list[Entry | None]:
        return self.store.read_entries([check_key(key) for key in keys])

    def inspect(self, key: str, audio_format: str | None) -> Inspection | None:
        return self.store.inspect(check_key(key), audio_format)

    def write(
        self,
        key: str,
        audio: object,
        text: object,
        params: Mapping[str, Any] | None,
        sample_rate: int | None,
    ) -> bool:
        key = check_key(key)
        samples, meta = new_entry(
            key, audio, text, params, sample_rate, self.sample_rate, self.store.codec
        )
        written = self.store.write(key, samples, meta)
        self._count(writes=written)
        return written

    def status_plan(self, segments: object, tts_params: Mapping[str, Any] | None) -> StatusPlan:
        """A plan to key ``segments`` and check them, for the fronts to run (see ``status``)."""
        return StatusPlan(
            _as_segment_sequence(segments), tts_params, self.store.root, self.store.codec.extension
        )

    def status(self, segments: object, tts_params: Mapping[str, Any] | None) -> CacheStatus:
        plan = self.status_plan(segments, tts_params)
        plan.build()
        return plan.finish()

    def verify(self, fix: bool, progress: Progress | None) -> VerifyReport:
        return maintenance.verify(self.store.root, fix, progress)

    def prune(
        self, max_size_bytes: int | None, max_age: float | None, progress: Progress | None
    ) -> PruneReport:
        return maintenance.prune(self.store.root, max_size_bytes, max_age, progress)

    def clear(self) -> bool:
        return maintenance.clear(self.store.root)

    def list_shards(self) -> list[str]:
        return walk.list_shards(self.store.root)

    def shard_entries(self, outer: str) -> list[FileInfo]:
        return walk.shard_entries(self.store.root, outer)


def _as_segment_sequence(segments: object) -> Sequence[str]:
    """``segments`` if it is a sequence (not a str); the plan copies it in a worker thread."""
    if isinstance(segments, (str, bytes)) or not isinstance(segments, Sequence):
        raise UnsupportedTypeError(
            f"segments must be a sequence of str, not {type(segments).__name__}"
        )
    return segments


class _CacheFront:
    """What both fronts share: construction, configuration, keys and paths."""

    __slots__ = ("_core",)

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        sample_rate: int | None = DEFAULT_SAMPLE_RATE,
        audio_format: str = "wav",
        fsync: bool = False,
        max_size_bytes: int | None = None,
    ) -> None:
        self._core = _CacheCore(cache_dir, sample_rate, audio_format, fsync, max_size_bytes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(cache_dir={str(self.cache_dir)!r}, "
            f"audio_format={self.audio_format!r})"
        )

    @property
    def cache_dir(self) -> Path:
        return self._core.cache_dir

    @property
    def sample_rate(self) -> int | None:
        """The rate of entries written without one (16,000 Hz, Spark-TTS's, unless the cache was
        made with another); None: each ``cache_data`` must give it."""
        return self._core.sample_rate

    @property
    def audio_format(self) -> str:
        return self._core.store.codec.extension

    @property
    def max_size_bytes(self) -> int | None:
        return self._core.store.max_size_bytes

    @property
    def traffic(self) -> TrafficStats:
        """This object's hits, misses and writes so far."""
        return self._core.traffic

    def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
        """Return the cache key of ``text`` with ``tts_params`` (see :func:`generate_cache_key`)."""
        return generate_cache_key(text, tts_params)

    def entry_path(self, key: str) -> Path:
        """The path where ``key``'s entry lives (whether or not it exists)."""
        return Path(self._core.store.entry_path(check_key(key)))


class TTSCache(_CacheFront, Cache):
    """An async, content-addressed cache of TTS audio on the local file system.

    Args:
        cache_dir: where entries live; ``$SPARKTTS_CACHE_DIR`` or the user cache directory if None.
        sample_rate: the sample rate of audio written without an explicit one: give the
            model's, ``model.sample_rate``. The default, 16,000 Hz, is Spark-TTS's (the seed
            module's API has no rate: it stored Spark-TTS audio), and is wrong for every other
            engine's audio. None: every ``cache_data`` must give its ``sample_rate``, and one
            that does not raises ``InvalidOptionError``.
        audio_format: ``"wav"`` (float32, bit-exact, default) or ``"flac"`` (16-bit, about half the
            size, lossy against float32).
        fsync: flush each entry to stable storage before publishing it (slower; see
            docs/format.md).

    Example::

        cache = TTSCache(cache_dir="tts_cache", sample_rate=model.sample_rate)
        key = cache.generate_cache_key("Hello world", {"gender": "female"})
        if (audio := await cache.get_cached_data(key)) is None:
            audio = model.inference("Hello world", gender="female")
            await cache.cache_data(key, audio, "Hello world", {"gender": "female"})

    Notes:
        Every method runs its file-system work in worker threads and never blocks the event loop;
        it works under asyncio and trio. Instances are safe to share between tasks, and any number
        of processes may share one directory. Reads may be abandoned when cancelled; writes and
        ``clear_cache`` run to completion even if the caller is cancelled.
    """

    async def get_cached_data(self, key: str) -> npt.NDArray[np.float32] | None:
        """Return the cached samples of ``key`` (1-D float32), or None on a miss.

        A corrupt, truncated or foreign file at the entry's path is logged, removed and reported as
        a miss.

        Raises:
            InvalidKeyError: if ``key`` is not 32 lowercase hex characters.
        """
        check_key(key)
        return await anyio.to_thread.run_sync(self._core.read, key, abandon_on_cancel=True)

    async def get_cached_batch(self, keys: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        """Return the cached samples of each key (None where missing), in one worker-thread call.

        Raises:
            InvalidKeyError: if any key is malformed (nothing is read).
        """
        key_list = list(keys)
        return await anyio.to_thread.run_sync(
            self._core.read_many, key_list, abandon_on_cancel=True
        )

    async def get_verified_batch(
        self,
        keys: Sequence[str],
        texts: Sequence[str],
        tts_params: Mapping[str, Any] | None = None,
    ) -> list[npt.NDArray[np.float32] | None]:
        """:meth:`get_cached_batch`, but an entry made for another text or other parameters that
        share its key (a crafted collision) is a miss; see :meth:`Cache.get_verified_batch`.

        One worker-thread call reads each entry with its metadata and compares it with the request
        (the normalised text and the canonical parameters). A mismatched entry is left in place
        (it is a valid entry): the caller's ``cache_data`` replaces it.

        Raises:
            InvalidOptionError: if ``texts`` is not aligned with ``keys``.
            InvalidKeyError, UnsupportedTypeError, InvalidTextError, InvalidParamsError: for a
                bad key, text or parameters (nothing is read).
        """
        key_list, text_list = list(keys), list(texts)
        return await anyio.to_thread.run_sync(
            self._core.read_verified, key_list, text_list, tts_params, abandon_on_cancel=True
        )

    async def lookup(
        self, text: str, tts_params: Mapping[str, Any] | None = None
    ) -> tuple[str, npt.NDArray[np.float32] | None]:
        """The key of ``text`` with ``tts_params`` and its verified audio, keyed and read in one
        worker-thread call; see :meth:`Cache.lookup`."""
        return await anyio.to_thread.run_sync(
            self._core.lookup, text, tts_params, abandon_on_cancel=True
        )

    async def get_entry(self, key: str) -> Entry | None:
        """Return the samples together with the stored text, parameters, sample rate and time."""
        check_key(key)
        return await anyio.to_thread.run_sync(self._core.read_entry, key, abandon_on_cancel=True)

    async def get_entries(self, keys: Sequence[str]) -> list[Entry | None]:
        """:meth:`get_entry` of each key (None where missing), in one worker-thread call.

        Raises:
            InvalidKeyError: if any key is malformed (nothing is read).
        """
        key_list = list(keys)
        return await anyio.to_thread.run_sync(
            self._core.read_entries, key_list, abandon_on_cancel=True
        )

    async def inspect(self, key: str, audio_format: str | None = None) -> Inspection | None:
        """``key``'s entry file as it is on disk, or None if there is none: for looking, not using.

        Where :meth:`get_entry` treats a damaged entry as a miss and removes it, this reports it
        (``Inspection.damage`` says what is wrong: a checksum mismatch, another key's entry,
        metadata ``cache_data`` would not write...) and leaves it for :meth:`verify` to remove; it
        does not refresh a whole entry's recency either. Entries of either format are found,
        WAV first, whatever this cache writes, or only ``audio_format``'s.

        Raises:
            InvalidKeyError: if ``key`` is not 32 lowercase hex characters.
            InvalidOptionError: if ``audio_format`` is not ``"wav"``, ``"flac"`` or None.
        """
        check_key(key)
        return await anyio.to_thread.run_sync(
            self._core.inspect, key, audio_format, abandon_on_cancel=True
        )

    async def cache_data(
        self,
        key: str,
        audio: npt.NDArray[Any],
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        sample_rate: int | None = None,
    ) -> bool:
        """Store ``audio`` as the entry of ``key``, replacing any entry already there.

        Args:
            key: a key from :meth:`generate_cache_key`.
            audio: mono samples: 1-D or (n, 1), float32, float64 or int16 (scaled to [-1, 1)).
            text: the text the audio says, kept in the entry's metadata.
            params: the TTS parameters, kept in the entry's metadata.
            sample_rate: the audio's sample rate; the cache's ``sample_rate`` if None.

        Returns:
            True once the entry is published; False if the file system refused (full, read-only,
            permission denied), after logging why. No partial file is left either way.

        Raises:
            InvalidKeyError, UnsupportedTypeError, InvalidAudioError, InvalidTextError,
            InvalidParamsError: for bad arguments; nothing is written.
            InvalidOptionError: if neither ``sample_rate`` nor the cache's gives the rate.
        """
        check_key(key)
        return await anyio.to_thread.run_sync(
            self._core.write, key, audio, text, params, sample_rate
        )

    async def get_cache_status(
        self, segments: Sequence[str], tts_params: Mapping[str, Any] | None = None
    ) -> CacheStatus:
        """Key every segment and check which distinct entries exist, concurrently.

        All work runs in worker threads: keying and the checks in one call while the checks are
        CPU work (a local disk); while they mostly wait (a network file system, a cold disk), in
        rounds spread over threads, as many as keep the event loop on time (at most 64).

        Presence is checked from the directory only; a listed entry that turns out corrupt or
        not a file (or is evicted) before it is read is a miss for :meth:`get_cached_data`, and
        :class:`LongTextTTS` synthesises such a segment after all.

        Raises:
            UnsupportedTypeError, InvalidTextError: for a segment that is not a str or is blank (the
                message gives its index); InvalidParamsError for bad parameters.
        """
        plan = self._core.status_plan(segments, tts_params)
        # One worker-thread call keys and checks; it hands back a round if the checks wait.
        outcome = await anyio.to_thread.run_sync(plan.build_and_check, abandon_on_cancel=True)
        while isinstance(outcome, Checked):
            log.debug(
                "status: checks wait (%.0f us each, %.0f%% of a core): spreading %d over threads",
                outcome.per_check * 1e6, outcome.load * 100, plan.distinct_count - plan.claimed,
            )  # fmt: skip
            await _check_concurrently(plan, Governor(outcome, time.perf_counter()))
            outcome = await anyio.to_thread.run_sync(
                plan.run_unless_waiting, abandon_on_cancel=True
            )
        return outcome

    async def stats(self, progress: Progress | None = None) -> Stats:
        """Entries, bytes on disk, least and most recently used entry, and this process's traffic.

        Scans the whole directory in a worker thread; ``progress(done, total)`` is called from it.
        """
        return await anyio.to_thread.run_sync(self._core.stats, progress, abandon_on_cancel=True)

    async def iter_entries(self) -> AsyncIterator[FileInfo]:
        """Every entry in the cache (key, size, last use, path), one shard per worker-thread call.

        Entries written or removed during the iteration may or may not be listed.
        """
        core = self._core
        for outer in await anyio.to_thread.run_sync(core.list_shards, abandon_on_cancel=True):
            for info in await anyio.to_thread.run_sync(
                core.shard_entries, outer, abandon_on_cancel=True
            ):
                yield info

    async def verify(self, fix: bool = False, progress: Progress | None = None) -> VerifyReport:
        """Check every entry's format and checksum, and report the damage found.

        Reports corrupt entries, orphan temp files, empty shard directories, squatters (something
        the cache cannot use where its counters or lock files belong) and foreign files; with
        ``fix=True`` removes all but the foreign files, which are not the cache's.

        Raises:
            NotACacheDirectoryError: with ``fix=True``, if the directory is not marked as a cache
                (``CACHEDIR.TAG``) and holds files that are not the cache's; nothing is removed.
        """
        return await anyio.to_thread.run_sync(self._core.verify, fix, progress)

    async def prune(
        self,
        max_size_bytes: int | None = None,
        max_age: float | None = None,
        progress: Progress | None = None,
    ) -> PruneReport:
        """Remove entries unused for ``max_age`` s, then the least recently used to the size.

        Also removes dead writers' temp files and empty shard directories; returns what went.

        Raises:
            NotACacheDirectoryError: if the directory is not marked as a cache (``CACHEDIR.TAG``)
                and holds files that are not the cache's; nothing is removed.
        """
        return await anyio.to_thread.run_sync(self._core.prune, max_size_bytes, max_age, progress)

    async def clear_cache(self) -> bool:
        """Remove every entry and leftover temp file; files the cache did not write are kept.

        Safe while other processes write: their writes either land after the clear or are retried.
        Returns False, after logging why, if something could not be removed.

        Raises:
            NotACacheDirectoryError: if the directory is not marked as a cache (``CACHEDIR.TAG``)
                and holds files that are not the cache's; nothing is removed. A directory holding
                nothing but the cache's own files is marked and cleared.
        """
        return await anyio.to_thread.run_sync(self._core.clear)


async def _check_concurrently(plan: StatusPlan, governor: Governor) -> None:
    """Check the paths of ``plan`` not handed out yet with ``governor.threads`` threads at once,
    until none are left or the governor finds the checks CPU work (``governor.busy``).

    Up to :data:`MAX_THREADS` tasks take rounds from the plan, and a limiter lets
    ``governor.threads`` of them run; beside them a task tells the governor how late the event loop
    runs, every :data:`TICK_SECONDS`.
    """
    running = anyio.CapacityLimiter(governor.threads)
    threads = anyio.CapacityLimiter(MAX_THREADS)

    def steer() -> None:
        if running.total_tokens != governor.threads:
            running.total_tokens = governor.threads

    async def worker() -> None:
        while not governor.busy:
            async with running:
                span = None if governor.busy else plan.claim(governor.round_size)
                if span is None:
                    return
                checked = await anyio.to_thread.run_sync(
                    plan.check_range, *span, abandon_on_cancel=True, limiter=threads
                )
            plan.record(span[0], checked)
            governor.observe(checked, time.perf_counter())
            steer()

    async def watch_the_loop() -> None:
        while True:
            due = time.perf_counter() + TICK_SECONDS
            await anyio.sleep(TICK_SECONDS)
            now = time.perf_counter()
            governor.tick(now - due, now)
            steer()

    rounds = math.ceil((plan.distinct_count - plan.claimed) / governor.round_size)
    async with anyio.create_task_group() as watching:
        watching.start_soon(watch_the_loop)
        async with anyio.create_task_group() as checking:
            for _ in range(min(MAX_THREADS, rounds)):
                checking.start_soon(worker)
                await anyio.lowlevel.checkpoint()
        watching.cancel_scope.cancel()


class SyncTTSCache(_CacheFront):
    """The same cache as :class:`TTSCache`, as plain blocking calls for scripts and notebooks.

    It shares ``TTSCache``'s synchronous core: same arguments, same files, same guarantees. Do not
    call it from an event loop thread; use :class:`TTSCache` there.
    """

    def as_async(self) -> TTSCache:
        """A :class:`TTSCache` over this cache: the same files, options and traffic counts."""
        front = TTSCache.__new__(TTSCache)
        front._core = self._core
        return front

    def get_cached_data(self, key: str) -> npt.NDArray[np.float32] | None:
        """Return the cached samples of ``key``, or None on a miss."""
        return self._core.read(key)

    def get_cached_batch(self, keys: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        """Return the cached samples of each key (None where missing), in order."""
        return self._core.read_many(keys)

    def get_verified_batch(
        self,
        keys: Sequence[str],
        texts: Sequence[str],
        tts_params: Mapping[str, Any] | None = None,
    ) -> list[npt.NDArray[np.float32] | None]:
        """As :meth:`TTSCache.get_verified_batch`."""
        return self._core.read_verified(keys, texts, tts_params)

    def lookup(
        self, text: str, tts_params: Mapping[str, Any] | None = None
    ) -> tuple[str, npt.NDArray[np.float32] | None]:
        """As :meth:`TTSCache.lookup`."""
        return self._core.lookup(text, tts_params)

    def get_entry(self, key: str) -> Entry | None:
        """Return the samples and metadata of ``key``, or None on a miss."""
        return self._core.read_entry(key)

    def inspect(self, key: str, audio_format: str | None = None) -> Inspection | None:
        """As :meth:`TTSCache.inspect`: ``key``'s entry file as it is, damage reported, not
        removed, and its recency untouched."""
        return self._core.inspect(key, audio_format)

    def open_blob(self, key: str, kind: str) -> StoredBlob | None:
        """The blob stored under ``key`` and ``kind``, checked whole, or None (see
        :mod:`~sparktts_cache._file.blobs`): an opaque byte string kept beside the entries, as
        the speech server keeps its finished responses. A damaged one is removed; a hit counts as
        a use for the size limit's least-recently-used order.

        Raises:
            InvalidKeyError: for a key that is not 32 lowercase hex digits.
            InvalidOptionError: unless ``kind`` is 1-8 lowercase letters or digits.
        """
        return self._core.blobs.open(key, kind)

    def begin_blob(self, key: str, kind: str) -> BlobWriter:
        """A writer of the blob of ``key`` and ``kind``: ``write`` its bytes as they come, then
        ``commit`` (published whole, atomically, and counted against the size limit) or
        ``discard``. Its methods never raise ``OSError``: a blob that cannot be kept is logged.

        Raises:
            InvalidKeyError, InvalidOptionError: as :meth:`open_blob`.
        """
        return self._core.blobs.begin(key, kind)

    def cache_data(
        self,
        key: str,
        audio: npt.NDArray[Any],
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        sample_rate: int | None = None,
    ) -> bool:
        """Store ``audio`` under ``key``; False if the file system refused.

        As :meth:`TTSCache.cache_data`: without ``sample_rate``, the cache's is used, and a cache
        made without one raises ``InvalidOptionError``.
        """
        return self._core.write(key, audio, text, params, sample_rate)

    def get_cache_status(
        self, segments: Sequence[str], tts_params: Mapping[str, Any] | None = None
    ) -> CacheStatus:
        """Key every segment and check which distinct entries exist, in this thread."""
        return self._core.status(segments, tts_params)

    def clear_cache(self) -> bool:
        """Remove every entry and leftover temp file."""
        return self._core.clear()

    def stats(self, progress: Progress | None = None) -> Stats:
        """As :meth:`TTSCache.stats`."""
        return self._core.stats(progress)

    def iter_entries(self) -> Iterator[FileInfo]:
        """As :meth:`TTSCache.iter_entries`."""
        for outer in self._core.list_shards():
            yield from self._core.shard_entries(outer)

    def verify(self, fix: bool = False, progress: Progress | None = None) -> VerifyReport:
        """As :meth:`TTSCache.verify`."""
        return self._core.verify(fix, progress)

    def prune(
        self,
        max_size_bytes: int | None = None,
        max_age: float | None = None,
        progress: Progress | None = None,
    ) -> PruneReport:
        """As :meth:`TTSCache.prune`."""
        return self._core.prune(max_size_bytes, max_age, progress)
