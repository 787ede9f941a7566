"""The server speaks speech-ready text: Markdown as its words, URLs as their domain (issue 24)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .speech_server import SpeechServer, running_server

pytestmark = pytest.mark.slow

URL_SENTENCE = "Visit https://www.example.com/products/item?id=12345&ref=mail today."
#: Two paragraphs: each variant keeps them apart (a list, a heading), so each packs as the answer.
ANSWER = "The cache keeps every sentence.\n\nIt never synthesises one twice."
MARKDOWN_VARIANTS = [
    "**The cache** keeps every sentence.\n\nIt never synthesises *one* twice. 🎉",
    "The `cache` keeps every sentence.\n\nIt never synthesises one twice...",
    "- The cache keeps every sentence.\n- It never synthesises one twice.",
    "# The cache keeps every sentence\n\nIt never synthesises one twice.",
    "The [cache](https://example.com/cache) keeps every sentence.\n\n"
    "It never synthesises one twice.",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    with running_server(tmp_path_factory.mktemp("normalize") / "cache") as running:
        yield running


def pcm_seconds(server: SpeechServer, text: str, **fields: object) -> float:
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm", **fields}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return len(response.content) / 2 / 24000


def test_a_url_is_spoken_as_its_domain(server: SpeechServer) -> None:
    as_given = pcm_seconds(server, URL_SENTENCE, normalize=False)
    normalised = pcm_seconds(server, URL_SENTENCE)
    assert normalised < as_given / 2, (normalised, as_given)


def test_markdown_variants_of_one_answer_hit_the_same_segments(server: SpeechServer) -> None:
    seconds = pcm_seconds(server, ANSWER)
    synthesised = server.synthesised()
    for variant in MARKDOWN_VARIANTS:
        assert pcm_seconds(server, variant) == seconds, variant
    assert server.synthesised() == synthesised


def test_normalize_must_be_a_boolean(server: SpeechServer) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": ANSWER, "normalize": "no"}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=60)
    assert response.status_code == 400 and response.json()["error"]["param"] == "normalize"


def test_no_normalize_reads_inputs_as_given(tmp_path: Path, server: SpeechServer) -> None:
    as_given = pcm_seconds(server, URL_SENTENCE, normalize=False)
    with running_server(tmp_path / "cache", "--no-normalize") as plain:
        assert pcm_seconds(plain, URL_SENTENCE) == as_given
        assert pcm_seconds(plain, URL_SENTENCE, normalize=True) < as_given / 2
