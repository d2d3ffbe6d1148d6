"""``avlearn serve`` in a real headless browser (Debian's chromium and its chromedriver; nothing is
downloaded): pick a video, then another video's sound, and the map shown follows the sound to the
place the hand-built model's map puts it. The screenshot goes to ``$AVLEARN_SERVE_SCREENSHOT``
when set (``docs/serve.png`` is made this way, see the README)."""

from __future__ import annotations

import io
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image

from avlearn.serve.app import SOUNDS, Page, launch
from avlearn.serve.session import Explorer
from tests.serve.conftest import BLUE, RED, inside

pytest.importorskip("gradio", reason="the serve extra is not installed: pip install -e '.[dev]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is missing: pip install -e '.[dev]'")
from selenium.webdriver.common.by import By  # noqa: E402

T = TypeVar("T")
OWN, OTHER = list(SOUNDS)[:2]
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="no chromium or chromedriver found: apt-get install -y chromium chromium-driver (make test does)",
)
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(DRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def served(explorer: Explorer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(explorer.temp))
    blocks, url = launch(Page(explorer), "Hand-built colour-hearing model (test)", "127.0.0.1", 0, 5)
    yield url
    blocks.close()


def _wait(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"the page did not show {what} within {timeout:g} s")


def _choose(driver: Any, dropdown: str, option: str) -> None:
    """Open the dropdown ``#dropdown`` and click ``option`` in its own list (``aria-controls``)."""
    box = _wait(f"#{dropdown}", lambda: driver.find_elements(By.CSS_SELECTOR, f"#{dropdown} input"))[0]
    box.click()
    listbox = box.get_attribute("aria-controls")

    def item() -> Any:
        found = driver.find_elements(By.CSS_SELECTOR, f"[id='{listbox}'] li[role=option]")
        return next((li for li in found if li.text.strip() == option), None)

    _wait(f"{option} in #{dropdown}", item).click()


def _shown(driver: Any, after: str | None = None) -> tuple[str, np.ndarray, tuple[int, int]]:
    """(image URL, image pixels, peak from the numbers) once a new picture is shown."""
    def ready() -> tuple[str, str] | None:
        imgs = driver.find_elements(By.CSS_SELECTOR, "#heatmap img")
        src = imgs[0].get_attribute("src") if imgs else None
        text = driver.find_element(By.ID, "numbers").text
        return (src, text) if src and src != after and "Peak" in text else None

    src, text = _wait("a new heatmap", ready)
    found = re.search(r"x = (\d+), y = (\d+)", text)
    assert found, text
    pixels = np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(src, timeout=10).read())).convert("RGB"))
    return src, pixels, (int(found[1]), int(found[2]))


def test_heatmap_follows_the_chosen_sound_in_a_browser(browser: Any, served: str) -> None:
    browser.get(served)
    _choose(browser, "video", "low.mp4")  # its own sound, a low tone: the red box
    src, own, peak_own = _shown(browser)
    _choose(browser, "other", "high.mp4")
    browser.find_element(By.CSS_SELECTOR, f"#sound input[value=\"{OTHER}\"]").click()
    _, other, peak_other = _wait("the other video's map", lambda: _new(browser, src))
    assert inside(RED, peak_own) and inside(BLUE, peak_other), (peak_own, peak_other)
    assert own.shape == other.shape == (96, 128, 3)
    assert np.abs(own.astype(int) - other.astype(int)).mean() > 10  # the map drawn changed
    # the ring is drawn on the peak the numbers give: white pixels on a circle around it
    ring = _ring_pixels(other, peak_other)
    assert (ring.min(axis=1) > 200).mean() > 0.3
    if target := os.environ.get("AVLEARN_SERVE_SCREENSHOT"):
        browser.save_screenshot(target)
    _choose(browser, "video", "mute.mp4")  # no audio track: the CLI's message in the page
    browser.find_element(By.CSS_SELECTOR, f"#sound input[value=\"{OWN}\"]").click()
    body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
    _wait("the no-audio message", lambda: "has no audio track; choose another sound" in body())


def _new(driver: Any, src: str) -> tuple[str, np.ndarray, tuple[int, int]] | None:
    shown = _shown(driver, after=src)
    return shown if "another video" in driver.find_element(By.ID, "numbers").text else None


def _ring_pixels(image: np.ndarray, peak: tuple[int, int]) -> np.ndarray:
    """Pixels on the ring drawn around ``peak`` (radius a twelfth of the short side)."""
    r = max(4, min(image.shape[:2]) // 12)
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    xs = np.clip(np.round(peak[0] + r * np.cos(angles)).astype(int), 0, image.shape[1] - 1)
    ys = np.clip(np.round(peak[1] + r * np.sin(angles)).astype(int), 0, image.shape[0] - 1)
    return image[ys, xs]
