"""Every error the library raises itself is a ``CacheError`` that is also the built-in it replaces.

One test reads the package's source and fails on any ``raise`` of a class that is not a
``CacheError``, unless an allow-list below says why; the others check the converted errors in use.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import sparktts_cache
from sparktts_cache import (
    CacheError,
    InvalidOptionError,
    LongTextTTS,
    SyncTTSCache,
    TextSegmenter,
    TTSCache,
    UnsupportedTypeError,
)

from .models import CountingModel

pytestmark = pytest.mark.anyio

PACKAGE = Path(sparktts_cache.__file__).parent

#: (module path inside the package, class name) -> why raising that class there is right.
ALLOWED: dict[tuple[str, str], str] = {
    ("_cli.py", "AssertionError"): "marks code that cannot run, for type checkers",
    ("_text/long_text.py", "AssertionError"): "marks code that cannot run, for type checkers",
    ("_file/layout.py", "AssertionError"): "marks code that cannot run, for type checkers",
    ("_cli.py", "ArgumentTypeError"): "argparse turns it into a usage message and exit code 2",
    ("_file/locks.py", "BlockingIOError"): "control flow: caught by the enclosing try",
    ("_file/store.py", "FileNotFoundError"): "control flow: the write loop writes again",
    ("_file/blobs.py", "OSError"): "a stored blob truncated in place while it is sent (no writer "
    "of the cache's does that: it renames): an I/O error, which ends the response being sent",
    ("_file/layout.py", "NotARegularFile"): "an OSError: readers catch it (a miss), verify reports",
    # An OSError its callers catch: the path is reported and skipped (a blocked counter is
    # recounted by a scan, a blocked lock file means going ahead without the lock).
    ("_file/layout.py", "UnusablePath"): "caught by its callers",
    ("_file/counters.py", "UnusablePath"): "caught by the store, which scans instead",
    ("_file/locks.py", "UnusablePath"): "caught by the lock, which goes ahead without",
    ("_file/status.py", "RuntimeError"): "a bug inside the library (a StatusPlan read before it "
    "is complete), like a failed assertion; no caller's input can cause it",
    ("engines/scripts.py", "AttributeError"): "__getattr__'s protocol: the wrapped model has no "
    "such attribute either",
    ("_text/read_ahead.py", "RuntimeError"): "a bug inside the library (a stream's read-ahead "
    "task crashed: logged, chained), like a failed assertion; no caller's input can cause it",
}


def _raised_classes() -> list[tuple[str, int, str, type[BaseException] | None]]:
    """Each ``raise`` in the package as (module path, line, class name, class or None).

    The class is looked up in the module's namespace, so aliases and ``module.Class`` resolve.
    None means a re-raise of an error object (``raise exc``, ``raise errors[0]``) or
    ``raise type(exc)(...)``, which re-raises an error already raised with more context and keeps
    its class: neither makes a new kind of error.
    """
    found: list[tuple[str, int, str, type[BaseException] | None]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("server/"):
            # The speech server is an application on the public API, not the library: what it
            # raises becomes an HTTP answer in OpenAI's error shape (tests/test_server_api.py).
            continue
        module_name = ".".join(("sparktts_cache", *path.relative_to(PACKAGE).with_suffix("").parts))
        module = importlib.import_module(module_name.removesuffix(".__init__"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Call):
                assert ast.unparse(target.func) == "type", f"{relative}:{node.lineno}"
                found.append((relative, node.lineno, ast.unparse(target), None))
                continue
            value = _resolve(target, vars(module))
            if isinstance(value, type) and issubclass(value, BaseException):
                found.append((relative, node.lineno, value.__name__, value))
            else:  # a local variable holding an error object: a re-raise
                assert not isinstance(node.exc, ast.Call), f"{relative}:{node.lineno}: unknown"
                found.append((relative, node.lineno, ast.unparse(target), None))
    return found


def _resolve(node: ast.expr, namespace: dict[str, Any]) -> object:
    if isinstance(node, ast.Name):
        return namespace.get(node.id, getattr(builtins, node.id, None))
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, namespace)
        return None if owner is None else getattr(owner, node.attr, None)
    return None


def test_the_package_raises_only_cache_errors_or_allowed_ones() -> None:
    raised = _raised_classes()
    assert len(raised) > 50  # the walk found the package's raises (a broken walk finds none)
    bare = {
        (module, name): line
        for module, line, name, cls in raised
        if cls is not None and not issubclass(cls, CacheError)
    }
    unexplained = sorted(f"{module}:{line} raises {name}" for (module, name), line in bare.items()
                         if (module, name) not in ALLOWED)  # fmt: skip
    assert unexplained == [], "raise a CacheError subclass, or add the case to ALLOWED with why"
    stale = sorted(f"{module}: {name}" for module, name in ALLOWED if (module, name) not in bare)
    assert stale == [], "these ALLOWED entries match no raise any more: delete them"


def test_every_error_class_is_a_cache_error_and_a_builtin() -> None:
    for name in sparktts_cache.__all__:
        cls = getattr(sparktts_cache, name)
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls is not CacheError:
            assert issubclass(cls, CacheError), name
            if name != "CorruptEntryError":  # never reaches a caller: a miss, or verify's report
                builtin = next(b for b in cls.__mro__ if b.__module__ == "builtins")
                assert builtin is not Exception, f"{name} should also be a specific built-in"


# -- the converted errors, in use ---------------------------------------------------------------


class ModelError(Exception):
    """An error of a model of the user's own."""


class FailingModel:
    sample_rate = 16000

    def __init__(self) -> None:
        self.error = ModelError("the user's model failed")

    def inference(self, text: str) -> npt.NDArray[np.float32]:
        raise self.error


def _cases(tmp_path: Path) -> list[tuple[Callable[[], object], type[CacheError], type[Exception]]]:
    cache = SyncTTSCache(tmp_path / "a")
    model = CountingModel()
    return [
        (lambda: TextSegmenter(max_chars=1), InvalidOptionError, ValueError),
        (lambda: TextSegmenter(max_chars=100, cjk_weight=0.5), InvalidOptionError, ValueError),
        (lambda: TextSegmenter().segment_text(None), UnsupportedTypeError, TypeError),  # type: ignore[arg-type]
        (lambda: LongTextTTS(object(), cache_dir=tmp_path), UnsupportedTypeError, TypeError),  # type: ignore[arg-type]
        (lambda: LongTextTTS(model, tmp_path, cache=TTSCache(tmp_path)), InvalidOptionError,
         ValueError),
        (lambda: LongTextTTS(model, tmp_path, pause_seconds=-1), InvalidOptionError, ValueError),
        (lambda: LongTextTTS(model, tmp_path, max_concurrency=0), InvalidOptionError, ValueError),
        (lambda: LongTextTTS(model, cache=_DictCache(), cross_process_lock=True),
         InvalidOptionError, ValueError),
        (lambda: SyncTTSCache(tmp_path, max_size_bytes=0), InvalidOptionError, ValueError),
        (lambda: SyncTTSCache(tmp_path, audio_format="mp3"), InvalidOptionError, ValueError),
        (lambda: TTSCache(tmp_path, max_size_bytes=-5), InvalidOptionError, ValueError),
        (lambda: cache.prune(max_size_bytes=-1), InvalidOptionError, ValueError),
        (lambda: cache.prune(max_age=-1.0), InvalidOptionError, ValueError),
        (lambda: sparktts_cache.load_tts_model("nope"), InvalidOptionError, ValueError),
    ]  # fmt: skip


class _DictCache(sparktts_cache.Cache):
    """A minimal cache that is not a TTSCache."""

    def generate_cache_key(self, text: str, tts_params: Any = None) -> str:
        return sparktts_cache.generate_cache_key(text, tts_params)

    async def get_cached_data(self, key: str) -> npt.NDArray[np.float32] | None:
        return None

    async def cache_data(
        self,
        key: str,
        audio: npt.NDArray[Any],
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        sample_rate: int | None = None,
    ) -> bool:
        return False

    async def clear_cache(self) -> bool:
        return True


def test_converted_errors_are_cache_errors_and_the_old_builtins(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    for call, library_error, builtin in cases:
        with pytest.raises(library_error) as caught:
            call()
        assert isinstance(caught.value, CacheError) and isinstance(caught.value, builtin)


async def test_a_user_model_error_passes_through_unchanged(tmp_path: Path) -> None:
    model = FailingModel()
    with pytest.raises(ModelError) as caught:
        await LongTextTTS(model, cache_dir=tmp_path).generate("Hello there.")
    assert caught.value is model.error and not isinstance(caught.value, CacheError)


def test_importing_the_package_imports_no_engine_dependency() -> None:
    import subprocess

    dependencies = ["torch", "espeakng_loader", "spark_tts_lib", "cli", "piper", "onnxruntime"]
    code = (
        "import sys, sparktts_cache, sparktts_cache.engines\n"
        f"print([name for name in {dependencies!r} if name in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=PACKAGE.parent, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
