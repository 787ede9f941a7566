"""normalize_for_speech: Markdown and written-only text to spoken text, and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktts_cache._text.normalize import NORMALIZER_VERSION, normalize_for_speech

from .helpers import best_time

MARKERS = ("*", "`", "#", "[", "]", "|", "<", ">", "\\", "_")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Visit https://www.example.com/products/item?id=12345&ref=mail today.", "Visit example dot com today."),  # noqa: E501
        ("Write to ann@example.org, please.", "Write to ann at example dot org, please."),
        ("See <https://docs.python.org/3/> or www.python.org.", "See docs dot python dot org or python dot org."),  # noqa: E501
        ("**Hello** there", "Hello there"),
        ("Some *emphasis*, __strong__ and `inline code`.", "Some emphasis, strong and inline code."),  # noqa: E501
        ("# A heading\n\nA paragraph.", "A heading.\n\nA paragraph."),
        ("- one\n- two!\n\n1. first\n2. second", "one.\n\ntwo!\n\nfirst.\n\nsecond."),
        ("[the docs](https://example.com/x) and ![a cat](cat.png)", "the docs and a cat"),
        ("Before.\n\n```python\nprint('hi')\n```\n\n    indented code\n\nAfter.", "Before.\n\nAfter."),  # noqa: E501
        ("| name | age |\n|---|---|\n| Ann | 30 |\n| Bob | 41 |", "name, age.\n\nAnn, 30.\n\nBob, 41."),  # noqa: E501
        ("Done 🎉 ✅ 👍🏽 ok ❤️", "Done ok"),
        ("Wow!!! Really??   Yes...", "Wow! Really? Yes."),
        ("Привет, мир! 你好。 こんにちは 안녕하세요 مرحبا", "Привет, мир! 你好。 こんにちは 안녕하세요 مرحبا"),  # noqa: E501
        ("Tom &amp; Jerry", "Tom and Jerry"),
        ("<b>bold</b> text", "bold text"),
        ("", ""),
        # a lone number gets no full stop: "0." would read back as an empty ordered-list item
        # (found by hypothesis: ">0" gave "0.", which normalised again to "")
        (">0", "0"),
        ("a\n\n0\n\nb", "a.\n\n0\n\nb"),
    ],
)  # fmt: skip
def test_examples(text: str, expected: str) -> None:
    assert normalize_for_speech(text) == expected


def test_version_is_an_int() -> None:
    assert isinstance(NORMALIZER_VERSION, int)


@given(st.text())
@settings(max_examples=400, deadline=None)
def test_never_raises_and_is_idempotent(text: str) -> None:
    once = normalize_for_speech(text)
    assert normalize_for_speech(once) == once


markdown_piece = st.sampled_from(
    ["**", "*", "_", "`", "# ", "- ", "1. ", "[", "](http://a.b/c)", "![", "\n", "\n\n", "> ",
     "|", "```\n", "~", "&amp;", "\\", "<i>", " ", ".", "!", "🙂", "www.x.org", "a@b.cd"]
)  # fmt: skip
word = st.text(alphabet="abcxyzАБ你好 ", min_size=1, max_size=6)


@given(st.lists(st.one_of(markdown_piece, word), max_size=30).map("".join))
@settings(max_examples=400, deadline=None)
def test_markdown_like_text_is_idempotent_and_has_no_markers(text: str) -> None:
    once = normalize_for_speech(text)
    assert normalize_for_speech(once) == once
    assert not any(marker in once for marker in MARKERS)
    assert "  " not in once and all(line.strip() == line for line in once.split("\n\n"))
    assert "\n\n\n" not in once


@pytest.mark.parametrize(
    "hostile",
    ["[" * 200_000, "![" * 100_000, "*a" * 100_000, "[a](" * 50_000, "**_" * 66_667,
     "<" * 200_000, "a.a@" * 50_000, "http://" + "a." * 100_000, "!" * 200_000,
     "> " * 100_000, "`" * 200_000, "&#" * 100_000, "a|\n" * 50_000, "🙂" * 200_000],
    ids=lambda s: repr(s[:6]),
)  # fmt: skip
def test_linear_time_on_hostile_input(hostile: str) -> None:
    """200,000 hostile characters cost a bounded multiple of normalising plain prose of the same
    length, measured in the same run: linear inputs here take 0.01-35x the prose (doubling the
    length doubles the time), where a quadratic pass would take thousands of times more."""
    prose = ("The quick brown fox jumps over the lazy dog, and then it rests. " * 4000)[:200_000]
    baseline = best_time(2, lambda: normalize_for_speech(prose))
    hostile_time = best_time(1, lambda: normalize_for_speech(hostile))
    assert hostile_time <= 300 * baseline, (hostile_time, baseline)
