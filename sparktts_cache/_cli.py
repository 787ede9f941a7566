"""The ``sparktts-cache`` command: inspect, maintain and fill a cache from the shell.

Exit codes: 0 success; 1 the operation failed or found damage (``verify``, a damaged entry that
``show`` or ``export`` was asked for); 2 bad usage: anything wrong with the command line, including
a key that is not a key, an unknown engine or a parameter value it refuses, a cache directory that
is not a directory (or, for ``synth``, cannot be written), ``clear``, ``prune`` or ``verify --fix``
refused in a directory that is not marked as a cache and holds files that are not the cache's (one
line on stderr says which and what to do), an ``export`` destination whose extension names no
format it writes, a ``synth`` text that is empty or blank, given twice (TEXT and ``--file``) or in a
``--file`` that is not a regular UTF-8 file of at most 16 MiB, a ``synth -o`` that cannot be
written (checked before synthesising); 3 no such entry (``show``,
``export``); 4 ``synth --expect-cached`` had to synthesise; 130 interrupted (Ctrl-C). Every error is
one line on stderr.

What entries hold came from whoever asked for the synthesis (a server's clients, say): the
human-readable output escapes every character a terminal would act on rather than show (see
:func:`printable`), and the commands that read entries find them in either format, WAV or FLAC,
whatever the cache was written with.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import stat
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from ._core.codec import Entry
from ._core.errors import (
    CacheError,
    CorruptEntryError,
    InvalidKeyError,
    InvalidOptionError,
    InvalidParamsError,
    InvalidTextError,
    NotACacheDirectoryError,
)
from ._core.files import read_regular_file
from ._file import layout
from ._file.atomic import AtomicFile
from ._file.cache import SyncTTSCache, default_cache_dir
from ._text.plan import Plan
from .engines import GENDERS, LEVELS, engine_names

__all__ = [
    "format_size", "main", "parse_duration", "parse_param", "parse_size", "printable", "to_json",
]  # fmt: skip

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_NOT_CACHED = 0, 1, 2, 3, 4
#: What a shell reports for a command ended by SIGINT (128 + 2), so scripts see it the same way.
EXIT_INTERRUPTED = 130

#: The library's errors that mean the command line asked for something impossible: a key that is
#: not a key, an unknown engine or option value, a parameter value the engine refuses, a text
#: that cannot be keyed, a directory that is not the cache's.
_USAGE_ERRORS = (
    InvalidKeyError, InvalidOptionError, InvalidParamsError, InvalidTextError,
    NotACacheDirectoryError,
)  # fmt: skip

_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
               "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}  # fmt: skip
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

#: The longest text ``synth --file`` reads: 16 MiB is days of speech, and bounds what a mistaken
#: path (a log file, a disk image) costs before the command says so.
MAX_TEXT_FILE_BYTES = 16 << 20

#: What ``export`` writes, by the destination's extension: the container and the sample format.
#: WAV keeps the float32 samples bit for bit; FLAC is 16-bit, as a FLAC cache stores them; Ogg
#: Vorbis and MP3 are lossy. Only those the installed libsndfile can write are offered (MP3 needs
#: libsndfile 1.1), see :func:`export_formats`.
_EXPORT_FORMATS = {
    ".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}  # fmt: skip

#: Characters a terminal acts on rather than shows: C0 controls (escape sequences start with ESC),
#: DEL and the C1 controls, the bidirectional marks and overrides that reorder what is shown
#: (Trojan Source), line and paragraph separators, and lone surrogates (which cannot be printed).
_UNPRINTABLE_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNPRINTABLE = re.compile(f"[\x00-\x1f{_UNPRINTABLE_BEYOND_C0}]")
#: The same less the C0 controls, which JSON escapes by itself (the newlines it writes are its
#: indentation, outside any string).
_RAW_IN_JSON = re.compile(f"[{_UNPRINTABLE_BEYOND_C0}]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def parse_size(text: str) -> int:
    """``"2GB"``, ``"500M"``, ``"1.5GiB"``, ``"1024"`` -> bytes (``i`` for binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 500M, 2GB or 1.5GiB)")
    return int(float(match[1]) * _SIZE_UNITS[match[2] or ""])


def parse_duration(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"45m"``, ``"2w"``, ``"90"`` (seconds) -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30d, 12h or 45m)")
    return float(match[1]) * _DURATION_UNITS[match[2] or "s"]


def count(text: str) -> int:
    """A count from the command line: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def parse_param(text: str) -> tuple[str, Any]:
    """``"top_k=50"`` -> ``("top_k", 50)``: the value as JSON if it parses, else as the string.

    So ``temperature=0.7`` is a float, ``seed=3`` an int, ``flag=true`` a bool, and
    ``emotion=HAPPY`` or ``prompt_text=hello there`` a string (``x='"3"'`` for the string "3").
    """
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"not a parameter: {text!r} (try temperature=0.7)")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on escaped: ``"\\x1b[2J"`` for an ESC,
    ``"\\n"`` for a newline, ``"\\u202e"`` for a right-to-left override.

    Stored texts come from whoever asked for the synthesis; printed raw, an escape sequence in one
    could rewrite the screen, the window title or the clipboard of whoever runs ``ls``. Backslashes
    are left as they are, so an ordinary text reads as it was written.
    """
    return _UNPRINTABLE.sub(_escape_match, text)


def _escape_match(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def to_json(data: object) -> str:
    """``data`` as the indented JSON of ``--json``: readable, and safe to print on a terminal.

    Non-ASCII text stays as it is (``"世界"``, not ``"\\u4e16\\u754c"``), except what
    :func:`printable` escapes: JSON escapes the C0 controls itself, and the others (DEL, the C1
    controls, bidirectional overrides, line separators, lone surrogates) become ``\\u`` escapes
    here. They can only occur inside strings, so the JSON stays valid and reads back the same.
    """
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda match: f"\\u{ord(match[0]):04x}", text)


def _plural(count: int, noun: str) -> str:
    """``"1 segment"``, ``"2 segments"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_time(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    try:
        return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):  # an entry's time beyond the calendar
        return repr(stamp)


def _progress(enabled: bool, description: str) -> tuple[Callable[[int, int], None] | None, Any]:
    """A callback driving a tqdm bar on stderr (None when ``--json`` or not a terminal)."""
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=0, desc=description, unit="shard", leave=False, file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar


def _emit(args: argparse.Namespace, data: dict[str, Any], lines: Sequence[str]) -> None:
    if args.json:
        print(to_json(data))
    else:
        print("\n".join(lines))


# -- commands ---------------------------------------------------------------------------------


_DIRECTORY_STATS = ("entries", "bytes", "oldest", "newest", "temp_files", "blobs", "blob_bytes")


def cmd_stats(cache: SyncTTSCache, args: argparse.Namespace) -> int:
    update, bar = _progress(args.progress, "scanning")
    stats = cache.stats(update)
    if bar is not None:
        bar.close()
    # Only what the directory holds: the hits, misses and writes of ``stats()`` are this process's
    # traffic (always none here), and ``max_size_bytes`` this process's setting.
    found = {name: getattr(stats, name) for name in _DIRECTORY_STATS}
    total = stats.bytes + stats.blob_bytes
    found["total_bytes"] = total
    _emit(args, found | {"cache_dir": str(cache.cache_dir)}, [
        f"cache:    {cache.cache_dir}",
        f"entries:  {stats.entries}",
        f"size:     {format_size(stats.bytes)}",
        f"oldest:   {format_time(stats.oldest)} (least recently used)",
        f"newest:   {format_time(stats.newest)}",
        f"temp:     {stats.temp_files} temp files",
        f"blobs:    {stats.blobs} (stored responses), {format_size(stats.blob_bytes)}",
        f"total:    {format_size(total)}",
    ])  # fmt: skip
    return EXIT_OK


def cmd_verify(cache: SyncTTSCache, args: argparse.Namespace) -> int:
    update, bar = _progress(args.progress, "verifying")
    report = cache.verify(fix=args.fix, progress=update)
    if bar is not None:
        bar.close()
    verb = "removed" if args.fix else "found"
    lines = [f"checked {report.checked} entries"]
    # A foreign file's name is anybody's: printed as names are, escapes and all, it could
    # rewrite the terminal as a stored text could.
    lines += [f"corrupt entry {verb}: {printable(p)}" for p in report.corrupt]
    lines += [f"orphan temp file {verb}: {printable(p)}" for p in report.orphan_temp_files]
    lines += [f"empty directory {verb}: {printable(p)}" for p in report.empty_dirs]
    lines += [f"foreign file (left alone): {printable(p)}" for p in report.foreign_files]
    lines += [f"squatter at the cache's own path {verb}: {printable(p)}" for p in report.squatters]
    lines.append(
        "ok" if report.ok else ("repaired" if args.fix else "damage found: run verify --fix")
    )
    _emit(args, asdict(report) | {"ok": report.ok, "clean": report.clean}, lines)
    return EXIT_OK if report.ok or args.fix else EXIT_FAILED


def cmd_prune(cache: SyncTTSCache, args: argparse.Namespace) -> int:
    if args.max_size is None and args.max_age is None:
        print("prune needs --max-size and/or --max-age", file=sys.stderr)
        return EXIT_USAGE
    update, bar = _progress(args.progress, "pruning")
    report = cache.prune(args.max_size, args.max_age, update)
    if bar is not None:
        bar.close()
    _emit(args, asdict(report), [
        f"removed {report.entries} entries ({format_size(report.bytes)}), "
        f"{report.temp_files} temp files, {report.empty_dirs} empty directories"
    ])  # fmt: skip
    return EXIT_OK


def cmd_clear(cache: SyncTTSCache, args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            f"Remove every entry in {cache.cache_dir}? [y/N] ", end="", file=sys.stderr, flush=True
        )
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("not cleared", file=sys.stderr)
            return EXIT_FAILED
    if not cache.clear_cache():
        print("some entries could not be removed (see the log)", file=sys.stderr)
        return EXIT_FAILED
    print(f"cleared {cache.cache_dir}")
    return EXIT_OK


class _DamagedEntry(CorruptEntryError):
    """An entry file that is there but cannot be read as an entry (its path and why)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"damaged entry {path}: {reason} (verify --fix removes it)")


def _inspect(
    cache: SyncTTSCache, key: str, audio_format: str | None = None
) -> tuple[Entry, Path] | None:
    """``key``'s entry and its path, as :meth:`SyncTTSCache.inspect` reads it (in either format,
    or ``audio_format``'s); None if there is none.

    Read through ``inspect`` rather than the cache's readers, which treat a damaged entry as a miss
    and remove it: an inspection should say which file is damaged and why, and leave the removing
    to ``verify --fix``. Nor does it refresh the entry's recency (looking at an entry is not using
    it).

    Raises:
        InvalidKeyError: if ``key`` is not a key (bad usage, not a missing entry).
        _DamagedEntry: naming the file and what is wrong with it, if it is damaged.
    """
    found = cache.inspect(key, audio_format)
    if found is None:
        return None
    if found.entry is None:
        raise _DamagedEntry(Path(found.path), found.damage or "not a valid entry")
    return found.entry, Path(found.path)


def cmd_ls(cache: SyncTTSCache, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for info in cache.iter_entries():
        try:  # the listed file: a key may have an entry in each format
            found = _inspect(cache, info.key, layout.entry_extension(info.name))
        except _DamagedEntry as exc:  # one line each, and the listing goes on
            print(f"ls: {exc}", file=sys.stderr)
            continue
        if found is None:  # removed since the listing
            continue
        entry, _path = found
        if args.grep and args.grep.lower() not in entry.meta.text.lower():
            continue
        rows.append({
            "key": info.key, "bytes": info.size, "last_used": info.mtime,
            "seconds": len(entry.audio) / entry.meta.sample_rate, "text": entry.meta.text,
        })  # fmt: skip
        if args.limit and len(rows) >= args.limit:
            break
    if args.json:
        print(to_json(rows))
        return EXIT_OK
    for row in rows:
        text = printable(row["text"] if len(row["text"]) <= 60 else row["text"][:57] + "...")
        print(f"{row['key']}  {format_size(row['bytes']):>10}  {row['seconds']:6.1f}s  "
              f"{format_time(row['last_used'])}  {text}")  # fmt: skip
    return EXIT_OK


def _find_entry(cache: SyncTTSCache, key: str) -> tuple[Entry, Path] | None:
    """``key``'s entry and its path, in whichever format it was written (a directory does not
    record the format its entries were written in, and may hold both); None (said on stderr) if
    there is none.

    Raises:
        InvalidKeyError: if ``key`` is not a key (bad usage, not a missing entry).
        _DamagedEntry: if its file is damaged.
    """
    found = _inspect(cache, key)
    if found is None:
        print(f"no entry {key}", file=sys.stderr)
    return found


def cmd_show(cache: SyncTTSCache, args: argparse.Namespace) -> int:
    found = _find_entry(cache, args.key)
    if found is None:
        return EXIT_NOT_FOUND
    entry, entry_path = found
    meta = entry.meta
    seconds = len(entry.audio) / meta.sample_rate
    path = str(entry_path)
    data = asdict(meta) | {"samples": len(entry.audio), "seconds": seconds, "path": path}
    params = json.dumps(meta.params, ensure_ascii=False, sort_keys=True)
    _emit(args, data, [
        f"key:         {meta.key}",
        f"text:        {printable(meta.text)}",
        f"params:      {printable(params)}",
        f"audio:       {seconds:.2f} s at {meta.sample_rate} Hz ({len(entry.audio)} samples)",
        f"created:     {format_time(meta.created)}",
        f"path:        {path}",
    ])  # fmt: skip
    return EXIT_OK


def cmd_export(cache: SyncTTSCache, args: argparse.Namespace) -> int:
    import soundfile

    output: Path = args.output
    formats = export_formats()
    kind = formats.get(output.suffix.lower())
    if kind is None:
        names = list(formats)
        print(
            f"export: cannot tell the format of {str(output)!r}: give a name ending in "
            f"{', '.join(names[:-1])} or {names[-1]}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    found = _find_entry(cache, args.key)
    if found is None:
        return EXIT_NOT_FOUND
    entry, _path = found
    container, subtype = kind
    audio = entry.audio
    if subtype != "FLOAT":  # libsndfile wraps around outside [-1, 1) rather than clipping
        audio = np.clip(audio, -1.0, 32767 / 32768)
    rate = entry.meta.sample_rate
    try:
        _write_beside(
            output,
            lambda file: soundfile.write(file, audio, rate, subtype=subtype, format=container),
        )
    except (OSError, soundfile.SoundFileError) as exc:  # a full disk, no permission, MP3 at 96 kHz
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"export: cannot write {str(output)!r} as {container}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {output} ({len(audio) / rate:.2f} s)")
    return EXIT_OK


def export_formats() -> dict[str, tuple[str, str]]:
    """The extensions ``export`` writes, with their container and sample format: those of
    :data:`_EXPORT_FORMATS` the installed libsndfile supports, in that order."""
    import soundfile

    return {name: kind for name, kind in _EXPORT_FORMATS.items() if soundfile.check_format(*kind)}


def _write_beside(destination: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create ``destination`` anew: ``write`` fills a temp file beside it, renamed over it (the
    package's one atomic writer, :class:`~sparktts_cache._file.atomic.AtomicFile`).

    Whatever is at the destination is replaced, never written through: a symlink planted there
    (in a shared directory, say) cannot make the command overwrite the file it points to, and a
    FIFO cannot make it wait. A failed write leaves the destination as it was and no temp file.
    The new file gets the mode a plain create would give it (``0o666 & ~umask``).
    """
    dir_fd = os.open(destination.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        temp = f".sparktts-cache-{secrets.token_hex(8)}.tmp"
        with AtomicFile(dir_fd, temp, mode=0o666) as file:
            with os.fdopen(os.dup(file.fileno), "w+b") as stream:
                write(stream)
            file.publish(destination.name)
    finally:
        os.close(dir_fd)


def _read_text_file(path: Path) -> str:
    """The text of ``path`` as ``Path.read_text`` gives it, if it is a regular UTF-8 file of at
    most :data:`MAX_TEXT_FILE_BYTES`; ``-`` is standard input (read to the same bound).

    Raises:
        InvalidOptionError: naming the path and what is wrong with it.
    """
    if str(path) == "-":
        shown = "--file - (standard input)"
        data = sys.stdin.buffer.read(MAX_TEXT_FILE_BYTES + 1)
        if len(data) > MAX_TEXT_FILE_BYTES:
            raise InvalidOptionError(f"{shown} is larger than {MAX_TEXT_FILE_BYTES >> 20} MiB")
    else:
        shown = f"--file {str(path)!r}"
        data = read_regular_file(path, MAX_TEXT_FILE_BYTES, "--file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidOptionError(f"{shown} is not UTF-8 (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as read_text


def _synth_format(output: Path) -> tuple[str, str] | None:
    """The libsndfile container and sample format ``synth`` writes ``output`` in, by its
    extension: 16-bit PCM where the container takes it (WAV, FLAC, AIFF...), else the container's
    own (Vorbis for ``.ogg``, MPEG layer III for ``.mp3``); None if libsndfile writes no such
    container."""
    import soundfile

    container = output.suffix[1:].upper()
    if container in ("", "RAW") or container not in soundfile.available_formats():
        return None
    subtype = "PCM_16" if soundfile.check_format(container, "PCM_16") else None
    subtype = subtype or soundfile.default_subtype(container)
    return None if subtype is None else (container, subtype)


def _unwritable_output(output: Path) -> str | None:
    """Why ``synth`` could not write ``output``, checked before any synthesis; None if it can.

    The file is written beside itself and renamed over it (see :func:`_write_beside`), so what
    matters is its directory, and that nothing at the name is a directory.
    """
    shown = repr(str(output))
    if _synth_format(output) is None:
        return f"-o {shown}: cannot tell the format of the extension (try .wav or .flac)"
    directory = output.parent
    if not directory.is_dir():
        return f"-o {shown}: no such directory {str(directory)!r}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"-o {shown}: cannot write in {str(directory)!r} (permission denied or read-only)"
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(output).st_mode):
            return f"-o {shown} is a directory"
    return None


def cmd_synth(cache: SyncTTSCache, args: argparse.Namespace) -> int:
    """Synthesise through the cache, writing the output as segments arrive.

    Only a window of segments is in memory at once (see ``LongTextTTS.stream``), whatever the
    length of the text; the output file is checked before anything is synthesised, written into a
    temp file beside it and renamed over it at the end (never written through a symlink there).
    ``-o -`` streams a 16-bit WAV to standard output instead (see :func:`_stream_wav`), and the
    summary goes to stderr.
    """
    import anyio
    import soundfile

    from ._file.cache import TTSCache
    from ._text.long_text import LongTextTTS
    from ._text.segmenter import TextSegmenter
    from .engines import load_tts_model, with_fallbacks

    if args.file and args.text is not None:
        print("synth: give TEXT or --file, not both", file=sys.stderr)
        return EXIT_USAGE
    try:
        text = _read_text_file(args.file) if args.file else args.text
        segmenter = TextSegmenter(args.max_chars)
    except InvalidOptionError as exc:
        print(f"synth: {str(exc).replace('max_chars', '--max-chars', 1)}", file=sys.stderr)
        return EXIT_USAGE
    if text is None:
        print("synth: give TEXT or --file", file=sys.stderr)
        return EXIT_USAGE
    if not text.strip():
        source = f"--file {str(args.file)!r}" if args.file else "TEXT"
        print(f"synth: {source} is blank (only white space): nothing to say", file=sys.stderr)
        return EXIT_USAGE
    output: Path = args.output
    to_stdout = str(output) == "-"
    problem = _unwritable_stdout() if to_stdout else _unwritable_output(output)
    if problem is not None:
        print(f"synth: {problem}", file=sys.stderr)
        return EXIT_USAGE
    container, subtype = ("WAV", "PCM_16") if to_stdout else _synth_format(output) or ("", "")
    params = {k: v for k, v in (("gender", args.gender), ("pitch", args.pitch),
                                ("speed", args.speed), ("voice", args.voice))
              if v is not None}  # fmt: skip
    for name, value in args.param:
        if name in params:
            print(f"synth: parameter {name!r} given twice", file=sys.stderr)
            return EXIT_USAGE
        params[name] = value
    try:
        # A voice that spells Chinese, Japanese or Korean hands those sentences to eSpeak's.
        model = with_fallbacks(load_tts_model(args.engine))
    except InvalidOptionError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rate = model.sample_rate
    async_cache = TTSCache(cache.cache_dir, sample_rate=rate)
    long_text = LongTextTTS(model, cache=async_cache, segmenter=segmenter)
    # The one plan: the bar's total, then what runs.
    plan = anyio.run(long_text.plan, text, params, args.normalize)
    if not plan.segments:
        print("synth: the text has nothing to say once normalised (--no-normalize reads it as "
              "given)", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    check = getattr(model, "check", None)  # the text as it will be read: no voice for a script?
    if check is not None:
        try:
            check("\n".join(plan.segments))
        except InvalidParamsError as exc:
            print(f"synth: {exc}", file=sys.stderr)
            return EXIT_USAGE
    written = {"segments": 0, "samples": 0}

    def synthesise(write: Callable[[npt.NDArray[np.float32]], object]) -> None:
        async def run() -> None:
            from tqdm import tqdm

            with tqdm(total=len(plan.segments), unit="segment", disable=not args.progress,
                      file=sys.stderr) as bar:  # fmt: skip
                async for chunk in long_text.stream(plan):
                    # A blocking write of one segment (tens of milliseconds at most): nothing
                    # else runs on this loop.
                    write(chunk)
                    written["segments"] += 1
                    written["samples"] += len(chunk)
                    bar.set_postfix(synthesised=long_text.synthesis_count)
                    bar.update()

        anyio.run(run)

    def synthesise_into(file: BinaryIO) -> None:
        with soundfile.SoundFile(
            file, "w", samplerate=rate, channels=1, subtype=subtype, format=container
        ) as sound:
            synthesise(sound.write)

    began = time.perf_counter()
    try:
        if to_stdout:
            _stream_wav(sys.stdout.buffer, rate, synthesise)
        else:
            _write_beside(output, synthesise_into)
    except KeyboardInterrupt:  # the temp file is gone, the destination as it was
        return _interrupted(cache, plan)
    except BrokenPipeError:  # the reader of standard output went away: stop, as Unix tools do
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("synth: standard output was closed", file=sys.stderr)
        return EXIT_FAILED
    elapsed = time.perf_counter() - began
    # Segments are synthesised ahead of the one being written, so they are counted at the end:
    # a segment repeated in the text is synthesised once and counted cached after that.
    count, synthesised = written["segments"], long_text.synthesis_count
    cached = count - synthesised
    print(f"{_plural(count, 'segment')} in {elapsed:.2f} s: {cached} from the cache "
          f"({cached / max(1, count):.0%}), {synthesised} synthesised; wrote "
          f"{'standard output' if to_stdout else output} ({written['samples'] / rate:.1f} s of "
          "audio)", file=sys.stderr if to_stdout else sys.stdout)  # fmt: skip
    if args.expect_cached and synthesised:
        print("expected every segment to come from the cache", file=sys.stderr)
        return EXIT_NOT_CACHED
    return EXIT_OK


def _unwritable_stdout() -> str | None:
    """Why ``synth -o -`` should not write audio to standard output (a terminal); None if not."""
    if sys.stdout.isatty():
        return "-o -: standard output is a terminal; redirect it to a file or a player"
    return None


#: A 16-bit mono WAV header: RIFF size, sample rate, bytes a second, data size.
_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
#: The sizes of a WAV whose length is unknown when its header is written, as streamed WAV has.
_UNKNOWN_SIZE = 0xFFFFFFFF


def _stream_wav(
    out: BinaryIO, rate: int, synthesise: Callable[[Callable[[Any], object]], None]
) -> None:
    """Write a 16-bit mono WAV to ``out`` as ``synthesise`` hands over each segment's samples.

    The header goes first with the sizes unknown (``0xFFFFFFFF``, which players and ``sox`` read
    from a pipe), each segment is flushed as it comes, so a player hears the first sentence while
    the rest is made; where ``out`` can seek (a redirected file), the sizes are set at the end.
    """

    def header(data_bytes: int) -> bytes:
        riff = _UNKNOWN_SIZE if data_bytes == _UNKNOWN_SIZE else 36 + data_bytes
        return _WAV_HEADER.pack(b"RIFF", riff, b"WAVE", b"fmt ", 16, 1, 1, rate, 2 * rate, 2, 16,
                                b"data", data_bytes)  # fmt: skip

    out.write(header(_UNKNOWN_SIZE))
    size = 0

    def write(chunk: npt.NDArray[np.float32]) -> None:
        nonlocal size
        pcm = (np.clip(chunk, -1.0, 32767 / 32768) * 32768).round().astype("<i2").tobytes()
        out.write(pcm)
        out.flush()
        size += len(pcm)

    synthesise(write)
    out.flush()
    with contextlib.suppress(OSError):
        if out.seekable() and size <= _UNKNOWN_SIZE - 36:
            out.seek(0)
            out.write(header(size))
            out.seek(0, os.SEEK_END)
            out.flush()


def _interrupted(cache: SyncTTSCache, plan: Plan) -> int:
    """Say in one line how much of an interrupted ``synth`` is in the cache; exit 130.

    Counted in the cache, not from what the command had seen: what it synthesised is cached as
    it is made, so a second run reads all of it back and synthesises only the rest.
    """
    status = cache.get_cache_status(plan.segments, plan.key_params)
    cached = set(status.cached_keys)
    done = sum(key in cached for key in status.cache_keys)
    total = _plural(len(plan.segments), "segment")
    print(f"interrupted: {done} of {total} in the cache; run the same command again to resume",
          file=sys.stderr)  # fmt: skip
    return EXIT_INTERRUPTED


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sparktts-cache", description="Inspect, maintain and fill a sparktts_cache directory."
    )
    cache_dir_help = f"the cache directory (default: {default_cache_dir()})"
    parser.add_argument("--cache-dir", type=Path, default=None, help=cache_dir_help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Also after the command (``sparktts-cache stats --cache-dir DIR``): SUPPRESS leaves the value
    # given before it, or the default, when the command is not given one.
    after_command = argparse.ArgumentParser(add_help=False)
    after_command.add_argument(
        "--cache-dir", type=Path, default=argparse.SUPPRESS, help=cache_dir_help
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[..., int], help: str, json: bool = True) -> Any:
        sub = commands.add_parser(name, help=help, description=help, parents=[after_command])
        sub.set_defaults(handler=handler)
        if json:
            sub.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return sub

    command("stats", cmd_stats, "entries, size and age of the cache")
    command("verify", cmd_verify, "check every entry's checksum; report damage").add_argument(
        "--fix", action="store_true", help="remove corrupt entries, orphan temp files, empty dirs"
    )
    prune = command("prune", cmd_prune, "remove least recently used or old entries")
    prune.add_argument("--max-size", type=parse_size, help="shrink to this size (e.g. 2GB)")
    prune.add_argument(
        "--max-age", type=parse_duration, help="remove entries unused for (e.g. 30d)"
    )
    clear = command("clear", cmd_clear, "remove every entry", json=False)
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    ls = command("ls", cmd_ls, "list entries with their text")
    ls.add_argument("--grep", help="only entries whose text contains this (case-insensitive)")
    ls.add_argument(
        "--limit", type=count, default=0, help="list at most this many (default 0: all)"
    )
    command("show", cmd_show, "show one entry's metadata").add_argument("key")
    export = command(
        "export",
        cmd_export,
        "write one entry in the format of OUTPUT's extension: .wav (float32, bit-exact), .flac "
        "(16-bit), .ogg (Vorbis) or .mp3, as the installed libsndfile allows; a file or link at "
        "the destination is replaced, never written through",
        json=False,
    )
    export.add_argument("key")
    export.add_argument("output", type=Path)
    synth = command("synth", cmd_synth, "synthesise text through the cache", json=False)
    synth.add_argument("text", nargs="?", help="the text (or --file)")
    synth.add_argument(
        "--file", type=Path, help="read the text from this file (- for standard input)"
    )
    synth.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="the audio file to write (.wav or .flac: 16-bit; other extensions libsndfile "
        "writes); written as segments arrive, renamed into place at the end; - for standard "
        "output (a 16-bit WAV, each segment flushed as it is ready)",
    )
    synth.add_argument(
        "--engine",
        default="espeak",
        help=f"one of {', '.join(engine_names())}, or NAME:ARGUMENT (espeak:en-us, "
        "spark:<model_dir>), or a Spark-TTS model directory (default: espeak)",
    )
    synth.add_argument("--gender", choices=GENDERS)
    synth.add_argument("--pitch", choices=LEVELS)
    synth.add_argument("--speed", choices=LEVELS)
    synth.add_argument(
        "--voice",
        help="an eSpeak voice (en, en-us, cmn, ja...) for every segment (default: each segment's "
        "by its script: Chinese cmn, English en); a parameter like the others, in the cache key",
    )
    synth.add_argument(
        "--param",
        type=parse_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another TTS parameter, repeatable (JSON if it parses, else a string: "
        "temperature=0.7, top_k=50, emotion=HAPPY); the engine gets the ones it takes, and all "
        "count in the cache key",
    )
    synth.add_argument("--max-chars", type=int, default=200, help="longest segment (default 200)")
    synth.add_argument(
        "--expect-cached",
        action="store_true",
        help=f"exit {EXIT_NOT_CACHED} if any segment had to be synthesised",
    )
    synth.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="speak Markdown as its words, URLs as their domain, without emoji; "
        "--no-normalize reads the text as given (default: on)",
    )
    from . import server  # its dependencies are imported only when it starts

    serve_help = "run the OpenAI-compatible speech server (pip install 'sparktts_cache[server]')"
    server.add_arguments(command("serve", server.main, serve_help, json=False), parse_size)
    return parser


def unusable_cache_dir(path: Path, *, to_write: bool) -> str | None:
    """Why ``path`` cannot be the cache directory, naming the path at fault; None if it can.

    It cannot if it is not a directory, or lies under something that is not one. With
    ``to_write``, it must also be writable, or, if it does not exist yet, its nearest existing
    ancestor must be (where it will be created). Checked once, up front: otherwise every entry
    read or written fails on its own, each with a warning naming a shard (``'2b'``), and a
    ``synth`` would synthesise the whole text for nothing. A directory that does not exist is fine
    for reading: it is an empty cache.
    """
    existing = path
    while True:
        try:
            st = existing.stat()
            break
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            if existing.parent == existing:
                return None  # not even the root can be looked at: let the command say
            existing = existing.parent
        except OSError as exc:  # a symlink loop, a name too long
            return f"cannot use {str(path)!r} as the cache directory: {exc.strerror}"
    shown, culprit = repr(str(path)), repr(str(existing))
    if not stat.S_ISDIR(st.st_mode):
        if existing == path:
            return f"the cache directory {shown} is not a directory"
        return f"cannot use {shown} as the cache directory: {culprit} is not a directory"
    if to_write and not os.access(existing, os.W_OK | os.X_OK):
        if existing == path:
            return f"the cache directory {shown} is not writable (permission denied)"
        return f"cannot create the cache directory {shown}: no permission to write in {culprit}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.progress = not getattr(args, "json", False) and sys.stderr.isatty()
    try:
        cache = SyncTTSCache(args.cache_dir)
        problem = unusable_cache_dir(cache.cache_dir, to_write=args.command == "synth")
        if problem is not None:
            print(f"sparktts-cache: {problem}", file=sys.stderr)
            return EXIT_USAGE
        result: int = args.handler(cache, args)
    except KeyboardInterrupt:  # synth says how far it got; the others have nothing to resume
        print("sparktts-cache: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _DamagedEntry as exc:  # show, export
        print(f"sparktts-cache: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except _USAGE_ERRORS as exc:  # a wrong key, engine, option or parameter; not the cache's
        print(f"sparktts-cache: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CacheError, OSError, ValueError, ImportError) as exc:
        print(f"sparktts-cache: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return result
