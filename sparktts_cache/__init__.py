"""sparktts_cache: an async, content-addressed disk cache of TTS audio.

No sentence is synthesised twice: each (text, parameters) pair is keyed with XXH3-128 and its audio
is kept as one self-checking WAV file, published atomically, under a two-level directory fan-out.
"""

from __future__ import annotations

from ._core.audio import as_mono_float32
from ._core.cache import Cache, CacheStatus, SynthesisLock, build_status
from ._core.codec import Entry, EntryMeta, decode_entry, encode_entry
from ._core.errors import (
    BlockingCallError,
    CacheError,
    CorruptEntryError,
    EngineError,
    InvalidAudioError,
    InvalidKeyError,
    InvalidOptionError,
    InvalidParamsError,
    InvalidTextError,
    MissingDependencyError,
    NotACacheDirectoryError,
    UnsupportedTypeError,
)
from ._core.files import read_regular_file
from ._core.keys import check_key, generate_cache_key, normalize_text
from ._file.blobs import BlobWriter, StoredBlob
from ._file.cache import Stats, SyncTTSCache, TrafficStats, TTSCache, default_cache_dir
from ._file.eviction import PruneReport
from ._file.locks import FileSynthesisLock
from ._file.maintenance import VerifyReport
from ._file.store import Inspection
from ._file.walk import FileInfo
from ._remote.breaker import CircuitBreaker
from ._remote.redis import RedisCache, RedisSynthesisLock
from ._remote.tiered import TieredCache
from ._text.long_text import LongTextTTS, Plan
from ._text.normalize import NORMALIZER_VERSION, normalize_for_speech
from ._text.segmenter import TextSegmenter
from ._text.sync_long_text import SyncLongTextTTS
from .engines import TTSModel, engine_names, load_tts_model

__all__ = [
    "NORMALIZER_VERSION",
    "BlobWriter",
    "BlockingCallError",
    "Cache",
    "CacheError",
    "CacheStatus",
    "CircuitBreaker",
    "CorruptEntryError",
    "EngineError",
    "Entry",
    "EntryMeta",
    "FileInfo",
    "FileSynthesisLock",
    "Inspection",
    "InvalidAudioError",
    "InvalidKeyError",
    "InvalidOptionError",
    "InvalidParamsError",
    "InvalidTextError",
    "LongTextTTS",
    "MissingDependencyError",
    "NotACacheDirectoryError",
    "Plan",
    "PruneReport",
    "RedisCache",
    "RedisSynthesisLock",
    "Stats",
    "StoredBlob",
    "SyncLongTextTTS",
    "SyncTTSCache",
    "SynthesisLock",
    "TTSCache",
    "TTSModel",
    "TextSegmenter",
    "TieredCache",
    "TrafficStats",
    "UnsupportedTypeError",
    "VerifyReport",
    "__version__",
    "as_mono_float32",
    "build_status",
    "check_key",
    "decode_entry",
    "default_cache_dir",
    "encode_entry",
    "engine_names",
    "generate_cache_key",
    "load_tts_model",
    "normalize_for_speech",
    "normalize_text",
    "read_regular_file",
]

__version__ = "0.1.0"
