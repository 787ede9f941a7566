"""The neural engines side by side: Kokoro beside Piper, on the same English text.

Command: ``.venv/bin/python -m benchmarks.engines`` (about a minute; prints a table and writes
``benchmarks/results/engines.json``). ``--repeats N`` sets the timed runs (default 3).

Each engine runs in a process of its own, so that neither's memory counts in the other's: the
process loads the model (``load_tts_model(name)``, its bundled voice, one onnxruntime thread),
synthesises the text once to warm up, then times ``inference`` on each of its sentences, as
``LongTextTTS`` calls it. Figures: the load time; the real-time factor (synthesis time / audio
duration, the median of the runs; under 1 is faster than real time); the resident memory (RSS)
before the model, with it loaded, and at its peak after synthesis. Then, through the speech
server (``serve --engine NAME``, a fresh cache, ``stream_format`` audio, 16-bit PCM): the time
to the first byte of audio for the text never heard (its first sentence changed each run), and
for the same request again (a stored response), the median of the runs each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "engines.json"
ENGINES = ("piper", "kokoro")
TEXT = (
    "The cache keeps every sentence it has heard. When the same words come back, the audio is "
    "read from disk instead of synthesised again. A neural voice takes a noticeable share of a "
    "second for each sentence on a small machine, so a reader who asks twice waits only once. "
    "Every entry is keyed by its text, its voice and its parameters."
)


def rss_bytes() -> int:
    """This process's resident set size now (Linux), else its peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def measure(engine: str, repeats: int) -> dict[str, Any]:
    """One engine's figures, in this process (called in a child of :func:`main`)."""
    from sparktts_cache import TextSegmenter, load_tts_model

    sentences = TextSegmenter().segment_text(TEXT)
    before = rss_bytes()
    start = time.perf_counter()
    model = load_tts_model(engine)
    load_seconds = time.perf_counter() - start
    loaded = rss_bytes()
    audio_seconds = sum(len(model.inference(s)) for s in sentences) / model.sample_rate  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for sentence in sentences:
            model.inference(sentence)
        runs.append(time.perf_counter() - start)
    synthesis = statistics.median(runs)
    return {
        "engine": engine,
        "sample_rate": model.sample_rate,
        "sentences": len(sentences),
        "characters": len(TEXT),
        "load_seconds": load_seconds,
        "audio_seconds": audio_seconds,
        "synthesis_seconds": runs,
        "rtf": synthesis / audio_seconds,
        "rss_before_model": before,
        "rss_model_loaded": loaded,
        "rss_peak": peak_rss_bytes(),
    }


async def first_audio(engine: str, repeats: int) -> dict[str, Any]:
    """Seconds to the first byte of audio through ``serve --engine engine``: uncached, cached."""
    from .server import Connection, running_server

    uncached: list[float] = []
    cached: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        async with running_server(Path(directory), engine, "--engine", engine) as address:
            for run in range(repeats + 1):  # the first warms the engine up
                body = {"model": "tts-1", "voice": "alloy", "response_format": "pcm",
                        "input": f"Request number {run} begins here. {TEXT}"}  # fmt: skip
                for times in (uncached, cached):
                    connection = await Connection.open(address)
                    try:
                        seconds = await connection.first_byte("POST", "/v1/audio/speech", body)
                    finally:
                        await connection.close()
                    if run:
                        times.append(seconds)
    return {
        "first_audio_uncached_seconds": statistics.median(uncached),
        "first_audio_cached_seconds": statistics.median(cached),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", choices=ENGINES, help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.repeats)))
        return
    rows = []
    for engine in ENGINES:
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.engines",
                "--one",
                engine,
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row | asyncio.run(first_audio(engine, args.repeats)))
    mib = 2**20
    print(
        f"{'engine':<8} {'rate':>6} {'load s':>7} {'audio s':>8} {'RTF':>6} "
        f"{'RSS base':>9} {'RSS model':>10} {'RSS peak':>9} {'1st audio':>10} {'cached':>8}"
    )
    for row in rows:
        print(
            f"{row['engine']:<8} {row['sample_rate']:>6} {row['load_seconds']:>7.2f} "
            f"{row['audio_seconds']:>8.2f} {row['rtf']:>6.3f} "
            f"{row['rss_before_model'] / mib:>7.0f}Mi {row['rss_model_loaded'] / mib:>8.0f}Mi "
            f"{row['rss_peak'] / mib:>7.0f}Mi "
            f"{row['first_audio_uncached_seconds']:>9.3f}s "
            f"{row['first_audio_cached_seconds'] * 1000:>6.1f}ms"
        )
    result = {"text": TEXT, "repeats": args.repeats, "cpus": os.cpu_count(), "engines": rows}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
