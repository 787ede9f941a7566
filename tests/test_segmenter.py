"""TextSegmenter: examples in English and Chinese, and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktts_cache import TextSegmenter

from .helpers import best_time


def squeeze(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
        ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
        ("It costs 3.14 dollars, or 1,000 yen. Cheap.", ["It costs 3.14 dollars, or 1,000 yen.", "Cheap."]),
        ("Use e.g. a fork. Or a spoon.", ["Use e.g. a fork.", "Or a spoon."]),
        ("The U.S. grew. It did.", ["The U.S. grew.", "It did."]),
        ('He said "Stop." Then left.', ['He said "Stop."', "Then left."]),
        ('"Why?" she asked. He shrugged.', ['"Why?" she asked.', "He shrugged."]),
        ("(It was late.) We slept.", ["(It was late.)", "We slept."]),
        ("I thought... maybe not. Wait... What?", ["I thought... maybe not.", "Wait...", "What?"]),
        ("J. K. Rowling wrote it. Really.", ["J. K. Rowling wrote it.", "Really."]),
        ("First; second. Third…", ["First;", "second.", "Third…"]),
        ("你好。今天天气很好！你呢？我很好；谢谢。", ["你好。", "今天天气很好！", "你呢？", "我很好；", "谢谢。"]),
        ("他说：“好的。”然后走了。", ["他说：“好的。”", "然后走了。"]),
        ("Visit example.com now. Thanks.", ["Visit example.com now.", "Thanks."]),
    ],
)  # fmt: skip
def test_sentence_boundaries(text: str, expected: list[str]) -> None:
    assert TextSegmenter().split_sentences(text) == expected
    # Packed into segments, every boundary is kept when the limit admits one sentence at a time.
    tight = TextSegmenter(max_chars=int(max(TextSegmenter().weight(s) for s in expected)))
    assert squeeze("".join(tight.segment_text(text))) == squeeze(text)
    assert all(
        any(seg.endswith(sentence) for sentence in expected) for seg in tight.segment_text(text)
    )


def test_short_sentences_are_merged_up_to_the_limit() -> None:
    text = "One. Two. Three. Four. Five. Six."
    assert TextSegmenter(max_chars=200).segment_text(text) == [text]
    assert TextSegmenter(max_chars=16).segment_text(text) == [
        "One. Two. Three.",
        "Four. Five. Six.",
    ]


def test_long_sentence_splits_at_clauses_then_words_then_characters() -> None:
    segmenter = TextSegmenter(max_chars=30)
    clauses = "We went to the market, bought some apples, and walked home slowly."
    assert segmenter.segment_text(clauses) == [
        "We went to the market,",
        "bought some apples,",
        "and walked home slowly.",
    ]
    words = "Supercalifragilistic words keep on going without any punctuation at all here"
    assert all(len(s) <= 30 and not s.startswith(" ") for s in segmenter.segment_text(words))
    assert " ".join(segmenter.segment_text(words)) == words
    url = "see https://example.com/" + "a" * 70
    pieces = segmenter.segment_text(url)
    assert all(len(p) <= 30 for p in pieces) and squeeze("".join(pieces)) == squeeze(url)


def test_chinese_limit_is_about_half() -> None:
    segmenter = TextSegmenter()  # 200 Latin ~ 100 CJK characters
    text = "这是一个很长的句子，" * 30 + "结束。"
    segments = segmenter.segment_text(text)
    assert all(len(s) <= 100 for s in segments)
    assert all(s.endswith("，") or s.endswith("。") for s in segments)  # split at clauses
    assert max(len(s) for s in segments) > 80  # and packed close to the limit
    run = "字" * 250
    assert [len(s) for s in segmenter.segment_text(run)] == [100, 100, 50]


def test_paragraphs_are_never_crossed() -> None:
    text = "First paragraph.\n\nSecond paragraph.\n   \n\nThird."
    assert TextSegmenter().segment_text(text) == ["First paragraph.", "Second paragraph.", "Third."]
    assert TextSegmenter().segment_text("Hard\nwrapped\nlines.") == ["Hard wrapped lines."]


def test_blank_and_empty_text() -> None:
    assert TextSegmenter().segment_text("") == []
    assert TextSegmenter().segment_text(" \n\n\t ") == []
    with pytest.raises(TypeError):
        TextSegmenter().segment_text(None)  # type: ignore[arg-type]


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        TextSegmenter(max_chars=1)
    with pytest.raises(ValueError):
        TextSegmenter(max_chars=100, cjk_weight=0.5)


# -- properties --------------------------------------------------------------------------------

alphabet = st.sampled_from(
    list("abcdefghij ABCDE") + list(".,!?;:…—'\"()") + list("你好世界。，！？；、“”") + ["\n", "\n\n", "  "]
    + ["Mr.", "Dr.", "e.g.", "U.S.", "3.14", "1,000", "...", "http://x.io/a"]
)  # fmt: skip
documents = st.lists(alphabet, max_size=400).map("".join)
limits = st.integers(min_value=4, max_value=240)


@settings(max_examples=300)
@given(documents, limits)
def test_lossless_bounded_and_never_blank(text: str, limit: int) -> None:
    segmenter = TextSegmenter(max_chars=limit)
    segments = segmenter.segment_text(text)
    assert squeeze("".join(segments)) == squeeze(text)
    for segment in segments:
        assert segment.strip() == segment != ""
        assert segmenter.weight(segment) <= limit


paragraphs = st.lists(alphabet.filter(lambda t: "\n" not in t), min_size=1, max_size=80).map(
    "".join
)


@settings(max_examples=200)
@given(st.lists(paragraphs, min_size=2, max_size=5), st.data(), limits)
def test_editing_one_paragraph_leaves_the_others_alone(
    paras: list[str], data: st.DataObject, limit: int
) -> None:
    segmenter = TextSegmenter(max_chars=limit)
    before = [segmenter.segment_text(p) for p in paras]
    assert segmenter.segment_text("\n\n".join(paras)) == [s for p in before for s in p]
    edited = data.draw(st.integers(0, len(paras) - 1))
    new_paras = [*paras]
    new_paras[edited] = data.draw(paragraphs)
    after = [segmenter.segment_text(p) for p in new_paras]
    assert segmenter.segment_text("\n\n".join(new_paras)) == [s for p in after for s in p]
    for index in range(len(paras)):
        if index != edited:
            assert after[index] == before[index]


#: Every class of character the segmenter's patterns look at: Latin and CJK sentence ends, clause
#: marks, closers, ellipses, and plain letters and spaces.
PUNCTUATION = [*".!?;…,:—-，。！？；、：\"'”’»)]}」』）】》〉", "--", "...", ". ", "a"]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(PUNCTUATION), st.integers(min_value=1, max_value=12_000)),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["", "x", " x", "\n\nx"]),
)
def test_long_runs_of_punctuation_take_linear_time(runs: list[tuple[str, int]], tail: str) -> None:
    """A hostile text of long runs (the quadratic patterns took 28 s for 32,000 "!") costs a
    bounded multiple of a plain ``str.split`` over the same text: the bound is far above what a
    linear segmenter needs (about 2,000x) and far below what a quadratic one takes (over 10^5x
    at these lengths)."""
    text = "".join(unit * count for unit, count in runs) + tail
    text = text * max(1, 30_000 // len(text))
    segmenter = TextSegmenter()
    segments = segmenter.segment_text(text)
    assert squeeze("".join(segments)) == squeeze(text)
    assert all(segmenter.weight(s) <= segmenter.max_chars for s in segments)
    segmenting = best_time(2, lambda: segmenter.segment_text(text))
    splitting = best_time(5, text.split)
    assert segmenting <= 20_000 * max(splitting, 2e-6), (len(text), segmenting, splitting)
