"""The library's exceptions: one base class and a few specific subclasses.

Each specific error also inherits the matching built-in (``ValueError`` or ``TypeError``), so
callers can catch either the library's class or the built-in one.
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "CorruptEntryError",
    "InvalidAudioError",
    "InvalidKeyError",
    "InvalidParamsError",
    "InvalidTextError",
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


class CorruptEntryError(CacheError):
    """Bytes at an entry's path are not a whole, checksum-valid entry of this cache.

    Readers never see this error: they treat such an entry as a miss. It is raised by the codec and
    reported by ``verify``.
    """
