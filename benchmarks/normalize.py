"""Speech-ready text: how much shorter LLM-style Markdown answers are spoken, and the hit rate of
formatting variants of one answer.

Command: ``.venv/bin/python -m benchmarks.normalize`` (a few seconds with eSpeak NG; prints the
figures and writes ``benchmarks/results/normalize.json``).

Each answer is synthesised by ``LongTextTTS`` with the espeak engine twice, as given
(``normalize=False``: the voice reads the Markdown markers, the URLs character by character,
the emoji's names) and normalised; the figure is seconds of audio and their ratio. Then the plain
answer is synthesised normalised, and its formatting variants (bold, inline code, a list, a
heading, a link, emoji) are planned: the hit rate is the share of their segments already cached,
normalised and as given.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import anyio

from sparktts_cache import LongTextTTS, TextSegmenter, load_tts_model

RESULTS = Path(__file__).resolve().parent / "results" / "normalize.json"

ANSWERS = {
    "install steps": (
        "## Installing the package\n\n"
        "Sure! Here's how to install it 🚀:\n\n"
        "1. Create a **virtual environment** with `python -m venv .venv`.\n"
        "2. Run `pip install sparktts-cache`.\n"
        "3. Check the docs at https://github.com/example/sparktts-cache/blob/main/README.md.\n\n"
        "```bash\npython -m venv .venv\n.venv/bin/pip install sparktts-cache\n```\n\n"
        "If anything fails, email support@example.com. Happy coding! 🎉"
    ),
    "comparison table": (
        "### Quick comparison\n\n"
        "| Option | Speed | Cost |\n|---|---|---|\n"
        "| **Local** | fast ⚡ | free |\n| *Cloud* | slower | paid 💰 |\n\n"
        "> **Note:** prices at https://www.example.com/pricing?plan=pro&ref=chat change often.\n\n"
        "- ✅ Local keeps your data at home.\n- ❌ Cloud needs an account."
    ),
    "explanation": (
        "Great question! 😊 The cache stores **each sentence once**, keyed by its text and the "
        "voice's parameters.\n\n"
        "* When you ask again, the audio is *read from disk* instead of synthesised.\n"
        "* See [the format](https://example.com/docs/format.md#entries) for details.\n\n"
        "In short: `same text` + `same voice` → **same audio**. 👍"
    ),
}

PLAIN = "The cache keeps every sentence. It never synthesises one twice. Each voice has its own."
VARIANTS = [
    "**The cache** keeps every sentence. It never synthesises *one* twice. Each voice has its own.",
    "The `cache` keeps every sentence.\n\nIt never synthesises one twice.\n\nEach voice has its own.",  # noqa: E501
    "- The cache keeps every sentence.\n- It never synthesises one twice.\n- Each voice has its own.",  # noqa: E501
    "# The cache keeps every sentence\n\nIt never synthesises one twice. Each voice has its own. 🎉",  # noqa: E501
    "The [cache](https://example.com) keeps every sentence. It never synthesises one twice. "
    "Each voice has its own.",
]


async def measure() -> dict[str, object]:
    model = load_tts_model("espeak")
    rate = model.sample_rate
    with tempfile.TemporaryDirectory() as directory:
        # One segment per sentence, so a variant's hits are counted sentence by sentence.
        segmenter = TextSegmenter(max_chars=60)
        tts = LongTextTTS(model, cache_dir=directory, segmenter=segmenter)
        answers = {}
        for name, text in ANSWERS.items():
            as_given, _ = await tts.generate(await tts.plan(text, normalize=False))
            normalised, _ = await tts.generate(await tts.plan(text, normalize=True))
            answers[name] = {
                "as_given_seconds": round(len(as_given) / rate, 2),
                "normalised_seconds": round(len(normalised) / rate, 2),
                "ratio": round(len(normalised) / len(as_given), 2),
            }
        hits = {}
        for normalize in (True, False):
            await tts.generate(await tts.plan(PLAIN, normalize=normalize))
            plans = [await tts.plan(variant, normalize=normalize) for variant in VARIANTS]
            cached = sum(plan.cached_segments for plan in plans)
            total = sum(len(plan.segments) for plan in plans)
            hits["normalised" if normalize else "as_given"] = {
                "cached_segments": cached, "segments": total, "hit_rate": round(cached / total, 2)
            }  # fmt: skip
    return {"engine": "espeak", "answers": answers, "formatting_variants": hits}


def main() -> None:
    result = anyio.run(measure)
    print(json.dumps(result, indent=2))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
