"""Splitting long text into segments a TTS model can speak well, in English and Chinese.

Segments never cross a paragraph break (a blank line), so editing one paragraph leaves every other
paragraph's segments, and so their cache entries, unchanged. Within a paragraph, sentences are
packed greedily into segments of at most ``max_chars``; a longer sentence is split at clause
punctuation, then between words, and only as a last resort inside a run of characters.

Lengths are weighted: a CJK character counts ``cjk_weight`` (2 by default), since it carries about a
syllable of speech, so the default limit of 200 is about 200 Latin or 100 Chinese characters.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable

from .._core.errors import InvalidOptionError, UnsupportedTypeError

__all__ = ["TextSegmenter"]

_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*|\u2029\s*")
_CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]"
)
_CLOSERS = "\"'”’»)]}」』）】》〉"
# A sentence end: Latin terminators then closers then whitespace, or CJK terminators then closers.
# A Latin end starts only where a run of terminators starts: tried from inside a long run, each
# start would scan the rest of the run again (quadratic in its length).
_SENTENCE_END = re.compile(
    rf"(?<![.!?;…])(?P<latin>\.{{3}}|[.!?;…]+)[{re.escape(_CLOSERS)}]*(?=\s|$)"
    rf"|[。！？；]+[{re.escape(_CLOSERS)}]*"
)
_CLAUSE_END = re.compile(rf"(?:[,:;—]|--)[{re.escape(_CLOSERS)}]*(?=\s)|[，、：；]")
_WORD_END = re.compile(r"\S(?=\s)")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs mt ft no nos fig figs vol vols ed eds rev gen col lt sgt capt "
    "cpt gov sen rep inc ltd co corp dept univ approx est jan feb mar apr jun jul aug sep sept oct "
    "nov dec e.g i.e cf al a.m p.m u.s u.k u.n ph.d b.a m.a".split()
)
_WORD_BEFORE = re.compile(r"([\w.]+)$")
_LONGEST_WORD = 32  # longer than any abbreviation
_NEXT_CHAR = re.compile(r"\s*(\S?)")

Span = tuple[int, int]


class TextSegmenter:
    """Split text into segments of at most ``max_chars`` (weighted) characters.

    Args:
        max_chars: the longest segment, counting a CJK character as ``cjk_weight``. Spark-TTS
            degrades past roughly 30-60 s of speech per call; 200 is about 15 s of English.
        cjk_weight: what one CJK character counts for.

    Example::

        >>> TextSegmenter(max_chars=40).segment_text("Mr. Smith paid $3.50. Then he left!")
        ['Mr. Smith paid $3.50. Then he left!']
    """

    __slots__ = ("cjk_weight", "max_chars")

    def __init__(self, max_chars: int = 200, *, cjk_weight: float = 2.0) -> None:
        if not isinstance(max_chars, int) or max_chars < 2 * max(1.0, cjk_weight):
            least = math.ceil(2 * max(1.0, cjk_weight))
            raise InvalidOptionError(
                f"max_chars must be an int of at least {least}, not {max_chars!r}"
            )
        if not 1.0 <= cjk_weight <= max_chars / 2:
            raise InvalidOptionError("cjk_weight must be between 1 and max_chars / 2")
        self.max_chars = max_chars
        self.cjk_weight = cjk_weight

    def weight(self, text: str) -> float:
        """The weighted length of ``text`` that ``max_chars`` bounds."""
        if text.isascii():
            return len(text)
        cjk = sum(1 for _ in _CJK.finditer(text))
        return len(text) + cjk * (self.cjk_weight - 1.0)

    def segment_text(self, text: str) -> list[str]:
        """Return the segments of ``text``, in order; none blank, none over ``max_chars``.

        Joining the segments gives back the text's characters in order, whitespace aside (runs of
        whitespace inside a segment become one space).
        """
        if not isinstance(text, str):
            raise UnsupportedTypeError(f"text must be a str, not {type(text).__name__}")
        segments: list[str] = []
        for paragraph in _PARAGRAPH_BREAK.split(text):
            paragraph = " ".join(paragraph.split())
            if paragraph:
                segments += self._segment_paragraph(paragraph)
        return segments

    def split_sentences(self, text: str) -> list[str]:
        """Return the sentences of ``text`` (whitespace collapsed), with no length limit."""
        sentences: list[str] = []
        for paragraph in _PARAGRAPH_BREAK.split(text):
            paragraph = " ".join(paragraph.split())
            sentences += [paragraph[a:b].strip() for a, b in _sentences(paragraph)]
        return sentences

    def _segment_paragraph(self, text: str) -> list[str]:
        if self.weight(text) <= self.max_chars:
            return [text]  # what packing its sentences would give: every prefix fits too
        paragraph = _Paragraph(text, self.cjk_weight, self.max_chars)
        pieces: list[Span] = []
        for sentence in _sentences(text):
            pieces += paragraph.fit(sentence, 0)
        return [text[start:end].strip() for start, end in paragraph.pack(pieces)]


class _Paragraph:
    """One paragraph (whitespace collapsed) being cut into spans that fit.

    Weights of spans come from prefix counts of CJK characters, so a span's weight costs the same
    whatever its length: packing thousands of tiny clauses stays linear in the paragraph's length.
    """

    __slots__ = ("_cjk_before", "_extra", "max_chars", "text")

    def __init__(self, text: str, cjk_weight: float, max_chars: int) -> None:
        self.text = text
        self.max_chars = max_chars
        self._extra = cjk_weight - 1.0
        marks = bytearray(len(text))
        if not text.isascii():
            for match in _CJK.finditer(text):
                marks[match.start()] = 1
        #: The number of CJK characters before each index.
        self._cjk_before = list(itertools.accumulate(marks, initial=0))

    def weight(self, start: int, stop: int) -> float:
        """The weight of ``text[start:stop]``, as :meth:`TextSegmenter.weight` counts it."""
        return (stop - start) + (self._cjk_before[stop] - self._cjk_before[start]) * self._extra

    def fits(self, span: Span) -> bool:
        start, stop = span
        text = self.text
        while start < stop and text[start].isspace():  # whitespace is collapsed: one at most
            start += 1
        while stop > start and text[stop - 1].isspace():
            stop -= 1
        return self.weight(start, stop) <= self.max_chars

    def fit(self, span: Span, level: int) -> list[Span]:
        """Split ``span`` into spans that fit, at clauses, then words, then characters."""
        if self.fits(span):
            return [span]
        if level < len(_SPLITTERS):
            parts = _split(self.text, span, _SPLITTERS[level])
            if len(parts) > 1:
                fitted: list[Span] = []
                for part in parts:
                    fitted += self.fit(part, level + 1)
                return self.pack(fitted)
            return self.fit(span, level + 1)
        return self.hard_split(span)

    def hard_split(self, span: Span) -> list[Span]:
        spans = []
        start, total = span[0], 0.0
        for index in range(span[0], span[1]):
            cost = self.weight(index, index + 1)
            if total + cost > self.max_chars and index > start:
                spans.append((start, index))
                start, total = index, 0.0
            total += cost
        spans.append((start, span[1]))
        return [s for s in spans if self.text[s[0] : s[1]].strip()]

    def pack(self, spans: list[Span]) -> list[Span]:
        """Merge adjacent spans greedily while the merged span fits."""
        packed: list[Span] = []
        for span in spans:
            if packed and self.fits((packed[-1][0], span[1])):
                packed[-1] = (packed[-1][0], span[1])
            else:
                packed.append(span)
        return packed


def _split(text: str, span: Span, boundaries: Callable[[str, int, int], list[int]]) -> list[Span]:
    cuts = [c for c in boundaries(text, span[0], span[1]) if span[0] < c < span[1]]
    edges = [span[0], *cuts, span[1]]
    return [(a, b) for a, b in itertools.pairwise(edges) if text[a:b].strip()]


def _regex_ends(pattern: re.Pattern[str]) -> Callable[[str, int, int], list[int]]:
    def ends(text: str, start: int, stop: int) -> list[int]:
        return [m.end() for m in pattern.finditer(text, start, stop)]

    return ends


_SPLITTERS = (_regex_ends(_CLAUSE_END), _regex_ends(_WORD_END))


def _sentences(text: str) -> list[Span]:
    """Spans of the sentences of one paragraph (whitespace already collapsed)."""
    cuts = [0]
    for match in _SENTENCE_END.finditer(text):
        if match["latin"] and not _ends_sentence(text, match):
            continue
        cuts.append(match.end())
    cuts.append(len(text))
    return [(a, b) for a, b in itertools.pairwise(cuts) if text[a:b].strip()]


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    """Whether Latin punctuation at ``match`` ends a sentence (not an abbreviation or ellipsis)."""
    mark = match["latin"]
    # Look only near the mark: slicing the rest of a long paragraph per mark would be quadratic.
    next_char = _NEXT_CHAR.match(text, match.end())
    following = next_char[1] if next_char else ""
    if len(match[0]) > len(mark) and following[:1].islower():
        return False  # a quoted question or exclamation inside a sentence: '"Why?" she asked.'
    if mark in ("...", "…") or mark.startswith(".."):
        # An ellipsis followed by a lowercase word continues the sentence.
        return not (following[:1].islower())
    if mark == ".":
        before = _WORD_BEFORE.search(text[max(0, match.start() - _LONGEST_WORD) : match.start()])
        word = before.group(1).lower() if before else ""
        if word.rstrip(".") in _ABBREVIATIONS:
            return False
        if len(word) == 1 and word.isalpha() and following[:1].isupper():
            return False  # an initial: "J. K. Rowling"
        if re.fullmatch(r"(?:[a-z]\.)+[a-z]", word):
            return False  # "U.S", "e.g" written without the final dot's word list
    return True
