"""Currency, ISO dates, ranges and unit symbols spelled out for eSpeak NG's English front end.

The unit tests pin the rewriting; the tests with the real Piper voice (without noise, so it is
deterministic) show that a raw text is read exactly as the words written out: byte-identical audio.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktts_cache import load_tts_model
from sparktts_cache.engines import PiperModel
from sparktts_cache.engines._spoken_numbers import FRONT_END_VERSION, applies_to, spell_for_espeak
from sparktts_cache.engines.piper import bundled_voice

from .helpers import best_time

QUIET: dict[str, Any] = {"noise_scale": 0.0, "noise_w_scale": 0.0}  # Piper is deterministic then


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It costs $5.50.", "It costs 5 dollars and 50 cents."),
        ("$5", "5 dollars"),
        ("$1", "1 dollar"),
        ("$1.00", "1 dollar"),
        ("$0.99", "99 cents"),
        ("$0.01", "1 cent"),
        ("$1,234.56", "1,234 dollars and 56 cents"),
        ("$5.5", "5.5 dollars"),
        ("$1.2 million", "1.2 million dollars"),
        ("$3 billion", "3 billion dollars"),
        # a range of amounts: each bound said with its currency and magnitude (the lower bound
        # of "$5-10 million" was "5 dollars")
        ("$5-10 million", "5 million dollars to 10 million dollars"),
        ("€2–3 billion", "2 billion euros to 3 billion euros"),
        ("$1,000-$2,000", "1,000 dollars to 2,000 dollars"),
        ("$10-20", "10 dollars to 20 dollars"),
        ("£3-4.50", "3 pounds to 4 pounds and 50 pence"),
        ("5-10 million people", "5 to 10 million people"),
        ("-$5", "-5 dollars"),
        ("€5.50", "5 euros and 50 cents"),
        ("€1,000", "1,000 euros"),
        ("£5.50", "5 pounds and 50 pence"),
        ("£1.01", "1 pound and 1 penny"),
        ("¥500", "500 yen"),
        ("$10-$20", "10 dollars to 20 dollars"),
        ("2024-05-01", "May 1st, 2024"),
        ("on 2024-12-22.", "on December 22nd, 2024."),
        ("2025-01-13", "January 13th, 2025"),
        ("2024-03-03", "March 3rd, 2024"),
        ("10-20", "10 to 20"),
        ("a 2-3 day trip", "a 2 to 3 day trip"),
        ("5–10", "5 to 10"),
        ("1990 – 1995", "1990 to 1995"),
        ("10-20 km", "10 to 20 kilometres"),
        ("10 km", "10 kilometres"),
        ("10km", "10 kilometres"),
        ("1 km", "1 kilometre"),
        ("0.5 kg", "0.5 kilograms"),
        ("1,500 km", "1,500 kilometres"),
        ("3 cm", "3 centimetres"),
        ("4 mm", "4 millimetres"),
        ("20 mg", "20 milligrams"),
        ("50 ml", "50 millilitres"),
        ("10 m/s", "10 metres per second"),
        ("100 km/h", "100 kilometres per hour"),
        ("60 mph", "60 miles per hour"),
        ("25 °C", "25 degrees Celsius"),
        ("1°F", "1 degree Fahrenheit"),
        ("16 GB", "16 gigabytes"),
        ("500 MB", "500 megabytes"),
        ("64 kB", "64 kilobytes"),
        ("2 TB", "2 terabytes"),
        ("50 Hz", "50 hertz"),
        ("20 kHz", "20 kilohertz"),
        ("5 kW", "5 kilowatts"),
        ("10 kWh", "10 kilowatt hours"),
        ("200 ms", "200 milliseconds"),
        ("1 lb", "1 pound"),
    ],
)
def test_rewrites(text: str, expected: str) -> None:
    assert spell_for_espeak(text) == expected
    assert spell_for_espeak(expected) == expected  # idempotent: the words are left alone


@pytest.mark.parametrize(
    "text",
    [
        # eSpeak reads these right already: numbers, decimals, negatives, times, ordinals, years
        "version 2.0", "call 555-1234", "in 2024", "at 12:30", "3rd", "21st", "25%", "-5",
        "-3.5", "3.14", "1,000,000", "3 GHz", "100 MHz", "10 lbs", "45°",
        # ambiguous or not one of the forms: left as written
        "05/01/2024", "1-800-555-1234", "2024-02-30", "2024-05-01T10:00", "3-1", "10 - 20",
        "1-100", "$", "US$5", "$1,2345", "5 m", "kms", "5 kmh", "10 km2", "an mm", "",
    ],
)  # fmt: skip
def test_left_unchanged(text: str) -> None:
    assert spell_for_espeak(text) == text


def test_english_voices_only() -> None:
    assert applies_to("en-us") and applies_to("en-gb-x-rp") and applies_to("EN")
    assert not applies_to("de") and not applies_to("cmn") and not applies_to("")


@pytest.mark.parametrize(
    "hostile",
    ["$" * 200_000, "1-" * 100_000, "1" * 200_000, "$1" * 100_000, "1," * 100_000,
     "1.1-" * 50_000, "$1,000" * 33_334, "2024-05-" * 25_000, "1 km" * 50_000, "1–" * 100_000,
     "9" * 199_998 + " km", "1,000" * 40_000 + " kg", "°C1" * 66_667],
    ids=lambda s: repr(s[:6]),
)  # fmt: skip
def test_linear_time_on_hostile_input(hostile: str) -> None:
    """200,000 hostile characters cost a bounded multiple of rewriting plain prose of the same
    length in the same run, where a quadratic pass would take thousands of times more."""
    prose = ("The quick brown fox jumps over the lazy dog, and then it rests. " * 4000)[:200_000]
    baseline = best_time(2, lambda: spell_for_espeak(prose))
    hostile_time = best_time(1, lambda: spell_for_espeak(hostile))
    assert hostile_time <= 300 * baseline, (hostile_time, baseline)


# -- with the real Piper voice -------------------------------------------------------------------


@pytest.fixture(scope="module")
def joe() -> Iterator[PiperModel]:
    model = load_tts_model("piper")
    assert isinstance(model, PiperModel)
    yield model


#: A raw text and the words it must be read as. Where eSpeak reads a number differently from its
#: words (it runs "two hundred" together, stresses "point" less), the number stays in digits.
READ_AS = [
    ("It costs $5.50.", "It costs five dollars and fifty cents."),
    ("It costs $1.", "It costs one dollar."),
    ("It costs $0.99.", "It costs ninety nine cents."),
    ("It costs $2,025.50.", "It costs two thousand twenty five dollars and fifty cents."),
    ("They raised $1.2 million.", "They raised 1.2 million dollars."),
    ("They raised $3 billion.", "They raised three billion dollars."),
    ("It costs €5.50.", "It costs five euros and fifty cents."),
    ("It costs £1.01.", "It costs one pound and one penny."),
    ("It costs ¥50.", "It costs fifty yen."),
    ("It costs $10-$20.", "It costs ten dollars to twenty dollars."),
    ("It opens on 2024-05-01.", "It opens on May first, two thousand twenty four."),
    ("It opens on 2024-12-22.", "It opens on December twenty second, two thousand twenty four."),
    ("Wait 10-20 minutes.", "Wait ten to twenty minutes."),
    ("Wait 5–10 minutes.", "Wait five to ten minutes."),
    ("Drive 1 km.", "Drive one kilometre."),
    ("Walk 10-20 km.", "Walk ten to twenty kilometres."),
    ("It weighs 5 kg.", "It weighs five kilograms."),
    ("It is 3 cm long.", "It is three centimetres long."),
    ("It is 4 mm thick.", "It is four millimetres thick."),
    ("Take 20 mg.", "Take twenty milligrams."),
    ("Add 50 ml.", "Add fifty millilitres."),
    ("Wind at 10 m/s.", "Wind at ten metres per second."),
    ("Drive at 90 km/h.", "Drive at ninety kilometres per hour."),
    ("Drive at 60 mph.", "Drive at sixty miles per hour."),
    ("It is 25 °C.", "It is twenty five degrees Celsius."),
    ("It is 77°F.", "It is seventy seven degrees Fahrenheit."),
    ("It has 16 GB.", "It has sixteen gigabytes."),
    ("It has 64 MB.", "It has sixty four megabytes."),
    ("It has 64 kB.", "It has sixty four kilobytes."),
    ("It has 2 TB.", "It has two terabytes."),
    ("It hums at 50 Hz.", "It hums at fifty hertz."),
    ("It plays 20 kHz.", "It plays twenty kilohertz."),
    ("It draws 5 kW.", "It draws five kilowatts."),
    ("It used 10 kWh.", "It used ten kilowatt hours."),
    ("It took 20 ms.", "It took twenty milliseconds."),
    ("It weighs 1 lb.", "It weighs one pound."),
]


@pytest.mark.parametrize(("raw", "words"), READ_AS, ids=[raw for raw, _ in READ_AS])
def test_piper_reads_the_form_as_words(joe: PiperModel, raw: str, words: str) -> None:
    assert joe.spells_numbers
    phonemes = joe._voice.phonemize
    assert phonemes(raw) != phonemes(words)  # eSpeak's own reading of the form is another
    assert phonemes(spell_for_espeak(raw)) == phonemes(words)
    np.testing.assert_array_equal(joe.inference(raw, **QUIET), joe.inference(words, **QUIET))


@pytest.mark.parametrize(
    ("text", "words"),
    [("Version 2.0 is out.", "Version two point zero is out."),
     ("Meet at 12:30.", "Meet at twelve thirty."),
     ("He came 3rd.", "He came third."),
     ("It rose 25%.", "It rose twenty five percent."),
     ("It fell to -5.", "It fell to minus five."),
     ("It runs at 3 GHz.", "It runs at three gigahertz.")],
)  # fmt: skip
def test_piper_reads_the_forms_left_alone_as_words(joe: PiperModel, text: str, words: str) -> None:
    """What the rewriting leaves to eSpeak, eSpeak reads as words by itself (the same phonemes;
    stress aside: it stresses the "point" of a decimal less than the word)."""
    assert spell_for_espeak(text) == text

    def unstressed(said: str) -> list[str]:
        return [p for sentence in joe._voice.phonemize(said) for p in sentence if p not in "ˈˌ"]

    assert unstressed(text) == unstressed(words)


def test_the_front_end_version_is_in_the_identity(joe: PiperModel) -> None:
    assert isinstance(FRONT_END_VERSION, int)
    assert joe.cache_identity["front_end"] == FRONT_END_VERSION


def test_a_voice_in_another_language_is_not_rewritten(tmp_path: Path) -> None:
    model_path, config_path = bundled_voice()
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    config["espeak"]["voice"] = "de"
    german_config = tmp_path / "de.onnx.json"
    german_config.write_text(json.dumps(config), encoding="utf-8")
    german = PiperModel(model_path, config_path=german_config)
    assert not german.spells_numbers
    raw, words = "$5.50 ist 10 km weit.", "5 dollars and 50 cents ist 10 kilometres weit."
    assert not np.array_equal(german.inference(raw, **QUIET), german.inference(words, **QUIET))


#: (raw, the words the rewrite gives, what eSpeak NG said before it): eSpeak's own synthesis reads
#: the forms as Piper's phonemizer does. Its length varies by a few samples from run to run
#: (0.05 % here), so the forms are compared by length: the raw text now lasts as its words, not
#: as its old reading.
ESPEAK_FORMS = [
    ("It costs $5.50 today.", "It costs 5 dollars and 50 cents today.",
     "It costs dollar five point five zero today."),
    ("It is 10 km away.", "It is 10 kilometres away.", "It is ten K M away."),
    ("On 2024-05-01 we met.", "On May 1st, 2024 we met.",
     "On two thousand twenty four dash zero five dash zero one we met."),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "words", "before"), ESPEAK_FORMS)
def test_espeak_reads_the_form_as_words(raw: str, words: str, before: str) -> None:
    espeak = load_tts_model("espeak")
    raw_length, words_length, before_length = (
        len(espeak.inference(text)) for text in (raw, words, before)
    )
    assert abs(raw_length - words_length) < 0.01 * words_length, (raw_length, words_length)
    assert abs(raw_length - before_length) > 0.05 * before_length, (raw_length, before_length)
    identity = getattr(espeak, "cache_identity", {})
    assert identity["front_end"] == FRONT_END_VERSION
