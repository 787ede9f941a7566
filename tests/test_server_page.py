"""The web page at ``/`` in a real headless Chromium (Debian's ``chromium`` and
``chromedriver``, which ``.ci/run`` installs): typed text, a voice and a format picked, and the
audio element must actually play what the server synthesised."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from sparktts_cache import TextSegmenter

from .speech_server import SpeechServer, running_server
from .system_programs import require_program

pytestmark = pytest.mark.slow

API_KEY = "page-s3cret"
#: Seconds a page may take to load its voices, start playing, or advance.
WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    base = tmp_path_factory.mktemp("page")
    with running_server(base / "cache", "--api-key", API_KEY, "--cache-headers") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, chromedriver = require_program("chromium"), require_program("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--autoplay-policy=no-user-gesture-required", "--mute-audio"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def audio_state(driver: webdriver.Chrome) -> dict[str, Any]:
    state: dict[str, Any] = driver.execute_script(
        "const a = document.getElementById('player');"
        "return {time: a.currentTime, paused: a.paused, error: a.error && a.error.message,"
        " mode: a.dataset.mode || null, status: document.getElementById('status').textContent};"
    )
    return state


def play(driver: webdriver.Chrome, server: SpeechServer, text: str, voice: str, audio_format: str
         ) -> dict[str, Any]:  # fmt: skip
    """Type ``text``, pick ``voice`` and ``audio_format``, press Speak; return the audio
    element's state once it has played for a while."""
    driver.get(server.url + "/")
    key = driver.find_element(By.ID, "key")
    key.send_keys(API_KEY)
    driver.find_element(By.ID, "text").click()  # the key field's change event loads the voices
    voices = Select(driver.find_element(By.ID, "voice"))
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda _: voice in [option.get_attribute("value") for option in voices.options]
    )
    voices.select_by_value(voice)
    Select(driver.find_element(By.ID, "format")).select_by_value(audio_format)
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "speak").click()
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda _: audio_state(driver)["error"] or audio_state(driver)["time"] > 0.3,
        message="the audio element did not start playing",
    )
    first = audio_state(driver)
    assert first["error"] is None, first
    # Still advancing: it plays, and is not an element stuck at its first frame.
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda _: audio_state(driver)["time"] > first["time"] + 0.3,
        message="the audio element stopped advancing",
    )
    return audio_state(driver)


def test_the_page_needs_no_key_and_loads_nothing_from_elsewhere(server: SpeechServer) -> None:
    response = httpx.get(server.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "http://" not in response.text and "https://" not in response.text
    assert httpx.get(server.url + "/v1/audio/voices", timeout=10).status_code == 401


@pytest.mark.parametrize(("audio_format", "mode"), [("mp3", "stream"), ("wav", "whole")])
def test_the_page_plays_what_the_server_synthesises(
    server: SpeechServer, browser: webdriver.Chrome, audio_format: str, mode: str
) -> None:
    text = " ".join(
        f"Sentence {number} of the page's {audio_format} test is long enough to be a segment of "
        "its own, so that the page plays one while the server makes the next."
        for number in range(3)
    )
    assert len(TextSegmenter().segment_text(text)) == 3
    before = server.synthesised()
    state = play(browser, server, text, "nova", audio_format)
    assert state["paused"] is False and state["error"] is None
    assert state["mode"] == mode, state
    assert str(state["status"]).startswith("cache: miss"), state
    assert server.synthesised() - before == 3  # the server made it, a segment per sentence
    # No script error; the only failed request is the voices' before the key was typed.
    logs = browser.get_log("browser")  # type: ignore[no-untyped-call]
    severe = [
        e for e in logs if e["level"] == "SEVERE" and "401 (Unauthorized)" not in e["message"]
    ]
    assert not severe, logs


def test_a_wrong_key_is_shown_not_played(server: SpeechServer, browser: webdriver.Chrome) -> None:
    browser.get(server.url + "/")
    browser.find_element(By.ID, "key").send_keys("wrong")
    browser.find_element(By.ID, "text").click()
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda _: "API key" in browser.find_element(By.ID, "status").text
    )
    assert browser.find_element(By.ID, "status").get_attribute("class") == "error"
    assert Select(browser.find_element(By.ID, "voice")).options == []
