"""Finished responses, kept as files so that a repeated request is served without encoding.

Once synthesis is cached, encoding a long text to mp3 or opus again would be the bottleneck, so a
response that streamed to its end is kept, keyed by everything that shapes its bytes (input, the
voice's identity, model, format, speed)::

    <cache_dir>/responses/<k[0:2]>/<k>.<format>          a finished response
    <cache_dir>/responses/<k[0:2]>/<k>.<16 hex>.tmp      one being written
    <cache_dir>/responses/cleanup.lock                   held by whichever process evicts

A response file is the encoded bytes followed by a 32-byte trailer: the body's XXH3-128 digest,
its length and a magic number. It is written to a temp file next to its destination while the
response streams, and renamed into place only when the stream completed, so a reader never sees a
truncated response; every hit checks the trailer and the digest before a byte is sent (a damaged
file is removed and the request served as a miss). The digest is also the response's ``ETag``.

The store is a sibling of the segment cache inside the same directory, with its own share of the
size limit (:data:`RESPONSE_SHARE` of ``--max-size``), evicted least recently used first (a hit
refreshes the file's time): ``sparktts-cache verify`` lists ``responses`` as a directory that is
not the segment cache's and leaves it alone; deleting it loses nothing but encoding time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import xxhash

__all__ = ["RESPONSE_SHARE", "ResponseStore", "ResponseWriter", "StoredResponse"]

log = logging.getLogger("sparktts_cache.server")

#: The share of ``--max-size`` that finished responses may take; segments get the rest.
RESPONSE_SHARE = 0.25
#: Responses up to this size are read whole and sent in one piece; larger ones are streamed.
READ_WHOLE_BYTES = 8 << 20
#: Streaming chunk of a large stored response.
CHUNK_BYTES = 256 << 10
_MAGIC = b"SPKRESP1"
_TRAILER = struct.Struct("<16sQ8s")
#: A hit refreshes the file's time (its recency for eviction) if it is older than this.
_REFRESH_SECONDS = 600.0
#: Orphan temp files (a crashed writer's) older than this are removed by eviction.
_ORPHAN_SECONDS = 3600.0


@dataclass
class StoredResponse:
    """A verified stored response: its body if small, else an open descriptor to stream from."""

    etag: str
    length: int
    body: bytes | None
    fd: int | None

    def chunks(self) -> Iterator[bytes]:
        """The body in pieces (blocking reads); closes the descriptor when done."""
        if self.body is not None:
            yield self.body
            return
        assert self.fd is not None
        try:
            offset = 0
            while offset < self.length:
                chunk = os.pread(self.fd, min(CHUNK_BYTES, self.length - offset), offset)
                if not chunk:
                    raise OSError(errno.EIO, "a stored response shrank while it was sent")
                offset += len(chunk)
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ResponseStore:
    """The finished responses under ``root``, kept under ``max_bytes`` (None: no limit).

    Notes:
        Blocking methods, safe to call from several threads and processes at once: writers never
        share a temp file, publishing is a rename, and eviction is done by whoever takes the
        cleanup lock without waiting.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int | None = None) -> None:
        self.root = os.fspath(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        #: Bytes this process believes the store holds (None until counted).
        self._total: int | None = None

    def path(self, key: str, audio_format: str) -> str:
        return os.path.join(self.root, key[:2], f"{key}.{audio_format}")

    def open(self, key: str, audio_format: str) -> StoredResponse | None:
        """The stored response, checked whole, or None (missing, or damaged and removed)."""
        path = self.path(key, audio_format)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            stored = self._verified(fd)
        except OSError as exc:
            os.close(fd)
            log.warning("unreadable stored response %s: %s", key, exc.strerror)
            return None
        if stored is None:
            os.close(fd)
            log.warning("damaged stored response %s removed", key)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        if stored.body is not None:
            os.close(fd)
            stored.fd = None
        self._refresh(path)
        return stored

    def begin(self, key: str, audio_format: str) -> ResponseWriter:
        """A writer whose :meth:`~ResponseWriter.commit` publishes the response under ``key``."""
        return ResponseWriter(self, self.path(key, audio_format))

    def _verified(self, fd: int) -> StoredResponse | None:
        size = os.fstat(fd).st_size
        if size < _TRAILER.size:
            return None
        trailer = os.pread(fd, _TRAILER.size, size - _TRAILER.size)
        digest, length, magic = _TRAILER.unpack(trailer)
        if magic != _MAGIC or length != size - _TRAILER.size:
            return None
        hasher = xxhash.xxh3_128()
        body: bytes | None = None
        if length <= READ_WHOLE_BYTES:
            body = os.pread(fd, length, 0)
            if len(body) != length:
                return None
            hasher.update(body)
        else:
            offset = 0
            while offset < length:
                chunk = os.pread(fd, min(CHUNK_BYTES * 4, length - offset), offset)
                if not chunk:
                    return None
                hasher.update(chunk)
                offset += len(chunk)
        if hasher.digest() != digest:
            return None
        return StoredResponse(f'"{digest.hex()}"', length, body, fd)

    @staticmethod
    def _refresh(path: str) -> None:
        with contextlib.suppress(OSError):
            if time.time() - os.stat(path).st_mtime > _REFRESH_SECONDS:
                os.utime(path)

    # -- size limit ------------------------------------------------------------------------------

    def added(self, size: int) -> None:
        """Count a published response; evict if the store may be over its limit."""
        if self.max_bytes is None:
            return
        with self._lock:
            if self._total is not None:
                self._total += size
                if self._total <= self.max_bytes:
                    return
        self.evict()

    def evict(self) -> None:
        """Remove least recently used responses down to 90 % of the limit (and old temp files),
        unless another process is already at it."""
        if self.max_bytes is None:
            return
        os.makedirs(self.root, exist_ok=True)
        lock_fd = os.open(
            os.path.join(self.root, "cleanup.lock"),
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
        )
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            files = self._scan()
            total = sum(size for _mtime, size, _path in files)
            target = self.max_bytes * 0.9
            if total > self.max_bytes:
                for _mtime, size, path in sorted(files):
                    if total <= target:
                        break
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        total -= size
            with self._lock:
                self._total = total
        finally:
            os.close(lock_fd)

    def _scan(self) -> list[tuple[float, int, str]]:
        """(mtime, size, path) of every response; orphan temp files are removed on the way."""
        found: list[tuple[float, int, str]] = []
        now = time.time()
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root) as shards:
            for shard in shards:
                if len(shard.name) != 2 or not shard.is_dir(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError), os.scandir(shard.path) as entries:
                    for entry in entries:
                        with contextlib.suppress(FileNotFoundError):
                            st = entry.stat(follow_symlinks=False)
                            if entry.name.endswith(".tmp"):
                                if now - st.st_mtime > _ORPHAN_SECONDS:
                                    os.unlink(entry.path)
                            else:
                                found.append((st.st_mtime, st.st_size, entry.path))
        return found


class ResponseWriter:
    """Appends a response's bytes to a temp file; :meth:`commit` publishes it, :meth:`discard`
    (or an exception before the commit) removes it.

    Blocking; one thread at a time. Writing fails soft: a full disk or an unwritable directory is
    logged once and the response is simply not kept (the client still gets it).
    """

    def __init__(self, store: ResponseStore, path: str) -> None:
        self.store = store
        self.path = path
        self.temp = f"{path[: -len(os.path.splitext(path)[1])]}.{secrets.token_hex(8)}.tmp"
        self._hasher = xxhash.xxh3_128()
        self._length = 0
        self._fd: int | None = None
        self._created = False
        self._failed = False

    def write(self, data: bytes) -> None:
        if self._failed or not data:
            return
        try:
            if self._fd is None:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._fd = os.open(
                    self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644
                )
                self._created = True
            _write_all(self._fd, data)
        except OSError as exc:
            self._fail(exc)
            return
        self._hasher.update(data)
        self._length += len(data)

    def commit(self) -> str | None:
        """Publish the response; return its ETag, or None if it could not be kept."""
        if self._failed or self._fd is None:
            self.discard()
            return None
        digest = self._hasher.digest()
        try:
            _write_all(self._fd, _TRAILER.pack(digest, self._length, _MAGIC))
            os.close(self._fd)
            self._fd = None
            os.replace(self.temp, self.path)
            self._created = False
        except OSError as exc:
            self._fail(exc)
            return None
        self.store.added(self._length + _TRAILER.size)
        return f'"{digest.hex()}"'

    def discard(self) -> None:
        """Remove the temp file (nothing after a successful commit)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._created:
            self._created = False
            with contextlib.suppress(OSError):
                os.unlink(self.temp)

    def _fail(self, exc: OSError) -> None:
        log.warning("a response could not be kept: %s", exc.strerror)
        self._failed = True
        self.discard()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
