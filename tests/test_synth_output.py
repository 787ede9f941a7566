"""``sparktts-cache synth``'s output file: checked before synthesising, written as segments
arrive (memory independent of the text's length), renamed into place, never written through a
symlink. Run in this process with a stand-in engine, so that the model's calls and the memory can
be counted."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from sparktts_cache import TextSegmenter, engines
from sparktts_cache._cli import main

from .models import CountingModel, audio_for

PAUSE = round(0.3 * 16000)


class SecondsModel(CountingModel):
    """Two seconds of audio per segment, whatever its length: a long text is a lot of audio."""

    def inference(  # type: ignore[override]
        self, text: str, gender: str | None = None
    ) -> npt.NDArray[np.float32]:
        super().inference(text, gender)
        return np.resize(audio_for(text, gender), 2 * self.sample_rate)


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> CountingModel:
    model = CountingModel()
    monkeypatch.setattr(engines, "load_tts_model", lambda *_args, **_options: model)
    return model


def synth(tmp_path: Path, *args: str) -> int:
    return main(["--cache-dir", str(tmp_path / "cache"), "synth", *args])


def expected(text: str) -> npt.NDArray[np.float32]:
    pieces: list[npt.NDArray[np.float32]] = []
    for segment in TextSegmenter().segment_text(text):
        pieces += [np.zeros(PAUSE, np.float32)] if pieces else []
        pieces.append(audio_for(segment))
    return np.concatenate(pieces)


TEXT = "The first sentence is here. A second one follows it.\n\nAnd a second paragraph."


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing/out.wav", "no such directory"),
        ("out.xyz", "cannot tell the format"),
        ("out", "cannot tell the format"),
        ("folder.wav", "is a directory"),
    ],
)
def test_the_output_is_checked_before_synthesising(
    tmp_path: Path,
    model: CountingModel,
    capsys: pytest.CaptureFixture[str],
    name: str,
    message: str,
) -> None:
    (tmp_path / "folder.wav").mkdir()
    assert synth(tmp_path, TEXT, "-o", str(tmp_path / name)) == 2
    err = capsys.readouterr().err
    assert err.startswith("synth: -o ") and err.count("\n") == 1 and message in err
    assert model.total_calls == 0 and not (tmp_path / "cache").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only directory")
def test_an_unwritable_directory_is_refused_before_synthesising(
    tmp_path: Path, model: CountingModel, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert synth(tmp_path, TEXT, "-o", str(locked / "out.wav")) == 2
    assert "cannot write in" in capsys.readouterr().err and model.total_calls == 0


def test_the_output_is_written_whole_and_renamed_over_a_symlink(
    tmp_path: Path, model: CountingModel
) -> None:
    precious = tmp_path / "precious.wav"
    precious.write_bytes(b"not to be overwritten")
    out = tmp_path / "out.wav"
    out.symlink_to(precious)
    assert synth(tmp_path, TEXT, "-o", str(out)) == 0
    assert precious.read_bytes() == b"not to be overwritten"
    assert not out.is_symlink() and oct(out.stat().st_mode & 0o777) == oct(0o666 & ~umask())
    audio, rate = soundfile.read(out, dtype="float32")
    assert rate == 16000 and soundfile.info(str(out)).subtype == "PCM_16"
    np.testing.assert_allclose(audio, expected(TEXT), atol=1 / 32768)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out.wav", "precious.wav"]


def test_other_formats_by_extension(tmp_path: Path, model: CountingModel) -> None:
    assert synth(tmp_path, TEXT, "-o", str(tmp_path / "out.flac")) == 0
    info = soundfile.info(str(tmp_path / "out.flac"))
    assert info.format == "FLAC" and info.frames == len(expected(TEXT))


def test_a_failed_synthesis_leaves_the_destination_as_it_was(
    tmp_path: Path, model: CountingModel
) -> None:
    out = tmp_path / "out.wav"
    out.write_bytes(b"the previous output")
    model.fail_on = "second paragraph"
    with pytest.raises(RuntimeError, match="model failed"):
        synth(tmp_path, TEXT, "-o", str(out))
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out.wav"]  # no temp file


def test_memory_does_not_grow_with_the_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = SecondsModel()
    monkeypatch.setattr(engines, "load_tts_model", lambda *_args, **_options: model)
    # The text as an argument: --file reads into a buffer of the largest size it accepts.
    segments = 150
    text = "\n\n".join(f"Paragraph number {index} is here." for index in range(segments))
    audio_bytes = segments * 2 * 16000 * 4  # 19 MB of float32 in all
    out = tmp_path / "out.wav"
    assert synth(tmp_path, "Imports first.", "-o", str(out)) == 0  # not counted: imports
    for run in ("uncached", "cached"):
        tracemalloc.start()
        try:
            assert synth(tmp_path, text, "-o", str(out)) == 0
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # About the window of 8 segments (1 MB) plus the keys: not the text's audio.
        assert peak < audio_bytes / 6, (run, peak)
    assert model.total_calls == segments + 1
    frames = soundfile.info(str(out)).frames
    assert frames == segments * 2 * 16000 + (segments - 1) * PAUSE


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
