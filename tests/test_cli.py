"""Every command of ``sparktts-cache``, run as a subprocess."""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from sparktts_cache import NORMALIZER_VERSION, SyncTTSCache, __version__
from sparktts_cache._cli import (
    MAX_TEXT_FILE_BYTES,
    export_formats,
    format_size,
    parse_duration,
    parse_param,
    parse_size,
    printable,
    to_json,
)
from sparktts_cache.testing import sealed_audio

from .helpers import fill

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def cli(
    cache_dir: Path, *args: str, stdin: str = "", timeout: float = 120, memory: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command; ``memory`` caps the child's address space, so that a regression that reads
    an endless file fails the test rather than filling this machine's memory."""

    def cap_memory() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(cache_dir), *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, cwd=REPO,
        preexec_fn=cap_memory,
    )  # fmt: skip


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, list[str]]:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    return tmp_path, fill(cache, 12)


def test_stats(filled: tuple[Path, list[str]]) -> None:
    root, _keys = filled
    out = cli(root, "stats")
    assert out.returncode == 0 and "entries:  12" in out.stdout and "KiB" in out.stdout
    data = json.loads(cli(root, "stats", "--json").stdout)
    assert data["entries"] == 12 and data["bytes"] > 12 * 16000


def test_verify_exit_codes(filled: tuple[Path, list[str]]) -> None:
    root, keys = filled
    assert cli(root, "verify").returncode == 0
    path = root / keys[0][:2] / keys[0][2:4] / f"{keys[0]}.wav"
    path.write_bytes(path.read_bytes()[:-3])
    report = cli(root, "verify", "--json")
    assert report.returncode == 1
    assert json.loads(report.stdout)["corrupt"] == [str(path.relative_to(root))]
    fixed = cli(root, "verify", "--fix")
    assert fixed.returncode == 0 and "corrupt entry removed" in fixed.stdout
    assert cli(root, "verify").returncode == 0 and not path.exists()


def test_prune(filled: tuple[Path, list[str]]) -> None:
    root, keys = filled
    old = root / keys[0][:2] / keys[0][2:4] / f"{keys[0]}.wav"
    then = time.time() - 40 * 86400
    os.utime(old, (then, then))
    out = cli(root, "prune", "--max-age", "30d", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["entries"] == 1
    out = cli(root, "prune", "--max-size", "50KB")
    assert out.returncode == 0 and "removed" in out.stdout
    assert json.loads(cli(root, "stats", "--json").stdout)["bytes"] <= 50_000
    assert cli(root, "prune").returncode == 2
    assert cli(root, "prune", "--max-size", "lots").returncode == 2


def test_clear_asks_first(filled: tuple[Path, list[str]]) -> None:
    root, _keys = filled
    refused = cli(root, "clear", stdin="n\n")
    assert (
        refused.returncode == 1 and json.loads(cli(root, "stats", "--json").stdout)["entries"] == 12
    )
    assert cli(root, "clear", stdin="").returncode == 1  # no answer is no
    assert cli(root, "clear", stdin="y\n").returncode == 0
    assert json.loads(cli(root, "stats", "--json").stdout)["entries"] == 0
    fill(SyncTTSCache(root, sample_rate=16000), 2)
    assert cli(root, "clear", "--yes").returncode == 0


def test_ls_show_and_export(filled: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, keys = filled
    listed = json.loads(cli(root, "ls", "--json").stdout)
    assert sorted(row["key"] for row in listed) == sorted(keys)
    grep = json.loads(cli(root, "ls", "--grep", "ENTRY 1", "--json").stdout)
    assert sorted(row["text"] for row in grep) == ["entry 1", "entry 10", "entry 11"]
    assert len(json.loads(cli(root, "ls", "--limit", "2", "--json").stdout)) == 2
    assert "entry" in cli(root, "ls").stdout
    shown = json.loads(cli(root, "show", keys[3], "--json").stdout)
    assert shown["text"] == "entry 3" and shown["sample_rate"] == 16000
    assert "entry 3" in cli(root, "show", keys[3]).stdout
    out = tmp_path / "out.wav"
    assert cli(root, "export", keys[3], str(out)).returncode == 0
    samples, _rate = soundfile.read(out, dtype="float32")
    np.testing.assert_array_equal(samples, sealed_audio(3))
    assert cli(root, "show", "f" * 32).returncode == 3
    assert cli(root, "show", "../../etc/passwd").returncode == 2  # not a key: bad usage
    assert cli(root, "export", "f" * 32, str(out)).returncode == 3


def test_synth_twice_is_fully_cached(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("Hello there. This is the command line.\n\nA second paragraph, short.")
    cache_dir, out = tmp_path / "cache", tmp_path / "out.wav"
    first = cli(cache_dir, "synth", "--file", str(text), "-o", str(out), "--gender", "female")
    assert first.returncode == 0, first.stderr
    assert "0 from the cache" in first.stdout and "synthesised" in first.stdout
    second = cli(cache_dir, "synth", "--file", str(text), "-o", str(out), "--gender", "female",
                 "--expect-cached")  # fmt: skip
    assert second.returncode == 0 and "(100%)" in second.stdout
    info = soundfile.info(str(out))
    assert info.samplerate == 22050 and info.duration > 2
    other = cli(cache_dir, "synth", "Something new.", "-o", str(out), "--expect-cached")
    assert other.returncode == 4
    assert cli(cache_dir, "synth", "-o", str(out)).returncode == 2


def test_synth_params_reach_the_cache_key_with_their_types(tmp_path: Path) -> None:
    cache_dir, out = tmp_path / "cache", tmp_path / "out.wav"
    args = ["synth", "One sentence.", "-o", str(out), "--gender", "male", "--pitch", "low",
            "--param", "temperature=0.7", "--param", "top_k=50", "--param", "seed=3",
            "--param", "emotion=HAPPY", "--param", "prompt_text=hello there"]  # fmt: skip
    first = cli(cache_dir, *args)
    assert first.returncode == 0, first.stderr
    (row,) = json.loads(cli(cache_dir, "ls", "--json").stdout)
    params = json.loads(cli(cache_dir, "show", row["key"], "--json").stdout)["params"]
    assert params["_normalizer"] == NORMALIZER_VERSION  # synth normalises by default
    assert {k: v for k, v in params.items() if k not in ("_engine", "_normalizer")} == {
        "gender": "male", "pitch": "low", "temperature": 0.7, "top_k": 50, "seed": 3,
        "emotion": "HAPPY", "prompt_text": "hello there",
    }  # fmt: skip
    assert isinstance(params["top_k"], int) and isinstance(params["temperature"], float)
    assert cli(cache_dir, *args, "--expect-cached").returncode == 0  # the same key again
    changed = [a if a != "top_k=50" else "top_k=51" for a in args]
    assert cli(cache_dir, *changed, "--expect-cached").returncode == 4  # another key
    twice = cli(cache_dir, "synth", "Hi.", "-o", str(out), "--gender", "male",
                "--param", "gender=female")  # fmt: skip
    assert twice.returncode == 2 and "'gender' given twice" in twice.stderr
    assert cli(cache_dir, "synth", "Hi.", "-o", str(out), "--param", "novalue").returncode == 2
    bad_level = cli(cache_dir, "synth", "Hi.", "-o", str(out), "--param", "pitch=loud")
    assert bad_level.returncode == 2 and "pitch must be one of very_low" in bad_level.stderr


def test_synth_engine_names(tmp_path: Path) -> None:
    help_text = " ".join(cli(tmp_path, "synth", "--help").stdout.split())
    assert "one of espeak, kokoro, piper, spark," in help_text and "--param KEY=VALUE" in help_text
    out = tmp_path / "out.wav"
    unknown = cli(tmp_path, "synth", "Hi.", "-o", str(out), "--engine", "festival")
    assert unknown.returncode == 2 and "use one of espeak, kokoro, piper, spark" in unknown.stderr
    missing = cli(tmp_path, "synth", "Hi.", "-o", str(out), "--engine", f"spark:{tmp_path}/none")
    assert missing.returncode == 2 and "no Spark-TTS model directory" in missing.stderr
    voice = cli(tmp_path, "synth", "Hi.", "-o", str(out), "--engine", "espeak:en-us")
    assert voice.returncode == 0, voice.stderr


def test_param_parsing() -> None:
    assert parse_param("temperature=0.7") == ("temperature", 0.7)
    assert parse_param("top_k=50") == ("top_k", 50) and parse_param("seed=3") == ("seed", 3)
    assert parse_param("flag=true") == ("flag", True) and parse_param("x=null") == ("x", None)
    assert parse_param("emotion=HAPPY") == ("emotion", "HAPPY")
    assert parse_param("prompt_text=a=b c") == ("prompt_text", "a=b c")
    assert parse_param('digits="3"') == ("digits", "3") and parse_param("empty=") == ("empty", "")
    assert parse_param("nested=[1, 2]") == ("nested", [1, 2])
    for bad in ("novalue", "=3", " =3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_param(bad)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert cli(tmp_path).returncode == 2
    assert cli(tmp_path, "frobnicate").returncode == 2


def test_size_and_duration_parsing() -> None:
    assert parse_size("2GB") == 2_000_000_000 and parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size("500m") == 500_000_000 and parse_size("1024") == 1024
    assert parse_duration("30d") == 30 * 86400 and parse_duration("90") == 90
    assert parse_duration("2w") == 14 * 86400 and parse_duration("12h") == 43200
    assert format_size(512) == "512 B" and format_size(3 * 1024**3) == "3.0 GiB"


HOSTILE_TEXT = "Hi \x1b]0;owned\x07\x1b[2J\u202egnp.exe\r\nnext\x9b31m\tend"
HOSTILE_SHOWN = "Hi \\x1b]0;owned\\x07\\x1b[2J\\u202egnp.exe\\r\\nnext\\x9b31m\\tend"


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    assert printable(HOSTILE_TEXT) == HOSTILE_SHOWN
    assert printable("a\x00b\x7f\u2028\u2066\ud800") == "a\\x00b\\x7f\\u2028\\u2066\\ud800"
    ordinary = "Grüße, 世界! C:\\voices\\a.wav — «ok» 🎉"
    assert printable(ordinary) == ordinary


def test_ls_and_show_escape_control_characters_of_stored_texts(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    params = {"voice": "\x1b[31mred\u202e"}
    key = cache.generate_cache_key(HOSTILE_TEXT, params)
    assert cache.cache_data(key, sealed_audio(1), HOSTILE_TEXT, params)
    listed, shown = cli(tmp_path, "ls"), cli(tmp_path, "show", key)
    assert listed.returncode == 0 and shown.returncode == 0
    assert listed.stdout.count("\n") == 1 and listed.stdout.rstrip("\n").endswith(HOSTILE_SHOWN)
    assert f"text:        {HOSTILE_SHOWN}\n" in shown.stdout
    assert '"voice": "\\u001b[31mred\\u202e"' in shown.stdout
    for out in (listed.stdout, shown.stdout):
        assert not {"\x1b", "\x07", "\x9b", "\u202e", "\r"} & set(out)
    # JSON escapes by itself, and gives the stored text back exactly.
    assert json.loads(cli(tmp_path, "show", key, "--json").stdout)["text"] == HOSTILE_TEXT
    assert json.loads(cli(tmp_path, "ls", "--json").stdout)[0]["text"] == HOSTILE_TEXT


def test_ls_show_and_export_find_flac_entries(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = SyncTTSCache(root, audio_format="flac", sample_rate=16000)
    keys = fill(cache, 3)
    listed = json.loads(cli(root, "ls", "--json").stdout)
    assert sorted(row["key"] for row in listed) == sorted(keys)
    assert "entry 2" in cli(root, "ls").stdout
    shown = json.loads(cli(root, "show", keys[1], "--json").stdout)
    assert shown["text"] == "entry 1" and shown["path"] == str(cache.entry_path(keys[1]))
    assert shown["path"].endswith(".flac")
    entry = cache.get_entry(keys[1])
    assert entry is not None
    for name in ("out.wav", "out.flac"):  # the 16-bit samples survive either way
        out = tmp_path / name
        exported = cli(root, "export", keys[1], str(out))
        assert exported.returncode == 0, exported.stderr
        samples, rate = soundfile.read(out, dtype="float32")
        assert rate == 16000
        np.testing.assert_array_equal(samples, entry.audio)


@pytest.mark.parametrize("squatter", ["symlink", "fifo"])
def test_export_replaces_what_is_at_the_destination_and_never_writes_through_it(
    filled: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory, squatter: str
) -> None:
    root, keys = filled
    outside = tmp_path_factory.mktemp("outside")
    victim = outside / "victim.txt"
    victim.write_text("precious")
    out = outside / "out.wav"
    if squatter == "symlink":
        out.symlink_to(victim)
    else:
        os.mkfifo(out)  # the old code waited for a reader for ever
    exported = cli(root, "export", keys[0], str(out), timeout=30)
    assert exported.returncode == 0, exported.stderr
    assert victim.read_text() == "precious" and not out.is_symlink()
    samples, _rate = soundfile.read(out, dtype="float32")
    np.testing.assert_array_equal(samples, sealed_audio(0))
    assert sorted(path.name for path in outside.iterdir()) == ["out.wav", "victim.txt"]
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_export_to_an_unknown_extension_is_one_line_naming_the_formats(
    filled: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root, keys = filled
    outside = tmp_path_factory.mktemp("outside")
    names = list(export_formats())
    assert names[:2] == [".wav", ".flac"]
    for name in ("out.xyz", "out", "out.wav.part"):
        refused = cli(root, "export", keys[0], str(outside / name))
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.count("\n") == 1
        assert f"ending in {', '.join(names[:-1])} or {names[-1]}" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert list(outside.iterdir()) == []


@pytest.mark.timeout(200)
def test_synth_file_must_be_a_regular_utf8_file_of_at_most_16_mib(tmp_path: Path) -> None:
    fifo, big, binary = tmp_path / "fifo", tmp_path / "big.txt", tmp_path / "binary.txt"
    os.mkfifo(fifo)
    with open(big, "wb") as file:
        file.truncate(MAX_TEXT_FILE_BYTES + 1)
    binary.write_bytes(b"caf\xe9\n")
    out = tmp_path / "out.wav"
    says = {
        "/dev/zero": "is not a regular file",  # the old code read it until memory ran out
        str(fifo): "is not a regular file",  # ... and waited on this for a writer
        str(tmp_path): "is not a regular file",
        str(big): "is larger than 16 MiB",
        str(binary): "is not UTF-8 (byte 3)",
        str(tmp_path / "missing.txt"): ": No such file or directory",
    }
    for path, what in says.items():
        refused = cli(tmp_path / "cache", "synth", "--file", path, "-o", str(out), timeout=30,
                      memory=4 << 30)  # fmt: skip
        assert refused.returncode == 2, (path, refused.stderr)
        assert refused.stderr == f"synth: --file {path!r}{'' if what[0] == ':' else ' '}{what}\n"
    assert not out.exists()


# -- the command line's edges (issue 11) ----------------------------------------------------------


def entry_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.wav")) if root.exists() else []


@pytest.mark.timeout(200)
def test_ctrl_c_during_synth_is_one_line_saying_what_is_cached_and_exits_130(
    tmp_path: Path,
) -> None:
    text = tmp_path / "text.txt"  # far more than is made before the signal: thousands of segments
    text.write_text("\n\n".join(f"Sentence number {i} is here." for i in range(3000)))
    cache_dir = tmp_path / "cache"
    process = subprocess.Popen(
        [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(cache_dir), "synth",
         "--file", str(text), "-o", str(tmp_path / "out.wav")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(entry_files(cache_dir)) < 3:  # interrupt mid-synthesis, once some are cached
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    match = re.fullmatch(
        r"interrupted: (\d+) of 3000 segments in the cache; run the same command again to "
        r"resume\n",
        err,
    )
    assert match is not None, err
    assert int(match[1]) == len(entry_files(cache_dir)) >= 3 and out == ""
    assert not (tmp_path / "out.wav").exists()


def test_a_cache_directory_that_is_not_a_directory_fails_once_before_anything(
    tmp_path: Path,
) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("not a cache")
    out = tmp_path / "out.wav"
    says = {
        not_a_dir: f"the cache directory {str(not_a_dir)!r} is not a directory",
        not_a_dir / "cache": f"cannot use {str(not_a_dir / 'cache')!r} as the cache directory: "
        f"{str(not_a_dir)!r} is not a directory",
    }  # fmt: skip
    for cache_dir, what in says.items():
        for command in (["synth", "Hello there. Goodbye.", "-o", str(out)], ["stats"], ["ls"],
                        ["show", "f" * 32], ["verify"], ["prune", "--max-age", "1d"]):  # fmt: skip
            refused = cli(cache_dir, *command)
            assert refused.returncode == 2, (command, refused.stderr)
            assert refused.stderr == f"sparktts-cache: {what}\n" and refused.stdout == ""
    assert not out.exists() and not_a_dir.read_text() == "not a cache"


def drop_root_privileges() -> None:
    """In the child: make permission bits bind even for root, by dropping CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the capability bounding set (they are gone after ``exec``)."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(sys.platform != "linux", reason="drops Linux capabilities when run as root")
def test_synth_names_the_directory_it_may_not_write_before_synthesising(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    (locked / "cache").mkdir(parents=True)
    out = tmp_path / "out.wav"
    says = {
        locked / "new": f"cannot create the cache directory {str(locked / 'new')!r}: no "
        f"permission to write in {str(locked)!r}",
        locked: f"the cache directory {str(locked)!r} is not writable (permission denied)",
    }  # fmt: skip
    locked.chmod(0o555)
    try:
        for cache_dir, what in says.items():
            refused = subprocess.run(
                [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(cache_dir), "synth",
                 "Hello there.", "-o", str(out)],
                capture_output=True, text=True, timeout=60, cwd=REPO,
                preexec_fn=drop_root_privileges,
            )  # fmt: skip
            assert refused.returncode == 2 and refused.stderr == f"sparktts-cache: {what}\n"
        # Reading a cache needs no write permission.
        assert cli(locked / "cache", "stats").returncode == 0
    finally:
        locked.chmod(0o755)
    assert not out.exists() and list(locked.iterdir()) == [locked / "cache"]


def test_a_bad_key_is_bad_usage_and_a_damaged_entry_is_one_line_naming_its_file(
    filled: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, keys = filled
    out = tmp_path / "out.wav"
    for command in (["show", "nope"], ["export", "ABC" * 11 + "D", str(out)]):
        refused = cli(root, *command)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1
        assert "cache key must be 32 lowercase hex characters" in refused.stderr
    damaged = root / keys[0][:2] / keys[0][2:4] / f"{keys[0]}.wav"
    damaged.write_bytes(damaged.read_bytes()[:-3])
    for command in (["show", keys[0]], ["show", keys[0], "--json"], ["export", keys[0], str(out)]):
        refused = cli(root, *command)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.startswith(f"sparktts-cache: damaged entry {damaged}: ")
        assert refused.stderr.endswith(" (verify --fix removes it)\n")
        assert refused.stderr.count("\n") == 1
    listed = cli(root, "ls", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 11
    assert listed.stderr.startswith(f"ls: damaged entry {damaged}: ")
    assert listed.stderr.count("\n") == 1
    assert damaged.exists() and not out.exists()  # an inspection removes nothing
    unknown = cli(root, "synth", "Hi.", "-o", str(out), "--engine", "festival")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    too_short = cli(root, "synth", "Hi.", "-o", str(out), "--max-chars", "1")
    assert too_short.returncode == 2 and too_short.stderr.startswith("synth: --max-chars must be")


def test_cache_dir_after_the_command_and_version(filled: tuple[Path, list[str]]) -> None:
    root, _keys = filled

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sparktts_cache", *args],
                              capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip

    after = run("stats", "--json", "--cache-dir", str(root))
    assert after.returncode == 0 and json.loads(after.stdout)["entries"] == 12
    elsewhere = root.parent / "elsewhere"
    # Given twice, the one after the command wins (it is the more specific).
    both = run("--cache-dir", str(elsewhere), "stats", "--json", "--cache-dir", str(root))
    assert json.loads(both.stdout)["cache_dir"] == str(root)
    before = run("--cache-dir", str(root), "ls", "--json")
    assert before.returncode == 0 and len(json.loads(before.stdout)) == 12
    version = run("--version")
    assert version.returncode == 0 and version.stdout == f"sparktts-cache {__version__}\n"


@pytest.mark.parametrize(
    ("extension", "container", "subtype"),
    [(".ogg", "OGG", "VORBIS"), (".mp3", "MP3", "MPEG_LAYER_III"), (".FLAC", "FLAC", "PCM_16")],
)
def test_export_writes_the_format_of_its_extension(
    filled: tuple[Path, list[str]], tmp_path: Path, extension: str, container: str, subtype: str
) -> None:
    if not soundfile.check_format(container, subtype):
        pytest.skip(f"this libsndfile cannot write {container}")
    assert export_formats()[extension.lower()] == (container, subtype)
    root, keys = filled
    out = tmp_path / f"out{extension}"
    exported = cli(root, "export", keys[2], str(out))
    assert exported.returncode == 0, exported.stderr
    info = soundfile.info(str(out))
    assert info.format == container and info.subtype == subtype and info.samplerate == 16000
    # Lossy codecs may pad a frame; the length is that of the entry all the same.
    assert abs(info.duration - len(sealed_audio(2)) / 16000) < 0.1


def test_synth_refuses_blank_or_doubled_input_and_counts_in_the_singular(tmp_path: Path) -> None:
    cache_dir, out = tmp_path / "cache", tmp_path / "out.wav"
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\t\n  ")
    for args, what in [
        (["  \n\t "], "synth: TEXT is blank (only white space): nothing to say\n"),
        ([""], "synth: TEXT is blank (only white space): nothing to say\n"),
        (["--file", str(blank)],
         f"synth: --file {str(blank)!r} is blank (only white space): nothing to say\n"),
        (["Hello.", "--file", str(blank)], "synth: give TEXT or --file, not both\n"),
    ]:  # fmt: skip
        refused = cli(cache_dir, "synth", *args, "-o", str(out))
        assert refused.returncode == 2 and refused.stderr == what
    assert not out.exists()
    one = cli(cache_dir, "synth", "Hello.", "-o", str(out))
    assert one.returncode == 0 and one.stdout.startswith("1 segment in "), one.stdout


def test_stats_json_reports_the_directory_not_this_process(filled: tuple[Path, list[str]]) -> None:
    root, _keys = filled
    data = json.loads(cli(root, "stats", "--json").stdout)
    assert set(data) == {
        "cache_dir", "entries", "bytes", "oldest", "newest", "temp_files", "blobs", "blob_bytes",
        "total_bytes",
    }  # fmt: skip
    assert data["total_bytes"] == data["bytes"]


def test_json_keeps_text_readable_and_escapes_what_a_terminal_acts_on(tmp_path: Path) -> None:
    cache = SyncTTSCache(tmp_path, sample_rate=16000)
    text = "你好，世界。Grüße! " + HOSTILE_TEXT + " \u2028\u2066\x7f"
    params = {"voice": "普通话\u202e\x85"}
    key = cache.generate_cache_key(text, params)
    assert cache.cache_data(key, sealed_audio(1), text, params)
    for command in (["show", key, "--json"], ["ls", "--json"]):
        out = cli(tmp_path, *command)
        assert out.returncode == 0, out.stderr
        assert "你好，世界。Grüße!" in out.stdout  # not "\\u4f60\\u597d"
        raw = {"\x1b", "\x07", "\x9b", "\x85", "\x7f", "\u202e", "\u2028", "\u2066", "\r"}
        assert not raw & set(out.stdout), command
        assert "\\u202e" in out.stdout and "\\u009b" in out.stdout
        data = json.loads(out.stdout)
        shown = data if isinstance(data, dict) else data[0]
        assert shown["text"] == text  # exactly the stored text, once decoded
    shown = cli(tmp_path, "show", key, "--json").stdout
    assert "普通话\\u202e\\u0085" in shown and json.loads(shown)["params"] == params
    assert to_json({"t": "a\ud800b"}) == '{\n  "t": "a\\ud800b"\n}'  # printable, UTF-8 encodable


# -- issue 20: standard input and output, bounds, and what stats counts ---------------------------


def test_synth_max_chars_out_of_range_is_a_synth_error(tmp_path: Path) -> None:
    refused = cli(tmp_path / "cache", "synth", "Hello.", "-o", str(tmp_path / "o.wav"),
                  "--max-chars", "0")  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr == "synth: --max-chars must be an int of at least 4, not 0\n"


def test_ls_limit_must_not_be_negative(filled: tuple[Path, list[str]]) -> None:
    root, _keys = filled
    refused = cli(root, "ls", "--limit", "-1")
    assert refused.returncode == 2 and "--limit: must be at least 0, not -1" in refused.stderr
    assert len(cli(root, "ls", "--limit", "3").stdout.splitlines()) == 3


def test_synth_reads_standard_input_and_writes_standard_output(tmp_path: Path) -> None:
    text = "Read from standard input. Written to standard output, as a pipe."
    piped = subprocess.run(
        [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(tmp_path / "cache"), "synth",
         "--file", "-", "-o", "-"],
        input=text.encode(), capture_output=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    # Streamed to a pipe: the sizes are unknown when the header goes out, as streamed WAV has.
    assert piped.stdout[:4] == b"RIFF" and piped.stdout[4:8] == b"\xff\xff\xff\xff"
    audio, rate = soundfile.read(io.BytesIO(piped.stdout), dtype="float32")
    assert rate == 22050 and len(audio) == (len(piped.stdout) - 44) // 2 > rate
    assert b"wrote standard output" in piped.stderr  # the summary keeps out of the audio
    # Redirected to a file, which can seek: the sizes are set at the end. The same audio, cached.
    out = tmp_path / "redirected.wav"
    with open(out, "wb") as file:
        again = subprocess.run(
            [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(tmp_path / "cache"),
             "synth", "--file", "-", "-o", "-", "--expect-cached"],
            input=text.encode(), stdout=file, stderr=subprocess.PIPE, timeout=120, cwd=REPO,
        )  # fmt: skip
    assert again.returncode == 0, again.stderr
    info = soundfile.info(str(out))
    assert info.samplerate == 22050 and info.frames == len(audio)
    np.testing.assert_array_equal(soundfile.read(out, dtype="float32")[0], audio)


def test_synth_to_standard_output_refuses_a_terminal(tmp_path: Path) -> None:
    controller, terminal = os.openpty()
    try:
        refused = subprocess.run(
            [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(tmp_path / "cache"),
             "synth", "Hello.", "-o", "-"],
            stdout=terminal, stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
    finally:
        os.close(controller)
        os.close(terminal)
    assert refused.returncode == 2
    assert refused.stderr == (
        "synth: -o -: standard output is a terminal; redirect it to a file or a player\n"
    )
    assert not (tmp_path / "cache").exists()


def test_synth_from_standard_input_is_bounded_too(tmp_path: Path) -> None:
    refused = cli(tmp_path / "cache", "synth", "--file", "-", "-o", str(tmp_path / "o.wav"),
                  stdin="x" * (MAX_TEXT_FILE_BYTES + 1), timeout=60)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr == "synth: --file - (standard input) is larger than 16 MiB\n"


def test_stats_counts_stored_responses(filled: tuple[Path, list[str]]) -> None:
    root, _keys = filled
    before = json.loads(cli(root, "stats", "--json").stdout)
    assert before["blobs"] == 0 and before["total_bytes"] == before["bytes"]
    # The server's stored responses are blobs of the store: counted apart from audio entries.
    writer = SyncTTSCache(root).begin_blob("ab" * 16, "mp3")
    writer.write(b"z" * 1000)
    assert writer.commit()
    data = json.loads(cli(root, "stats", "--json").stdout)
    assert data["entries"] == 12 and data["blobs"] == 1 and data["blob_bytes"] == 1032
    assert data["total_bytes"] == data["bytes"] + 1032
    shown = cli(root, "stats").stdout
    assert "blobs:    1 (stored responses), 1.0 KiB" in shown and "total:" in shown


def test_synth_normalises_unless_told_not_to(tmp_path: Path) -> None:
    cache_dir, out = tmp_path / "cache", tmp_path / "out.wav"
    assert cli(cache_dir, "synth", "Hello there.", "-o", str(out)).returncode == 0
    bold = cli(cache_dir, "synth", "**Hello** there. 🎉", "-o", str(out), "--expect-cached")
    assert bold.returncode == 0, bold.stderr
    as_given = cli(cache_dir, "synth", "**Hello** there.", "-o", str(out), "--no-normalize",
                   "--expect-cached")  # fmt: skip
    assert as_given.returncode == 4
    nothing = cli(cache_dir, "synth", "🎉 ✅", "-o", str(out))
    assert nothing.returncode == 2 and "nothing to say once normalised" in nothing.stderr
