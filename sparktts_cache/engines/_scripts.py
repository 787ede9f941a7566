"""Which writing system a text is in, for engines that read each script with its own voice.

Only the scripts that an English-speaking front end spells letter by letter are named: Han, kana
and Hangul. Anything else (Latin, digits, punctuation, Cyrillic...) is ``None`` here: the
engine's own voice reads it.
"""

from __future__ import annotations

import re

__all__ = ["SCRIPTS", "SCRIPT_LANGUAGES", "script_of", "scripts_of_espeak_voice"]

#: The scripts told apart, in the order a text is tested: a text with kana is Japanese even if it
#: also has Han; one with Hangul is Korean; one with Han only is Chinese.
SCRIPTS: tuple[str, ...] = ("kana", "hangul", "han")
#: The language (ISO 639-1) a text of each script is read in.
SCRIPT_LANGUAGES: dict[str, str] = {"kana": "ja", "hangul": "ko", "han": "zh"}
_PATTERNS = {
    "kana": re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]"),
    "hangul": re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]"),
    "han": re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"),
}


def script_of(text: str) -> str | None:
    """``"kana"``, ``"hangul"`` or ``"han"``: the first of :data:`SCRIPTS` found in ``text``;
    None for a text in none of them."""
    for script in SCRIPTS:
        if _PATTERNS[script].search(text):
            return script
    return None


#: eSpeak NG's language names whose voices read a script of :data:`SCRIPTS` (Mandarin, Cantonese,
#: Hakka and their older names; Japanese reads kana and kanji; Korean).
_ESPEAK_LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("cmn", "yue", "hak", "zh", "zhy"), frozenset({"han"})),
    "ja": frozenset({"kana", "han"}),
    "ko": frozenset({"hangul"}),
}


def scripts_of_espeak_voice(voice: str) -> frozenset[str]:
    """The scripts of :data:`SCRIPTS` that an eSpeak NG voice (``"en-us"``, ``"sit/cmn"``,
    ``"cmn-latn-pinyin"``, ``"ja"``) reads; the others it spells letter by letter."""
    language = voice.rpartition("/")[2].partition("+")[0].partition("-")[0].lower()
    return _ESPEAK_LANGUAGE_SCRIPTS.get(language, frozenset())
