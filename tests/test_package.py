"""The package's front door."""

from __future__ import annotations

import importlib.resources
import inspect

import pytest

import sparktts_cache


def test_all_matches_the_public_names() -> None:
    public = {name for name in vars(sparktts_cache) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if inspect.ismodule(getattr(sparktts_cache, name))}
    assert set(sparktts_cache.__all__) - {"__version__"} == public - modules
    for name in sparktts_cache.__all__:
        assert hasattr(sparktts_cache, name), name


def test_package_is_typed() -> None:
    assert importlib.resources.files("sparktts_cache").joinpath("py.typed").is_file()


@pytest.mark.parametrize(
    "error",
    [sparktts_cache.InvalidKeyError, sparktts_cache.InvalidTextError,
     sparktts_cache.InvalidParamsError, sparktts_cache.InvalidAudioError,
     sparktts_cache.UnsupportedTypeError],
)  # fmt: skip
def test_every_error_is_a_cache_error_and_a_builtin(error: type[Exception]) -> None:
    assert issubclass(error, sparktts_cache.CacheError)
    assert issubclass(error, (ValueError, TypeError))
