"""The library's exceptions: one base class and a few specific subclasses.

Each specific error also inherits the matching built-in (``ValueError``, ``TypeError``,
``ImportError`` or ``RuntimeError``), so callers can catch either the library's class or the
built-in one. What the operating system, Redis or a model of your own raises passes through (or,
where documented, becomes a miss or a False return).
"""

from __future__ import annotations

__all__ = [
    "BlockingCallError",
    "CacheError",
    "CorruptEntryError",
    "EngineError",
    "InvalidAudioError",
    "InvalidKeyError",
    "InvalidOptionError",
    "InvalidParamsError",
    "InvalidTextError",
    "MissingDependencyError",
    "NotACacheDirectoryError",
    "UnsupportedTypeError",
]


class CacheError(Exception):
    """Base class of every exception raised by ``sparktts_cache``."""


class InvalidKeyError(CacheError, ValueError):
    """A cache key is not 32 lowercase hexadecimal characters."""


class InvalidTextError(CacheError, ValueError):
    """A text is blank or cannot be encoded as UTF-8 (for example it holds a lone surrogate)."""


class InvalidParamsError(CacheError, ValueError):
    """TTS parameters hold a value that has no canonical form (NaN, infinity, a huge integer...)."""


class InvalidAudioError(CacheError, ValueError):
    """Audio has the right type but unusable contents: empty, several channels, NaN or infinity."""


class UnsupportedTypeError(CacheError, TypeError):
    """A value has a type the cache does not accept (non-str text, a set in the parameters...)."""


class InvalidOptionError(CacheError, ValueError):
    """An option of a constructor, a method or the command line is out of range or inconsistent
    (a negative size limit, an unknown audio format or engine name, two options that exclude
    each other)."""


class MissingDependencyError(CacheError, ImportError):
    """An optional package is not installed (an engine, Redis); the message says what to install."""


class EngineError(CacheError, RuntimeError):
    """A TTS engine that ships with this library failed to load or to synthesise.

    Errors raised by a model of your own pass through unchanged.
    """


class BlockingCallError(CacheError, RuntimeError):
    """A blocking call (``SyncLongTextTTS``) was made on a thread that runs an event loop.

    It would run an event loop of its own inside that one, as ``asyncio.run`` refuses to: await
    the async form (``LongTextTTS``) there, or call the blocking form from a worker thread.
    """


class NotACacheDirectoryError(CacheError, ValueError):
    """A cache directory holds files that are not the cache's, and is not marked as a cache.

    ``clear_cache``, ``prune`` and ``verify(fix=True)`` remove files, so they run only in a
    directory marked with ``CACHEDIR.TAG`` or in one that holds nothing but the cache's own files
    (which they then mark). ``path`` is the directory; ``foreign`` gives a few of the files found
    there that are not the cache's, relative to it.
    """

    def __init__(self, path: str, operation: str, foreign: list[str]) -> None:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        super().__init__(
            f"refusing to {operation} {path}: it is not marked as a cache directory (no "
            f"CACHEDIR.TAG) and holds files that are not the cache's ({shown}); move them "
            "elsewhere and run it again (the directory is then marked), or give the cache a "
            "directory of its own"
        )
        self.path = path
        self.operation = operation
        self.foreign = foreign

    def __reduce__(self) -> tuple[type[NotACacheDirectoryError], tuple[str, str, list[str]]]:
        return type(self), (self.path, self.operation, self.foreign)


class CorruptEntryError(CacheError):
    """Bytes at an entry's path are not a whole, checksum-valid entry of this cache.

    Readers never see this error: they treat such an entry as a miss. It is raised by the codec and
    reported by ``verify``.
    """
