"""End to end in a real browser: the real API, the real Streamlit server, Debian's Chromium.

Uploads a real cat photo and a real dog photo, clicks Classify, checks what a person
would see, and saves ``docs/screenshot.png`` for the README.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from catdog.commands.up import api_command, ui_command
from tests.ui.servers import ROOT, free_ports, server

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
LOCAL = ("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:")
PERCENT = re.compile(r"(\d{1,2}\.\d%|>99\.9%) confident")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The real API and the real page on free loopback ports, for this module only."""
    logs = tmp_path_factory.mktemp("servers")
    api_port, ui_port = free_ports(2)
    api_url = f"http://127.0.0.1:{api_port}"
    ui_url = f"http://127.0.0.1:{ui_port}"
    api = server(
        api_command("127.0.0.1", api_port, workers=1), api_url + "/readyz", logs / "api.log"
    )
    ui = server(
        ui_command("127.0.0.1", ui_port),
        ui_url + "/_stcore/health",
        logs / "ui.log",
        env={"CATDOG_API_URL": api_url},
    )
    with api, ui:
        yield ui_url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        print(f"SKIP reason: no browser at {CHROMIUM} (apt-get install chromium; .ci/run does)")
        pytest.skip(
            f"no browser at {CHROMIUM}; install Debian's chromium (apt-get install chromium)"
        )
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def card(page, filename: str):
    """The two columns (photo | prediction) that show ``filename``."""
    return page.locator('[data-testid="stHorizontalBlock"]', has_text=filename)


def full_page_screenshot(page, path: Path) -> None:
    """Streamlit scrolls inside its own container, so grow the viewport to the content first."""
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain], body')]"
        ".map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": page.viewport_size["width"], "height": max(height, 600)})
    page.wait_for_timeout(500)  # let the layout settle at the new size
    page.screenshot(path=str(path), full_page=True)


def test_upload_a_cat_and_a_dog_and_classify(app_url, browser, cat_photo, dog_photo):
    from playwright.sync_api import expect

    started = time.monotonic()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    elsewhere = []  # the page must not reach past loopback (fonts, telemetry, CDNs)
    page.on("request", lambda r: r.url.startswith(LOCAL) or elsewhere.append(r.url))
    page.goto(app_url)
    expect(page.get_by_role("heading", name="catdog")).to_be_visible()
    expect(page.get_by_text("Ready at")).to_be_visible()

    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(cat_photo), str(dog_photo)]
    )
    expect(page.get_by_text("Not classified yet")).to_have_count(2)
    page.get_by_role("button", name="Classify").click()

    cat_card, dog_card = card(page, cat_photo.name), card(page, dog_photo.name)
    expect(cat_card).to_have_count(1)
    expect(dog_card).to_have_count(1)
    expect(cat_card.get_by_text("🐱 Cat", exact=True)).to_be_visible()
    expect(dog_card.get_by_text("🐶 Dog", exact=True)).to_be_visible()
    for result in (cat_card, dog_card):
        expect(result.get_by_text("confident")).to_have_text(PERCENT)
        photo = result.locator('[data-testid="stImage"] img')
        assert photo.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [200, 200]
        assert photo.bounding_box()["width"] == pytest.approx(200, abs=1)
    summary = page.locator('[data-testid="stMetric"]')
    expect(summary.filter(has_text="Cats")).to_contain_text("1")
    expect(summary.filter(has_text="Dogs")).to_contain_text("1")
    assert not page.locator('[data-testid="stException"]').count()
    assert not elsewhere

    SCREENSHOT.parent.mkdir(exist_ok=True)
    full_page_screenshot(page, SCREENSHOT)
    page.close()
    print(f"browser part took {time.monotonic() - started:.1f} s; screenshot: {SCREENSHOT}")
    assert SCREENSHOT.stat().st_size > 10_000


def test_page_shows_an_error_when_a_file_is_not_an_image(app_url, browser, tmp_path):
    from playwright.sync_api import expect

    fake = tmp_path / "cat.jpg"
    fake.write_bytes(b"%PDF-1.7\n this is a document, not a photo\n")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(app_url)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(fake))
    page.get_by_role("button", name="Classify").click()
    alert = page.locator('[data-testid="stAlert"]', has_text="The file looks like a PDF document")
    expect(alert).to_be_visible()
    assert not page.locator('[data-testid="stException"]').count()
    page.close()
