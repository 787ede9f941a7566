"""``normalize_for_speech``: Markdown and written-only text turned into what a voice should say."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["NORMALIZER_VERSION", "normalize_for_speech"]

#: Bumped whenever ``normalize_for_speech`` gives a different text for some input: it enters the
#: cache key of normalised text, so a new normaliser never serves the audio of the old one's text.
NORMALIZER_VERSION = 2  # 2: a block that is a lone number gets no full stop

#: CommonMark plus tables (what LLM answers use). Raw HTML is parsed so that its tags are dropped.
_MARKDOWN = MarkdownIt("commonmark").enable("table")

#: Characters that end a sentence: a heading, list item or table row without one gets a full stop.
_SENTENCE_END = frozenset(".!?:;…。！？；：")

#: Characters no voice reads and that would be Markdown again if left: dropped from the output
#: (``_`` becomes a space, so ``snake_case`` stays two words). Outside URLs ``&`` is then
#: written "and", so that an entity-like ``&amp;`` in the output is not read again as one.
_MARKERS = str.maketrans({"*": None, "`": None, "#": None, "<": None, ">": None, "[": None,
                          "]": None, "|": None, "\\": None, "_": " "})  # fmt: skip

#: Emoji pieces that are not in the symbol categories: joiner, variation selectors, keycap.
_EMOJI_PIECES = frozenset("\u200d\ufe0e\ufe0f\u20e3")

_EMAIL = re.compile(r"([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)")
_TRAILING = ".,;:!?)]}'\""
#: Runs of one punctuation mark but ``/`` (which would break a URL's ``://`` before it is said).
_REPEATED_PUNCTUATION = re.compile(r"([^\w\s/])\1+")
_WHITESPACE = re.compile(r"\s+")
#: A list marker at the start of the output (from an escaped one in the input, ``1\\.``): dropped,
#: as a second pass would read it as a list.
_LIST_NUMBER = re.compile(r"\d{1,9}")
_LEADING_LIST_MARKER = re.compile(r"(?:[-+]|\d{1,9}[.)])(?:\s+|$)")


def normalize_for_speech(text: str) -> str:
    """Return ``text`` as a voice should say it: Markdown rendered to its spoken words.

    Emphasis, inline code and links become their text, images their alt text; headings, list
    items and table rows (cells joined by commas) become sentences, with a full stop where they
    have none; code blocks and raw HTML tags are skipped. A URL is said as its domain
    (``https://www.example.com/a?b=1`` -> ``example dot com``), an e-mail address as a person
    says it (``ann at example dot org``). Symbols no voice reads (Unicode categories So and Sk,
    emoji) are dropped, letters of every script and ordinary punctuation kept; runs of whitespace
    become one space and runs of one punctuation mark one mark.

    Blocks (paragraphs, headings, list items, table rows) are separated by a blank line, so
    the segmenter's segments never cross one (editing one paragraph leaves the others' cache
    entries as they were); within a block the text is one line. The result is idempotent
    (normalising it again changes nothing) and made in time linear in the length of ``text``.
    Numbers, currencies and dates are left as written.
    """
    blocks = (_spoken_block(words, sentence) for words, sentence in _render(_MARKDOWN.parse(text)))
    return "\n\n".join(block for block in blocks if block)


def _spoken_block(block: str, sentence: bool = False) -> str:
    """One block's words as said: markers and unspoken symbols out, URLs and addresses said;
    with ``sentence``, a full stop where it ends without one."""
    spoken = "".join(char for char in block.translate(_MARKERS) if _is_spoken(char))
    spoken = _REPEATED_PUNCTUATION.sub(r"\1", spoken)
    spoken = " ".join(_spoken_word(word) for word in spoken.split())
    spoken = _WHITESPACE.sub(" ", spoken).strip()
    while (marker := _LEADING_LIST_MARKER.match(spoken)) is not None:
        spoken = spoken[marker.end() :]
    # (not after a lone number: "0." would read back as an ordered list's empty item)
    if (
        sentence
        and spoken
        and spoken[-1] not in _SENTENCE_END
        and not _LIST_NUMBER.fullmatch(spoken)
    ):
        spoken += "."
    return spoken


def _render(tokens: Sequence[Token]) -> list[tuple[str, bool]]:
    """The blocks' text, one per paragraph, heading, list item or table row, each with whether
    it is to end as a sentence (all but a text's last paragraph, which ends as written)."""
    blocks: list[tuple[str, bool]] = []
    row: list[str] = []
    in_row = False
    last_paragraph_level = -1  # the level of the last block's text, if it was a paragraph
    for token in tokens:
        if token.type == "tr_open":
            in_row, row = True, []
        elif token.type == "tr_close":
            in_row = False
            cells = (_spoken_block(cell) for cell in row)
            blocks.append((", ".join(cell for cell in cells if cell), True))
            last_paragraph_level = -1
        elif token.type == "inline":
            words = _inline_text(token.children or [])
            if in_row:
                row.append(words)
            else:
                blocks.append((words, True))
                last_paragraph_level = token.level
        elif token.type == "heading_close":
            last_paragraph_level = -1
        # fence, code_block, html_block and hr have no inline children: they are skipped.
    if 0 <= last_paragraph_level <= 1:  # a top-level paragraph, not in a list or a quote
        blocks[-1] = (blocks[-1][0], False)
    return blocks


def _inline_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "image":
            parts.append(child.content)  # the alt text
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts)


def _spoken_word(word: str) -> str:
    """A URL as its domain, an e-mail address as said; any other word as it is."""
    core = word.rstrip(_TRAILING)
    trail = word[len(core) :]
    lowered = core.lower()
    start = _url_start(lowered)
    if start >= 0:
        host = core[start:].split("://", 1)[-1]
        host = host.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].split("&", 1)[0]
        host = host.rsplit("@", 1)[-1].split(":", 1)[0]
        if host.lower().startswith("www."):
            host = host[4:]
        spoken = " dot ".join(part for part in host.split(".") if part)
        before = _spoken_word(core[:start]) if start else ""  # it holds no "://" but may a www.
        return f"{before} {spoken}{trail}"
    return " ".join(_spoken_email(piece) for piece in word.replace("&", " and ").split())


def _spoken_email(word: str) -> str:
    core = word.rstrip(_TRAILING)
    if "@" in core and (email := _EMAIL.fullmatch(core)) is not None:
        local, domain = email.groups()
        spoken_local = " dot ".join(part for part in local.split(".") if part)
        return f"{spoken_local} at {' dot '.join(domain.split('.'))}{word[len(core) :]}"
    return word


def _url_start(lowered: str) -> int:
    """Where a URL starts in a word (its scheme, or ``www.``), or -1: a scan, never a regex
    search, so that a long word costs linear time."""
    separator = lowered.find("://")
    if separator > 0:
        start = separator
        while start > 0 and (lowered[start - 1].isalnum() or lowered[start - 1] in "+.-"):
            start -= 1
        return start if start < separator else -1
    return lowered.find("www.")


def _is_spoken(char: str) -> bool:
    if char in _EMOJI_PIECES:
        return False
    if char == "\u200c":  # the zero-width non-joiner is spelling in Persian and Indic scripts
        return True
    category = unicodedata.category(char)
    return category not in ("So", "Sk", "Cc", "Cf", "Co", "Cs", "Cn") or char.isspace()
