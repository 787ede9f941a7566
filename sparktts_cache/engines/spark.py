"""An adapter around upstream Spark-TTS's ``SparkTTS(model_dir, device)``.

Spark-TTS is found either as the upstream repository's ``cli.SparkTTS`` module on ``sys.path`` or as
the ``spark_tts_lib`` package (``pip install "sparktts_cache[spark]"``). Both are imported only
when a model is loaded; torch and the model weights are needed then, never before.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import xxhash

from .._core.errors import EngineError, InvalidOptionError, MissingDependencyError
from ._base import GENDERS, LEVELS, check_choice

__all__ = ["SparkTTSModel", "find_spark_tts", "model_dir_fingerprint"]

#: The files of a model directory that decide what it synthesises: configuration, tokenizers and
#: weights. Documentation, licences and hidden files (``.git``, ``.cache``) do not count.
FINGERPRINT_SUFFIXES = frozenset(
    {".json", ".yaml", ".yml", ".txt", ".model", ".tiktoken",
     ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx"}
)  # fmt: skip
#: Files up to this size are hashed whole; larger ones (weights) by sampled blocks.
WHOLE_FILE_LIMIT = 8 << 20
_SAMPLE_BLOCKS = 64
_SAMPLE_BLOCK_SIZE = 64 << 10
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")

_INSTALL_HINT = (
    'Spark-TTS is not installed: pip install "sparktts_cache[spark]" (spark-tts-lib and torch), '
    "or put a checkout of the SparkAudio/Spark-TTS repository on sys.path"
)


def find_spark_tts() -> type[Any]:
    """Return upstream's ``SparkTTS`` class, from ``cli.SparkTTS`` or ``spark_tts_lib``.

    Raises:
        MissingDependencyError: if neither is importable; the message says what to install.
    """
    errors = []
    for module_name in ("cli.SparkTTS", "spark_tts_lib"):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        found = getattr(module, "SparkTTS", None)
        if isinstance(found, type):
            return found
        errors.append(f"{module_name}: has no SparkTTS class")
    raise MissingDependencyError(f"{_INSTALL_HINT} ({'; '.join(errors)})")


def model_dir_fingerprint(model_dir: str | os.PathLike[str]) -> str:
    """An XXH3-128 fingerprint of a model directory's configuration and weight files.

    Each file counts by its path relative to the directory, its size and its content: whole for
    files up to :data:`WHOLE_FILE_LIMIT` (configuration, tokenizers), and for larger ones (weights)
    the content of 64 blocks of 64 KiB spread evenly over the file, or, for a Hugging Face cache
    snapshot, the SHA-256 the blob it links to is named after. Each file's part is memoised on
    its (path, size, mtime, inode, device), so a second load of the same directory reads nothing
    but its ``stat``. A copied or moved directory has the same fingerprint; a different model at the
    same path has another.

    Raises:
        InvalidOptionError: if a file of the directory cannot be read.
    """
    root = os.path.abspath(os.fspath(model_dir))
    manifest = []
    try:
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith(".") or os.path.splitext(name)[1] not in FINGERPRINT_SUFFIXES:
                    continue
                path = os.path.join(directory, name)
                st = os.stat(path)
                part = _file_fingerprint(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
                relative = os.path.relpath(path, root).replace(os.sep, "/")
                manifest.append(f"{relative}\t{st.st_size}\t{part}")
    except OSError as exc:
        raise InvalidOptionError(
            f"cannot fingerprint the model directory {root!r}: {exc.filename}: {exc.strerror}"
        ) from exc
    return "xxh3-128:" + xxhash.xxh3_128_hexdigest("\n".join(manifest).encode())


@functools.lru_cache(maxsize=1024)
def _file_fingerprint(path: str, size: int, mtime_ns: int, ino: int, dev: int) -> str:
    """One file's part of the fingerprint (memoised on its identity and modification stamp)."""
    target = os.path.basename(os.path.realpath(path))
    if os.path.islink(path) and _SHA256_NAME.fullmatch(target):
        return "sha256:" + target  # a Hugging Face cache snapshot links to blobs named so
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as file:
        if size <= WHOLE_FILE_LIMIT:
            while block := file.read(1 << 20):
                hasher.update(block)
        else:
            span = size - _SAMPLE_BLOCK_SIZE
            for index in range(_SAMPLE_BLOCKS):  # from the first block to the last
                file.seek(index * span // (_SAMPLE_BLOCKS - 1))
                hasher.update(file.read(_SAMPLE_BLOCK_SIZE))
    return "xxh3-128:" + hasher.hexdigest()


class SparkTTSModel:
    """Spark-TTS behind the :class:`~sparktts_cache.engines.TTSModel` interface.

    With ``gender`` set Spark-TTS is "controllable TTS" and needs ``pitch`` and ``speed`` too
    (``moderate`` is used for whichever is missing); without it, it clones the voice in
    ``prompt_speech_path``. Spark-TTS has no ``emotion`` control: such parameters only count in the
    cache key. Samples are random: the cache is what keeps a voice stable across requests. A
    ``seed`` seeds torch's generators before the call (process-wide: reproducible only while one
    synthesis runs at a time, ``max_concurrency=1``).

    The cache identity is the model directory's :func:`model_dir_fingerprint`, computed when the
    model is loaded: a different model downloaded to the same path does not reuse its audio.

    Args:
        model_dir: the model directory (holding ``config.yaml``).
        device: a torch device or its name (``"cuda:0"``, ``"cpu"``).

    Raises:
        InvalidOptionError: if ``model_dir`` is not a directory.
        MissingDependencyError: if Spark-TTS or torch is not installed.
        EngineError: if upstream fails to load the model (its error is chained).
    """

    name: ClassVar[str] = "spark-tts"
    #: Spark-TTS speaks Chinese and English: Han is its own, kana and Hangul are not.
    scripts: ClassVar[frozenset[str]] = frozenset({"han"})

    def __init__(self, model_dir: str | os.PathLike[str], device: Any = "cpu") -> None:
        self.model_dir = os.fspath(model_dir)
        if not os.path.isdir(self.model_dir):
            raise InvalidOptionError(f"no Spark-TTS model directory at {self.model_dir!r}")
        spark_class = find_spark_tts()
        if isinstance(device, str):
            try:
                import torch
            except ImportError as exc:
                raise MissingDependencyError(f"{_INSTALL_HINT} (torch is missing)") from exc
            device = torch.device(device)
        self.fingerprint = model_dir_fingerprint(self.model_dir)  # before loading what it names
        try:
            self._model = spark_class(self.model_dir, device)
        except Exception as exc:
            raise EngineError(
                f"Spark-TTS failed to load {self.model_dir!r}: {type(exc).__name__}: {exc}"
            ) from exc
        self.sample_rate: int = int(self._model.sample_rate)

    @property
    def cache_identity(self) -> dict[str, Any]:
        """The model directory by content (its fingerprint), not by path."""
        return {"engine": "spark-tts", "model": self.fingerprint, "sample_rate": self.sample_rate}

    def inference(
        self,
        text: str,
        prompt_speech_path: str | None = None,
        prompt_text: str | None = None,
        gender: str | None = None,
        pitch: str | None = None,
        speed: str | None = None,
        temperature: float = 0.8,
        top_k: int = 50,
        top_p: float = 0.95,
        seed: int | None = None,
    ) -> npt.NDArray[np.float32]:
        """Synthesise ``text`` with upstream's ``inference``; return mono float32 samples.

        Raises:
            InvalidParamsError: if ``gender``, ``pitch`` or ``speed`` is not one of Spark-TTS's
                values (upstream would fail deep inside, with a bare ``KeyError``).
            EngineError: if upstream fails (its error is chained).
        """
        check_choice("gender", gender, GENDERS)
        check_choice("pitch", pitch, LEVELS)
        check_choice("speed", speed, LEVELS)
        if seed is not None:
            import torch

            torch.manual_seed(seed)  # also seeds every CUDA device
        if gender is not None:
            pitch = pitch or "moderate"
            speed = speed or "moderate"
        try:
            wav = self._model.inference(
                text,
                prompt_speech_path=prompt_speech_path,
                prompt_text=prompt_text,
                gender=gender,
                pitch=pitch,
                speed=speed,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
            )
        except Exception as exc:
            raise EngineError(f"Spark-TTS failed: {type(exc).__name__}: {exc}") from exc
        if hasattr(wav, "detach"):  # a torch tensor
            wav = wav.detach().cpu().numpy()
        return np.asarray(wav, dtype=np.float32).reshape(-1)
