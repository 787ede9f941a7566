"""Blobs: opaque byte strings stored beside the entries, under the same discipline.

The speech server keeps each finished response as a blob (``<key>.<kind>.blob``, the kind naming
its format: ``mp3``, ``opus``...), so that a repeated request is served without encoding. A blob
lives in its key's shard like an entry, is written through :class:`AtomicFile` while the response
streams and published only when it is whole, is counted in its shard's size counter (so one size
limit, enforced across processes, covers entries and blobs alike, least recently used first),
and is read through the same ``O_NOFOLLOW`` directory descriptors, refusing special files.
``stats``, ``verify``, ``prune`` and ``clear`` know blobs as the cache's own.

A blob file is its bytes followed by a 32-byte trailer: the XXH3-128 digest of the bytes, their
length (little-endian u64) and the magic ``SPKBLOB1``. Every read checks the trailer and the
digest before the first byte is handed out; a damaged blob is logged, removed and a miss.

A blob's first bytes may be replaced when it is committed (a FLAC or WAV response's header, whose
lengths are known only at the end): the digest is then computed over the bytes as stored, read
back from the temp file in pieces, so the trailer means the same for every blob.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import struct
from collections.abc import Iterator

import xxhash

from .._core.keys import check_key
from . import layout
from .atomic import AtomicFile
from .store import FileStore, count_write, refresh_recency, replaced_size, unlink_if_same

__all__ = ["BLOB_TRAILER", "BlobWriter", "Blobs", "StoredBlob", "check_blob"]

log = logging.getLogger("sparktts_cache")

#: What follows a blob's bytes: their XXH3-128 digest, their length, the magic.
BLOB_TRAILER = struct.Struct("<16sQ8s")
BLOB_MAGIC = b"SPKBLOB1"
#: A blob up to this size is handed out as bytes after its check; a larger one is read again in
#: pieces of this size as it is sent, so a client that reads slowly holds no more than this.
CHUNK_BYTES = 64 << 10


def check_blob(fd: int, size: int) -> tuple[str, bytes | None] | None:
    """Check the blob file open as ``fd`` (``size`` bytes): its hex digest and, if it is small,
    its bytes; None if it is not a whole blob (short, another format, wrong digest).

    Reads in pieces of :data:`CHUNK_BYTES`: memory does not grow with the blob.
    """
    if size < BLOB_TRAILER.size:
        return None
    trailer = os.pread(fd, BLOB_TRAILER.size, size - BLOB_TRAILER.size)
    if len(trailer) != BLOB_TRAILER.size:
        return None
    digest, length, magic = BLOB_TRAILER.unpack(trailer)
    if magic != BLOB_MAGIC or length != size - BLOB_TRAILER.size:
        return None
    hasher = xxhash.xxh3_128()
    kept: bytes | None = None
    offset = 0
    while offset < length:
        chunk = os.pread(fd, min(CHUNK_BYTES, length - offset), offset)
        if not chunk:
            return None
        hasher.update(chunk)
        if length <= CHUNK_BYTES:
            kept = chunk if kept is None else kept + chunk
        offset += len(chunk)
    if hasher.digest() != digest:
        return None
    return digest.hex(), (kept or b"") if length <= CHUNK_BYTES else None


def _pieces(fd: int, length: int, start: int = 0) -> Iterator[bytes]:
    """The bytes of ``fd`` from ``start`` to ``length``, in pieces of at most
    :data:`CHUNK_BYTES` (blocking reads).

    Raises:
        OSError: ``EIO`` if the file is shorter than ``length``.
    """
    offset = start
    while offset < length:
        chunk = os.pread(fd, min(CHUNK_BYTES, length - offset), offset)
        if not chunk:
            raise OSError(errno.EIO, "a blob is shorter than its length")
        offset += len(chunk)
        yield chunk


class StoredBlob:
    """A checked blob, open for reading: its digest (hex), length, and bytes in pieces.

    Small blobs are held as bytes; a larger one keeps its file open and is read again piece by
    piece by :meth:`chunks` (which closes it at the end). :meth:`close` when not reading it all.
    """

    __slots__ = ("_fd", "body", "digest", "length")

    def __init__(self, digest: str, length: int, body: bytes | None, fd: int | None) -> None:
        self.digest = digest
        self.length = length
        #: The bytes of a small blob (at most :data:`CHUNK_BYTES`); None for a larger one.
        self.body = body
        self._fd = fd

    def chunks(self) -> Iterator[bytes]:
        """The bytes, in pieces of at most :data:`CHUNK_BYTES` (blocking reads).

        Raises:
            OSError: ``EIO`` if the file shrank meanwhile (only ``clear``, ``prune`` or eviction
                remove blobs, and they unlink: an open file keeps its bytes).
        """
        if self.body is not None:
            yield self.body
            return
        fd = self._fd
        assert fd is not None, "the blob was closed before it was read"
        try:
            yield from _pieces(fd, self.length)
        finally:
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class BlobWriter:
    """Appends a blob's bytes as they come; :meth:`commit` publishes it whole, :meth:`discard`
    drops it. Blocking; one thread at a time.

    Writing fails soft: a full disk or an unwritable directory is logged once and the blob is
    simply not kept (``commit`` returns None); no method raises ``OSError``.
    """

    def __init__(self, store: FileStore, key: str, kind: str) -> None:
        self._store = store
        self._key = key
        self._name = layout.blob_name(key, kind)
        self._hasher = xxhash.xxh3_128()
        self._stack: contextlib.ExitStack | None = None
        self._file: AtomicFile | None = None
        self._outer_fd = -1
        self._created: list[str] = []
        self._failed = False

    def write(self, data: bytes) -> None:
        """Append ``data`` (nothing is on disk before the first non-empty write)."""
        if self._failed or not data:
            return
        try:
            if self._file is None:
                self._open()
            assert self._file is not None
            self._file.write(data)
        except OSError as exc:
            self._fail(exc)
            return
        self._hasher.update(data)

    def commit(self, header: bytes = b"") -> str | None:
        """Publish the blob; return its digest (hex), or None if it could not be kept (or nothing
        was written). Never raises ``OSError``: the caller has already sent what it wrote.

        ``header``, if given, replaces the blob's first ``len(header)`` bytes (at most what was
        written): a header completed once the length is known. The digest is then that of the
        bytes as stored, read back from the temp file in pieces of :data:`CHUNK_BYTES`.
        """
        if self._failed or self._file is None:
            self.discard()
            return None
        file = self._file
        assert len(header) <= file.size, "the header is longer than the blob"
        try:
            length = file.size
            digest = self._rewrite(file, header) if header else self._hasher.digest()
            file.write(BLOB_TRAILER.pack(digest, length, BLOB_MAGIC))
            replaced = replaced_size(file.dir_fd, self._name)
            file.publish(self._name)
            written = file.size
            shard_bytes = count_write(
                self._outer_fd, self._key, written - replaced, 0 if replaced else 1
            )
        except OSError as exc:
            self._fail(exc)
            return None
        finally:
            self._close()
        if self._store.limit is not None:
            self._store.limit.after_write(shard_bytes, written)  # logs, never raises OSError
        return digest.hex()

    def discard(self) -> None:
        """Drop what was written (nothing after a successful commit)."""
        if self._file is not None:
            self._file.discard()
            self._close()
            self._store.remove_created_shards(self._key, self._created)

    @staticmethod
    def _rewrite(file: AtomicFile, header: bytes) -> bytes:
        """Write ``header`` over the temp file's first bytes; the digest of its bytes now.

        The temp file is open write-only: it is read through a second descriptor, opened by its
        name in the same directory and checked to be the same file.
        """
        written = os.pwrite(file.fileno, header, 0)
        if written != len(header):
            raise OSError(errno.EIO, "a blob's header was written short")
        reader = os.open(file.temp_name, layout.READ_FLAGS, dir_fd=file.dir_fd)
        try:
            ours, read = os.fstat(file.fileno), os.fstat(reader)
            if (read.st_dev, read.st_ino) != (ours.st_dev, ours.st_ino):
                raise OSError(errno.ESTALE, "a blob's temp file was replaced")
            hasher = xxhash.xxh3_128()
            for chunk in _pieces(reader, file.size):
                hasher.update(chunk)
            return hasher.digest()
        finally:
            os.close(reader)

    def _open(self) -> None:
        stack = contextlib.ExitStack()
        try:
            outer_fd, inner_fd = stack.enter_context(
                self._store.shard_dirs(self._key, self._created)
            )
            self._file = AtomicFile(inner_fd, layout.temp_name(self._key), fsync=self._store.fsync)
        except BaseException:
            stack.close()
            raise
        self._stack, self._outer_fd = stack, outer_fd

    def _close(self) -> None:
        self._file = None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def _fail(self, exc: OSError) -> None:
        log.warning("blob %s could not be kept: %s", self._key, exc.strerror or exc)
        self._failed = True
        self.discard()


class Blobs:
    """The blobs of one file store: :meth:`open` a stored one, :meth:`begin` a new one."""

    __slots__ = ("store",)

    def __init__(self, store: FileStore) -> None:
        self.store = store

    def open(self, key: str, kind: str) -> StoredBlob | None:
        """The blob of ``key`` and ``kind``, checked whole, or None (missing, or damaged: then
        removed). A symlink, directory or FIFO at its path, or a shard that is a symlink, is a
        miss and left alone: none is followed, opened for long or read.

        Raises:
            InvalidKeyError, InvalidOptionError: for a key that is not a key, or a bad kind.
        """
        name = layout.blob_name(check_key(key), kind)
        outer, inner = layout.shard_of(key)
        try:
            outer_fd = os.open(f"{self.store.root}/{outer}", layout.DIR_FLAGS)
        except OSError:
            return None
        try:
            if not stat.S_ISDIR(os.stat(inner, dir_fd=outer_fd, follow_symlinks=False).st_mode):
                return None
            fd = os.open(f"{inner}/{name}", layout.READ_FLAGS, dir_fd=outer_fd)
        except OSError:
            os.close(outer_fd)
            return None
        keep = False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                log.warning("blob %s is not a regular file; treating it as a miss", key)
                return None
            checked = check_blob(fd, st.st_size)
            if checked is None:
                log.warning("damaged blob %s; removing it", key)
                unlink_if_same(f"{inner}/{name}", outer_fd, st)
                return None
            refresh_recency(fd, st)
            digest, body = checked
            keep = body is None
            return StoredBlob(digest, st.st_size - BLOB_TRAILER.size, body, fd if keep else None)
        except OSError as exc:
            log.warning("cannot read blob %s: %s", key, exc.strerror or exc)
            return None
        finally:
            if not keep:
                os.close(fd)
            os.close(outer_fd)

    def begin(self, key: str, kind: str) -> BlobWriter:
        """A writer whose :meth:`~BlobWriter.commit` publishes the blob of ``key`` and ``kind``.

        Raises:
            InvalidKeyError, InvalidOptionError: for a key that is not a key, or a bad kind.
        """
        layout.blob_name(check_key(key), kind)  # checked now, not at the first write
        return BlobWriter(self.store, key, kind)
