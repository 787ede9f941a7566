"""``RedisCache``: the same entries in Redis, for fleets of servers without a shared file system.

Needs the ``[redis]`` extra (``redis.asyncio``), and so runs on asyncio (not trio). Entries are
the same self-checking WAV bytes as the file store's, under ``<namespace>:e:<key>``, on one
redis-server (``redis://``) or a Redis Cluster (``redis+cluster://``: bulk reads and status are
split by hash slot). Any Redis or connection error is a miss on reads and False on writes, logged;
every call is bounded by ``timeout``, and a timeout or lost connection opens a
:class:`CircuitBreaker` that skips Redis for a cool-down. Eviction is left to Redis (``maxmemory``
with ``allkeys-lru``; see docs/operations.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from .._core.audio import check_sample_rate
from .._core.cache import Cache, CacheStatus, build_status, check_lock_timing
from .._core.codec import Entry, decode_entry, encode_entry
from .._core.errors import InvalidOptionError, MissingDependencyError
from .._core.keys import check_key, generate_cache_key, keys_for_segments
from .breaker import CircuitBreaker

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    Client: TypeAlias = Redis | RedisCluster

_T = TypeVar("_T")
_F = TypeVar("_F")

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


def _redis_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(every error a call may raise, the ones that mean the server is unreachable)."""
    try:
        from redis.exceptions import (
            ClusterDownError,
            ConnectionError,
            RedisClusterException,
            RedisError,
        )
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError as exc:
        raise MissingDependencyError(_INSTALL_HINT) from exc
    # RedisClusterException (RedisClusterUnreachableError, SlotNotCoveredError) is no RedisError.
    unreachable = (ConnectionError, RedisTimeoutError, ClusterDownError, RedisClusterException,
                   OSError, TimeoutError)  # fmt: skip
    return (RedisError, *unreachable), unreachable


_INSTALL_HINT = 'Redis support needs redis: pip install "sparktts_cache[redis]"'

#: The URL schemes of a Redis Cluster: any node's address; the client finds the others.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

#: Seconds a call to Redis may take by default (connecting, each command, each batch).
DEFAULT_TIMEOUT = 2.0


def _connect(url_or_client: str | Client, timeout: float) -> Client:
    if not isinstance(url_or_client, str):
        return url_or_client
    try:
        from redis.asyncio import Redis
        from redis.asyncio.cluster import ClusterNode, RedisCluster
    except ImportError as exc:
        raise MissingDependencyError(_INSTALL_HINT) from exc
    timeouts: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    scheme, _, rest = url_or_client.partition("://")
    if scheme.lower() not in CLUSTER_SCHEMES:
        return Redis.from_url(url_or_client, **timeouts)
    # redis+cluster://[user:password@]host:port[,host:port...][/0][?options]: the client starts
    # from any of the nodes listed that answers (list more than one: a client started while its
    # only seed node is down cannot find the cluster). Database 0 only, as on every cluster.
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    userinfo, at, hosts = rest[:end].rpartition("@")
    first, *others = hosts.split(",")
    seeds = []
    for node in others:
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidOptionError(f"a cluster node must be host:port, got {node!r}")
        seeds.append(ClusterNode(host, int(port)))
    url = f"{CLUSTER_SCHEMES[scheme.lower()]}://{userinfo}{at}{first}{rest[end:]}"
    return RedisCluster.from_url(url, startup_nodes=seeds or None, **timeouts)


def _check_timeout(timeout: object) -> float:
    if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        raise InvalidOptionError(f"timeout must be positive, finite seconds: {timeout!r}")
    return float(timeout)


class _Guarded:
    """Calls to Redis bounded by ``timeout`` and skipped while ``breaker`` is open."""

    client: Client
    timeout: float
    breaker: CircuitBreaker
    _errors: tuple[type[BaseException], ...]
    _unreachable: tuple[type[BaseException], ...]

    def _setup(self, url: str | Client, timeout: float, breaker: CircuitBreaker | None) -> None:
        self._errors, self._unreachable = _redis_errors()
        self.timeout = _check_timeout(timeout)
        self.breaker = CircuitBreaker() if breaker is None else breaker
        self.client = _connect(url, self.timeout)

    @property
    def is_cluster(self) -> bool:
        from redis.asyncio.cluster import RedisCluster

        return isinstance(self.client, RedisCluster)

    async def _call(self, what: str, call: Callable[[], Awaitable[_T]], fallback: _F) -> _T | _F:
        """``await call()``, or ``fallback`` (logged) if Redis fails, times out or is skipped."""
        if not self.breaker.allows():
            return fallback
        try:
            with anyio.fail_after(self.timeout):
                result = await call()
        except self._errors as exc:
            if isinstance(exc, self._unreachable):
                if isinstance(exc, TimeoutError) and not str(exc):  # anyio's own: no message
                    exc = TimeoutError(f"no answer to a {what} within {self.timeout:g} s")
                self.breaker.failed(exc)
            else:
                self.breaker.succeeded()  # it answered, with an error
                log.warning("Redis %s failed: %s", what, exc)
            return fallback
        self.breaker.succeeded()
        return result


class RedisCache(_Guarded, Cache):
    """A :class:`Cache` in Redis with the same keys and entry bytes as :class:`TTSCache`.

    Args:
        url: a ``redis://`` URL (one server), a ``redis+cluster://host:port,host:port`` URL (a
            Redis Cluster, found through whichever of the nodes listed answers; ``rediss+cluster``
            for TLS), or a ``redis.asyncio`` ``Redis`` or ``RedisCluster`` client.
        namespace: prefix of every Redis key this cache uses (``clear_cache`` removes only these).
        ttl: seconds an entry lives (None: until Redis evicts it).
        sample_rate: recorded with entries written without an explicit one (the model's).
            None (the default): every ``cache_data`` must give its ``sample_rate``
            (``InvalidOptionError`` otherwise), as for :class:`TTSCache`.
        timeout: seconds any one call may take (connecting, a command, a batch); also the
            socket timeouts of a client made from a URL.
        breaker: the :class:`CircuitBreaker` that skips Redis after a timeout or a lost
            connection (default: a new one, 5 s cool-down); pass the same one to the
            :class:`RedisSynthesisLock` on this Redis.

    Raises:
        InvalidOptionError: for a namespace that is not 1 to 200 letters, digits, ``_``, ``.``
            or ``-``, a ttl <= 0, or a timeout that is not positive, finite seconds.
        MissingDependencyError: if the ``redis`` package is not installed.

    Notes:
        Runs on asyncio only (``redis.asyncio``). ``get_cache_status`` asks about all keys with one
        pipelined round trip per 1,000 segments; ``clear_cache`` uses SCAN and UNLINK in batches,
        never FLUSHDB. On a cluster the keys are spread over the masters by their own hash slot
        (no hash tag); bulk reads go to each master in one pipeline (``MGET`` per slot), and a
        clear scans every master.
    """

    async_backends: ClassVar[tuple[str, ...]] = ("asyncio",)

    def __init__(
        self,
        url: str | Client = "redis://localhost:6379/0",
        *,
        namespace: str = "sparktts",
        ttl: float | None = None,
        sample_rate: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        namespace = check_namespace(namespace)
        if ttl is not None and ttl <= 0:
            raise InvalidOptionError(f"ttl must be positive or None, got {ttl!r}")
        self.namespace = namespace
        self.ttl = ttl
        self.sample_rate = None if sample_rate is None else check_sample_rate(sample_rate)
        self._setup(url, timeout, breaker)

    def redis_key(self, key: str) -> str:
        return f"{self.namespace}:e:{check_key(key)}"

    def generate_cache_key(self, text: str, tts_params: Mapping[str, Any] | None = None) -> str:
        return generate_cache_key(text, tts_params)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def get_entries(self, keys: Sequence[str]) -> list[Entry | None]:
        """The samples and metadata of each key (None on a miss, a damaged value or a Redis
        error), with one MGET round trip per 1,000 keys (on a cluster, one pipeline to each
        master holding some of them)."""
        names = [self.redis_key(key) for key in keys]
        results: list[Entry | None] = []
        for start in range(0, len(names), BATCH):
            batch = names[start : start + BATCH]
            values = await self._call("read", functools.partial(self._mget, batch),
                                      [None] * len(batch))  # fmt: skip
            results += [
                _decode(key, value) for key, value in zip(keys[start:], values, strict=False)
            ]
        return results

    async def _mget(self, names: list[str]) -> list[Any]:
        from redis.asyncio.cluster import RedisCluster

        if isinstance(self.client, RedisCluster):  # MGET's keys must share one slot
            return await self.client.mget_nonatomic(names)
        return await self.client.mget(names)

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
        expiry = None if self.ttl is None else int(self.ttl * 1000)
        stored = await self._call(f"write of {key}", lambda: self.client.set(name, data, px=expiry),
                                  False)  # fmt: skip
        return bool(stored)

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
            answers = await self._call("status check", functools.partial(self._exists, batch),
                                       [False] * len(batch))  # fmt: skip
            found += [bool(answer) for answer in answers]
        return build_status(segments, keys, dict(zip(distinct, found, strict=True)))

    async def _exists(self, keys: list[str]) -> list[Any]:
        """One EXISTS per key, pipelined (a cluster pipeline sends each master its own)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(self.redis_key(key))
            answers: list[Any] = await pipe.execute()
        return answers

    async def clear_cache(self) -> bool:
        """Remove this namespace's entries (SCAN and UNLINK in batches), nothing else.

        Not bounded by ``timeout`` as a whole (each command is, by the socket timeout)."""
        if not self.breaker.allows():
            return False
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
            if isinstance(exc, self._unreachable):
                self.breaker.failed(exc)
            log.error("Redis clear failed: %s", exc)
            return False
        self.breaker.succeeded()
        return True


def _decode(key: str, value: bytes | str | None) -> Entry | None:
    if isinstance(value, str):
        log.error("RedisCache needs a client with decode_responses=False (the default)")
        return None
    return decode_entry(key, value)


class RedisSynthesisLock(_Guarded):
    """A :class:`SynthesisLock` across machines: ``SET NX`` with an expiry and a token.

    A crashed holder's lock expires after ``stale_after`` seconds; release deletes the key only if
    it still holds this holder's token (so a late holder never frees someone else's lock). If
    Redis fails, times out or its breaker is open, the holder goes ahead without the lock (the
    segment may then be synthesised twice, never served wrong).

    Args:
        url: as for :class:`RedisCache` (``redis://`` or ``redis+cluster://``, or a client).
        timeout, breaker: as for :class:`RedisCache`; give it the cache's ``breaker``.

    Raises:
        InvalidOptionError: for a namespace as :class:`RedisCache` refuses it, or a
            ``stale_after``, ``poll`` or ``timeout`` that is not a positive, finite number of
            seconds.

    Notes:
        On a Redis Cluster each lock is one key on the master of its slot. Replication is
        asynchronous: if that master fails before the lock reached its replica, the promoted
        replica does not have it, and a second server can take the same lock; and a lock that
        did reach the replica lives on there until released or expired. Either way the cost is
        at most one extra synthesis of that segment: the lock only saves work, and entries are
        written whole and keyed by their content.
    """

    _RELEASE = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
        "else return 0 end"
    )

    def __init__(self, url: str | Client, *, namespace: str = "sparktts",
                 stale_after: float = 600.0, poll: float = 0.05,
                 timeout: float = DEFAULT_TIMEOUT,
                 breaker: CircuitBreaker | None = None) -> None:  # fmt: skip
        self.namespace = check_namespace(namespace)
        self.stale_after, self.poll = check_lock_timing(stale_after, poll)
        self._setup(url, timeout, breaker)

    async def aclose(self) -> None:
        await self.client.aclose()

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[bool]:
        name = f"{self.namespace}:lock:{check_key(key)}"
        token = secrets.token_hex(16)
        expiry = math.ceil(self.stale_after * 1000)  # at least 1 ms: PX 0 is an error
        unavailable = "unavailable"
        held = False
        # A dead holder's lock expires after stale_after: wait a little longer than that.
        deadline = time.monotonic() + self.stale_after + 1.0
        while time.monotonic() < deadline:
            taken = await self._call(
                f"lock {key}",
                lambda: self.client.set(name, token, nx=True, px=expiry),
                unavailable,
            )
            if taken is unavailable:
                log.info("Redis lock %s unavailable; going ahead without it", key)
                break
            if taken:
                held = True
                break
            await anyio.sleep(self.poll)
        try:
            yield held
        finally:
            if held:
                # Tried even with the breaker open: an unreleased lock holds others for
                # stale_after. Bounded by timeout, and shielded so that a cancelled holder frees it.
                with anyio.CancelScope(shield=True) as scope, contextlib.suppress(*self._errors):
                    scope.deadline = anyio.current_time() + self.timeout
                    await self.client.eval(self._RELEASE, 1, name, token)
