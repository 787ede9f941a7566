"""Currency, ISO dates, number ranges and unit symbols as words, for eSpeak NG's English front end.

eSpeak NG (which Piper phonemizes with) reads plain numbers, decimals, negative numbers, times
(``12:30``), ordinals (``3rd``), years and ``25%`` as words already. Measured with its phoneme
output (Piper's ``phonemize`` and eSpeak NG 1.52's own synthesis, alike), it misreads:

- currency: ``$5.50`` is "dollar five point five zero", ``€1,000`` "euros one thousand",
  ``£1`` "pound one", ``¥500`` "yen five hundred", ``$1.2 million`` "dollar one point two million";
- ISO dates: ``2024-05-01`` is "two thousand twenty four dash zero five dash zero one";
- ranges: ``10-20`` is "ten dash twenty";
- unit symbols after a number, spelled letter by letter: ``10 km`` is "ten K M" (km, kg, cm, mm,
  mg, ml, m/s, km/h, mph, GB, MB, kB, TB, Hz, kHz, kW, kWh, ms, lb), and ``25 °C`` is
  "twenty five degrees C".

:func:`spell_for_espeak` rewrites those forms, and only those, into digits and words that eSpeak
reads right (``$5.50`` -> ``5 dollars and 50 cents``): the digits stay, eSpeak says them. What is
ambiguous is left as written: ``05/01/2024`` (May or January), ``555-1234`` (a phone number),
``2.0``. English only: :func:`applies_to` says whether an eSpeak voice is one. Every pattern is
anchored by a look-behind and scans each character a bounded number of times: linear in the text.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable

__all__ = ["FRONT_END_VERSION", "applies_to", "spell_for_espeak"]

#: Bumped whenever the rewriting changes: it is in the Piper engine's cache identity, so audio of
#: the old reading is not served for the new one.
FRONT_END_VERSION = 1

# symbol: (unit, units, sub-unit, sub-units); None: no sub-unit is said (yen)
_CURRENCIES: dict[str, tuple[str, str, str, str] | None] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": None,
}
# symbol: (singular, plural); symbols eSpeak reads right (GHz, MHz, %, lbs) are not here
_UNITS: dict[str, tuple[str, str]] = {
    "km/h": ("kilometre per hour", "kilometres per hour"),
    "m/s": ("metre per second", "metres per second"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "km": ("kilometre", "kilometres"),
    "kg": ("kilogram", "kilograms"),
    "cm": ("centimetre", "centimetres"),
    "mm": ("millimetre", "millimetres"),
    "mg": ("milligram", "milligrams"),
    "ml": ("millilitre", "millilitres"),
    "mL": ("millilitre", "millilitres"),
    "mph": ("mile per hour", "miles per hour"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "° C": ("degree Celsius", "degrees Celsius"),
    "° F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "GB": ("gigabyte", "gigabytes"),
    "MB": ("megabyte", "megabytes"),
    "kB": ("kilobyte", "kilobytes"),
    "KB": ("kilobyte", "kilobytes"),
    "TB": ("terabyte", "terabytes"),
    "kHz": ("kilohertz", "kilohertz"),
    "Hz": ("hertz", "hertz"),
    "kW": ("kilowatt", "kilowatts"),
    "ms": ("millisecond", "milliseconds"),
    "lb": ("pound", "pounds"),
}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip

# A number ends where no digit, letter or decimal part follows.
_END = r"(?![\w-]|[.,]\d)"
_NUMBER = r"\d+(?:\.\d+)?"

_ISO_DATE = re.compile(r"(?<![\w-])(\d{4})-(\d{2})-(\d{2})" + _END)
_GROUPED = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?"  # 1,000 or 1,000.50
_MAGNITUDE = r"(?:[ \u00a0](thousand|million|billion|trillion)\b)?"
_RANGE = re.compile(
    rf"(?<![\w.,$€£¥-])([$€£¥]?)({_GROUPED}|{_NUMBER})(-|[ \u00a0]?–[ \u00a0]?)"
    rf"([$€£¥]?)({_GROUPED}|{_NUMBER})(?![\w-]|[.,]\d){_MAGNITUDE}" + _END
)
_MONEY = re.compile(
    r"(?<![\w$€£¥])([$€£¥])[ \u00a0]?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?"
    r"(?:[ \u00a0](thousand|million|billion|trillion)\b)?(?!\w|[.,]\d)"
)
_UNIT = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|"
    + _NUMBER
    + r")[ \u00a0\u202f]?("
    + "|".join(re.escape(symbol) for symbol in _UNITS)  # longest first: km/h before km
    + r")(?![\w/])"
)


def applies_to(espeak_voice: str) -> bool:
    """Whether :func:`spell_for_espeak` is for text read by this eSpeak voice (English ones)."""
    return espeak_voice.lower().startswith("en")


def spell_for_espeak(text: str) -> str:
    """``text`` with currency, ISO dates, number ranges and unit symbols written as eSpeak NG's
    English front end reads them right; everything else unchanged.

    ``$5.50`` -> ``5 dollars and 50 cents``, ``$1.2 million`` -> ``1.2 million dollars``,
    ``2024-05-01`` -> ``May 1st, 2024``, ``10-20`` -> ``10 to 20``, ``1 km`` -> ``1 kilometre``.
    """
    for pattern, replace in _PASSES:
        text = pattern.sub(replace, text)
    return text


def _iso_date(match: re.Match[str]) -> str:
    year, month, day = (int(part) for part in match.groups())
    try:
        datetime.date(year, month, day)
    except ValueError:
        return match.group()
    return f"{_MONTHS[month - 1]} {_ordinal(day)}, {match.group(1)}"


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _range(match: re.Match[str]) -> str:
    first_symbol, first, dash, second_symbol, second, magnitude = match.groups()
    if dash == "-":  # a hyphen is a range only when it reads as one: 5-10, 10-20, 100-200
        low, high = first.replace(",", ""), second.replace(",", "")
        if float(low) >= float(high) or len(high.split(".")[0]) > len(low.split(".")[0]) + 1:
            return match.group()
        if "." not in first + second and (len(first), len(second)) == (3, 4):  # 555-1234
            return match.group()
    symbol = first_symbol or second_symbol
    if symbol:  # each bound an amount, so each is said with its currency and magnitude:
        # "$5-10 million" is "5 million dollars to 10 million dollars", never "5 dollars to..."
        scale = f" {magnitude}" if magnitude else ""
        return f"{symbol}{first}{scale} to {symbol}{second}{scale}"
    return f"{first} to {second}" + (f" {magnitude}" if magnitude else "")


def _money(match: re.Match[str]) -> str:
    symbol, whole, fraction, magnitude = match.groups()
    names = _CURRENCIES[symbol]
    unit, units = ("yen", "yen") if names is None else names[:2]
    if magnitude:
        amount = whole if fraction is None else f"{whole}.{fraction}"
        return f"{amount} {magnitude} {units}"
    if fraction is not None and (names is None or len(fraction) != 2):
        return f"{whole}.{fraction} {units}"
    whole_said = f"{whole} {unit if whole == '1' else units}"
    if names is None or fraction is None or int(fraction) == 0:
        return whole_said
    cents = int(fraction)
    cents_said = f"{cents} {names[2] if cents == 1 else names[3]}"
    return cents_said if int(whole.replace(",", "")) == 0 else f"{whole_said} and {cents_said}"


def _unit(match: re.Match[str]) -> str:
    number, symbol = match.groups()
    singular, plural = _UNITS[symbol]
    return f"{number} {singular if number == '1' else plural}"


_PASSES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (_ISO_DATE, _iso_date),
    (_RANGE, _range),
    (_MONEY, _money),
    (_UNIT, _unit),
)
