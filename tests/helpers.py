"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path

from sparktts_cache import SyncTTSCache
from sparktts_cache.testing import self_checking_audio

__all__ = ["files_under", "fill", "self_checking_audio"]


def fill(cache: SyncTTSCache, count: int, prefix: str = "entry") -> list[str]:
    """Write ``count`` self-checking entries; return their keys."""
    keys = []
    for index in range(count):
        text = f"{prefix} {index}"
        key = cache.generate_cache_key(text, {})
        assert cache.cache_data(key, self_checking_audio(index), text, {})
        keys.append(key)
    return keys


def files_under(root: Path) -> list[str]:
    """Every file or link under ``root``, relative, sorted (directories excluded)."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        found += [os.path.relpath(os.path.join(dirpath, name), root) for name in filenames]
    return sorted(found)
