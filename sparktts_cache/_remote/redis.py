"""``RedisCache``: the same entries in Redis, for fleets of servers without a shared file system.

Needs the ``[redis]`` extra (``redis.asyncio``), and so runs on asyncio (not trio). Entries are
the same self-checking WAV bytes as the file store's, under ``<namespace>:e:<key>``. Any Redis or
connection error is a miss on reads and False on writes, logged; the client reconnects on the next
call. Eviction is left to Redis (``maxmemory`` with ``allkeys-lru``; see docs/operations.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from .._core.audio import check_sample_rate
from .._core.cache import Cache, CacheStatus, build_status, check_lock_timing
from .._core.codec import Entry, decode_entry, encode_entry
from .._core.errors import InvalidOptionError, MissingDependencyError
from .._core.keys import check_key, generate_cache_key, keys_for_segments

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisCache", "RedisSynthesisLock"]

log = logging.getLogger("sparktts_cache")

#: Keys asked about (EXISTS) or fetched (MGET) per round trip.
BATCH = 1000

#: What a namespace may hold: no ``:`` (the separator: namespace ``a`` would otherwise own the keys
#: of ``a:e:b``) and none of SCAN's pattern characters (``* ? [ ] ^ \``: clearing ``a\`` matched
#: ``a:e:*``), so that no namespace's scan or clear can reach another's.
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,200}")


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` if it is 1 to 200 letters, digits, ``_``, ``.`` or ``-``.

    Raises:
        InvalidOptionError: for anything else.
    """
    if not isinstance(namespace, str) or _NAMESPACE.fullmatch(namespace) is None:
        raise InvalidOptionError(
            "namespace must be 1 to 200 ASCII letters, digits, '_', '.' or '-' (no ':' and no "
            f"pattern characters, so that namespaces cannot reach each other): {namespace!r}"
        )
    return namespace


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import RedisError
    except ImportError as exc:
        raise MissingDependencyError(_INSTALL_HINT) from exc
    return (RedisError, OSError, TimeoutError)


_INSTALL_HINT = 'Redis support needs redis: pip install "sparktts_cache[redis]"'


def _connect(url_or_client: str | Redis) -> Redis:
    if not isinstance(url_or_client, str):
        return url_or_client
    try:
        from redis.asyncio import Redis
    except ImportError as exc:
        raise MissingDependencyError(_INSTALL_HINT) from exc
    return Redis.from_url(url_or_client, socket_timeout=5, socket_connect_timeout=5)


class RedisCache(Cache):
    """A :class:`Cache` in Redis with the same keys and entry bytes as :class:`TTSCache`.

    Args:
        url: a ``redis://`` URL, or a ``redis.asyncio.Redis`` client.
        namespace: prefix of every Redis key this cache uses (``clear_cache`` removes only these).
        ttl: seconds an entry lives (None: until Redis evicts it).
        sample_rate: recorded with entries written without an explicit one (the model's).
            None (the default): every ``cache_data`` must give its ``sample_rate``
            (``InvalidOptionError`` otherwise), as for :class:`TTSCache`.

    Raises:
        InvalidOptionError: for a namespace that is not 1 to 200 letters, digits, ``_``, ``.``
            or ``-``, or a ttl <= 0.
        MissingDependencyError: if the ``redis`` package is not installed.

    Notes:
        Runs on asyncio only (``redis.asyncio``). ``get_cache_status`` asks about all keys with one
        pipelined round trip per 1,000 segments; ``clear_cache`` uses SCAN and UNLINK in batches,
        never FLUSHDB.
    """

    async_backends: ClassVar[tuple[str, ...]] = ("asyncio",)

    def __init__(
        self,
        url: str | Redis = "redis://localhost:6379/0",
        *,
        namespace: str = "sparktts",
        ttl: float | None = None,
        sample_rate: int | None = None,
    ) -> None:
        namespace = check_namespace(namespace)
        if ttl is not None and ttl <= 0:
            raise InvalidOptionError(f"ttl must be positive or None, got {ttl!r}")
        self.client = _connect(url)
        self.namespace = namespace
        self.ttl = ttl
        self.sample_rate = None if sample_rate is None else check_sample_rate(sample_rate)
        self._errors = _redis_errors()

    def redis_key(self, key: str) -> str:
        return f"{self.namespace}:e:{check_key(key)}"

    def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
        return generate_cache_key(text, tts_params)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def get_entries(self, keys: Sequence[str]) -> list[Entry | None]:
        """The samples and metadata of each key (None on a miss, a damaged value or a Redis
        error), with one MGET round trip per 1,000 keys."""
        names = [self.redis_key(key) for key in keys]
        results: list[Entry | None] = []
        for start in range(0, len(names), BATCH):
            batch = names[start : start + BATCH]
            try:
                values = await self.client.mget(batch)
            except self._errors as exc:
                log.warning("Redis read failed: %s", exc)
                values = [None] * len(batch)
            results += [
                _decode(key, value) for key, value in zip(keys[start:], values, strict=False)
            ]
        return results

    async def get_cached_data(self, key: str) -> npt.NDArray[np.float32] | None:
        entry = await self.get_entry(key)
        return None if entry is None else entry.audio

    async def get_cached_batch(self, keys: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        return [None if e is None else e.audio for e in await self.get_entries(keys)]

    async def cache_data(
        self,
        key: str,
        audio: npt.NDArray[Any],
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        sample_rate: int | None = None,
    ) -> bool:
        name = self.redis_key(key)
        encode = functools.partial(
            encode_entry, key, audio, text, params,
            sample_rate=sample_rate, default_rate=self.sample_rate,
        )  # fmt: skip
        data = await anyio.to_thread.run_sync(encode)
        try:
            if self.ttl is None:
                await self.client.set(name, data)
            else:
                await self.client.set(name, data, px=int(self.ttl * 1000))
        except self._errors as exc:
            log.error("Redis write of %s failed: %s", key, exc)
            return False
        return True

    async def get_cache_status(
        self, segments: Sequence[str], tts_params: Mapping[str, Any] | None = None
    ) -> CacheStatus:
        """Key the segments in a worker thread, then ask Redis about them in pipelined batches."""
        segments = list(segments)
        keys = await anyio.to_thread.run_sync(keys_for_segments, segments, tts_params)
        distinct = list(dict.fromkeys(keys))
        found: list[bool] = []
        for start in range(0, len(distinct), BATCH):
            batch = distinct[start : start + BATCH]
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.exists(self.redis_key(key))
                    answers = await pipe.execute()
                found += [bool(answer) for answer in answers]
            except self._errors as exc:
                log.warning("Redis status check failed: %s", exc)
                found += [False] * len(batch)
        return build_status(segments, keys, dict(zip(distinct, found, strict=True)))

    async def clear_cache(self) -> bool:
        """Remove this namespace's entries (SCAN and UNLINK in batches), nothing else."""
        try:
            batch: list[bytes] = []
            async for name in self.client.scan_iter(match=f"{self.namespace}:e:*", count=BATCH):
                batch.append(name)
                if len(batch) >= BATCH:
                    await self.client.unlink(*batch)
                    batch.clear()
            if batch:
                await self.client.unlink(*batch)
        except self._errors as exc:
            log.error("Redis clear failed: %s", exc)
            return False
        return True


def _decode(key: str, value: bytes | str | None) -> Entry | None:
    if isinstance(value, str):
        log.error("RedisCache needs a client with decode_responses=False (the default)")
        return None
    return decode_entry(key, value)


class RedisSynthesisLock:
    """A :class:`SynthesisLock` across machines: ``SET NX`` with an expiry and a token.

    A crashed holder's lock expires after ``stale_after`` seconds; release deletes the key only if
    it still holds this holder's token (so a late holder never frees someone else's lock).

    Raises:
        InvalidOptionError: for a namespace as :class:`RedisCache` refuses it, or a
            ``stale_after`` or ``poll`` that is not a positive, finite number of seconds.
    """

    _RELEASE = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
        "else return 0 end"
    )

    def __init__(self, url: str | Redis, *, namespace: str = "sparktts",
                 stale_after: float = 600.0, poll: float = 0.05) -> None:  # fmt: skip
        self.namespace = check_namespace(namespace)
        self.stale_after, self.poll = check_lock_timing(stale_after, poll)
        self.client = _connect(url)
        self._errors = _redis_errors()

    async def aclose(self) -> None:
        await self.client.aclose()

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[bool]:
        name = f"{self.namespace}:lock:{check_key(key)}"
        token = secrets.token_hex(16)
        held = False
        # A dead holder's lock expires after stale_after: wait a little longer than that.
        deadline = time.monotonic() + self.stale_after + 1.0
        while time.monotonic() < deadline:
            try:
                expiry = math.ceil(self.stale_after * 1000)  # at least 1 ms: PX 0 is an error
                if await self.client.set(name, token, nx=True, px=expiry):
                    held = True
                    break
            except self._errors as exc:
                log.warning("Redis lock %s unavailable (%s); going ahead without it", key, exc)
                break
            await anyio.sleep(self.poll)
        try:
            yield held
        finally:
            if held:
                with anyio.CancelScope(shield=True), contextlib.suppress(*self._errors):
                    await self.client.eval(self._RELEASE, 1, name, token)
