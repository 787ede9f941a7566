"""What :class:`~sparktts_cache.LongTextTTS` needs of a model."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy.typing as npt

from .._core.errors import InvalidParamsError

__all__ = [
    "GENDERS",
    "LEVELS",
    "SPEED_LEVELS",
    "SPEED_RANGE",
    "NamedVoices",
    "TTSModel",
    "accepted_params",
    "check_choice",
    "speed_factor",
]

#: Spark-TTS's level names for ``pitch`` and ``speed``, lowest first. Every bundled engine and the
#: command line take these, so that one text with one set of parameters means the same everywhere.
LEVELS = ("very_low", "low", "moderate", "high", "very_high")
#: Spark-TTS's values of ``gender``.
GENDERS = ("female", "male")
#: Speed factors of the level names for engines that take a factor (Piper, Kokoro), close to
#: eSpeak's rates (120-250 words per minute around 175).
SPEED_LEVELS: Mapping[str, float] = dict(zip(LEVELS, (0.7, 0.85, 1.0, 1.2, 1.4), strict=True))
#: The range of a numeric ``speed``, as in the OpenAI speech API (1.0 is normal).
SPEED_RANGE = (0.25, 4.0)


@runtime_checkable
class TTSModel(Protocol):
    """Anything with a ``sample_rate`` and a blocking ``inference(text, **params)``.

    A model may also define ``cache_identity`` (a JSON-like value naming the engine and voice
    data); it is added to the cache key, so two engines never share entries.
    """

    @property
    def sample_rate(self) -> int: ...

    @property
    def inference(self) -> Callable[..., npt.NDArray[Any]]:
        """``inference(text, **params) -> np.ndarray``: blocking; returns mono samples."""
        ...


@runtime_checkable
class NamedVoices(Protocol):
    """A model whose ``voice`` parameter names voices of its own (Kokoro's ``jf_alpha``, or a
    blend such as ``jf_alpha+jm_kumo``): the server lists them and takes them as voice names."""

    def voice_names(self) -> list[str]:
        """The voices it has, sorted."""
        ...

    def check_voice(self, voice: str) -> None:
        """Raise :class:`~sparktts_cache.InvalidParamsError` if ``voice`` (a name or a blend)
        is not one it can speak with; the message says why."""
        ...


def accepted_params(model: TTSModel, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``params`` that ``model.inference`` accepts as keywords (None dropped)."""
    signature = inspect.signature(model.inference)
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return {k: v for k, v in params.items() if v is not None}
    names = {
        name
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return {k: v for k, v in params.items() if k in names and k != "text" and v is not None}


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str | None:
    """Return ``value`` if it is None or one of ``choices``; raise otherwise.

    Raises:
        InvalidParamsError: naming the parameter and the values it takes.
    """
    if value is None or (isinstance(value, str) and value in choices):
        return value
    raise InvalidParamsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def speed_factor(speed: object) -> float:
    """``speed`` (a level name or a number from 0.25 to 4.0) as a factor of the normal pace.

    Raises:
        InvalidParamsError: for an unknown level, a number out of range, or another type.
    """
    if isinstance(speed, str):
        if speed not in SPEED_LEVELS:
            raise InvalidParamsError(
                f"speed must be one of {', '.join(LEVELS)} or a number, got {speed!r}"
            )
        return SPEED_LEVELS[speed]
    if isinstance(speed, bool) or not isinstance(speed, (int, float)):
        raise InvalidParamsError(f"speed must be a level name or a number, got {speed!r}")
    low, high = SPEED_RANGE
    if not low <= speed <= high:  # also rejects NaN
        raise InvalidParamsError(f"speed must be from {low} to {high} (1.0 is normal), got {speed}")
    return float(speed)
