"""End to end in a real browser: ``catdog up`` (the real API and page), Debian's Chromium.

Each check runs at desktop (1280x900) and phone (390x844) size: real photos in, the
answers a person would read, where they land on the screen, keyboard focus, an
axe-core audit, the downloads, rejected files, and the API being killed under
``catdog up`` and coming back. Screenshots for the README go to ``docs/``.
"""

from __future__ import annotations

import csv
import io
import os
import signal
from pathlib import Path

import pytest
import requests
from PIL import Image

from catdog.ui.widgets import example_files, knows_text, verdict
from tests.conftest import encode
from tests.ui.processes import ROOT, catdog_up

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
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
LOCAL = ("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:")
NOT_PETS = ROOT / "tests" / "data" / "not-pets"
DEVELOPER_WORDS = ("catdog serve", "CATDOG_", "Traceback", "gunicorn")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """``catdog up`` on free loopback ports, for this module only."""
    with catdog_up(tmp_path_factory.mktemp("up") / "up.log") as up:
        yield up


@pytest.fixture(scope="module")
def labels(app) -> list[str]:
    return requests.get(app.api_url + "/v1/model", timeout=10).json()["labels"]


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


@pytest.fixture(params=list(SIZES))
def page(request, app, browser):
    """The page at one window size; fails the test if it reached past loopback."""
    from playwright.sync_api import expect

    width, height = SIZES[request.param]
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.set_default_timeout(60_000)
    elsewhere: list[str] = []  # fonts, telemetry, CDNs: the page must fetch nothing from outside
    page.on("request", lambda r: r.url.startswith(LOCAL) or elsewhere.append(r.url))
    page.goto(app.ui_url)
    expect(status(page)).to_have_text("✅ Classifier ready.")
    page.size_name = request.param
    yield page
    page.close()
    assert not elsewhere


def status(page):
    """The live status line on the page itself (not in the sidebar, hidden on phones)."""
    return (
        page.locator(
            '[data-testid="stMain"] [data-testid="stCaptionContainer"]', has_text="Classifier ready"
        )
        .or_(page.locator('[data-testid="stMain"] [data-testid="stAlert"]', has_text="classifier"))
        .first
    )


def upload(page, *paths: Path) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(p) for p in paths]
    )


def classify(page) -> None:
    page.get_by_role("button", name="Classify", exact=True).click()


def row(page, name: str):
    return page.locator(".catdog-row", has_text=name)


def summary(page):
    return page.locator('#catdog-results [role="status"]')


def truth(app, path: Path, labels) -> str:
    """What the API itself says about ``path``, in the page's words."""
    files = {"image": (path.name, path.read_bytes(), "image/jpeg")}
    answer = requests.post(app.api_url + "/v1/predict", files=files, timeout=30).json()
    return verdict(answer["label"], labels)


def in_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    return (
        box is not None
        and 0 <= box["y"]
        and box["y"] + box["height"] <= page.viewport_size["height"]
    )


def settle(page) -> None:
    """Until Streamlit has finished its run: while it runs, it fades the elements it may
    replace, which is not how the page looks to a person reading it."""
    page.wait_for_function("!document.querySelector('[data-stale=\"true\"]')")
    page.wait_for_timeout(500)  # the fade's CSS transition


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical findings (axe.min.js from the axe-playwright-python wheel)."""
    axe = pytest.importorskip("axe_playwright_python")
    settle(page)
    page.evaluate((Path(axe.__file__).parent / "axe.min.js").read_text())
    found = page.evaluate("axe.run(document).then(r => r.violations)")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "nodes": [(n["html"][:120], n["failureSummary"]) for n in v["nodes"]],
        }
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def test_classify_photos_and_read_the_answers(app, labels, page, cat_photo, dog_photo):
    from playwright.sync_api import expect

    upload(page, cat_photo, dog_photo)
    expect(summary(page)).to_contain_text("2 not classified yet")
    classify(page)
    expect(summary(page)).to_contain_text("0 not classified yet")
    expect(summary(page)).to_contain_text("2 photos:")
    for photo in (cat_photo, dog_photo):
        expect(row(page, photo.name).locator(".catdog-verdict")).to_contain_text(
            truth(app, photo, labels)
        )
    first = row(page, cat_photo.name).locator(".catdog-verdict")
    assert in_viewport(page, first), "the first answer is off screen after Classify"
    assert page.evaluate("document.activeElement.id") == "catdog-results"  # focus moved there
    settle(page)
    screenshot = ROOT / "docs" / f"ui-{page.size_name}.png"
    page.screenshot(path=str(screenshot))  # the window as the person sees it after Classify
    assert screenshot.stat().st_size > 10_000

    images = page.locator("img")
    alts = [images.nth(i).get_attribute("alt") for i in range(images.count())]
    assert alts and all(alt and alt.strip() for alt in alts), alts
    assert any(alt.startswith(f"{cat_photo.name}: ") for alt in alts)

    card = row(page, dog_photo.name)
    card.get_by_text(f"Details of {dog_photo.name}").click()
    expect(card.locator("details:not(.catdog-looked) img")).to_be_visible()  # the card, not the heatmap
    for label in labels:  # every label's probability, as a number
        expect(card.locator(".catdog-probs")).to_contain_text(label)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["file"] for r in rows] == [cat_photo.name, dog_photo.name]
    assert {f"p_{label}" for label in labels} <= set(rows[0])

    assert not axe_violations(page)
    assert not page.locator('[data-testid="stException"]').count()


def test_show_where_it_looked(app, labels, page, dog_photo):
    """The toggle beside an answer shows the photo with the heatmap and says what it means."""
    from playwright.sync_api import expect

    from catdog.ui.widgets import looked_text

    upload(page, dog_photo)
    classify(page)
    expect(summary(page)).to_contain_text("0 not classified yet")
    answer = requests.post(app.api_url + "/v1/predict", timeout=30,
                           files={"image": (dog_photo.name, dog_photo.read_bytes(), "image/jpeg")}).json()
    card = row(page, dog_photo.name)
    toggle = card.locator("details.catdog-looked")
    expect(toggle.locator("img")).to_be_hidden()  # closed until asked
    card.get_by_text("Show where it looked").click()
    overlay = toggle.locator("img")
    expect(overlay).to_be_visible()
    assert overlay.get_attribute("alt") == f"{dog_photo.name} with a heatmap of where the model looked"
    expect(toggle).to_contain_text(looked_text(answer["label"], labels))
    settle(page)
    toggle.locator("p").scroll_into_view_if_needed()  # the photo and the words under it
    screenshot = ROOT / "docs" / f"ui-looked-{page.size_name}.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000
    assert not axe_violations(page)
    assert not page.locator('[data-testid="stException"]').count()


def test_examples_status_and_what_it_knows_are_on_the_page(page, labels):
    from playwright.sync_api import expect

    examples = [path.stem for path in example_files()]
    tops = {
        round(page.get_by_role("button", name=x, exact=True).bounding_box()["y"]) for x in examples
    }
    assert len(tops) == 1, "the examples are not one row"
    assert in_viewport(page, page.get_by_role("button", name="Classify", exact=True))
    expect(status(page)).to_be_visible()  # not only in the sidebar
    intro = page.locator('[data-testid="stMarkdown"]', has_text="It knows").first
    expect(intro).to_be_visible()  # what it knows: on the page, not behind the sidebar toggle
    expect(intro).to_contain_text(knows_text(labels))
    expect(page.get_by_text("HEIC and AVIF", exact=False)).to_be_visible()  # said before upload

    page.get_by_role("button", name="kitten", exact=True).click()
    expect(summary(page)).to_contain_text("1 photo:")
    settle(page)  # the page scrolls to the answer by script once the run is over, not before
    assert in_viewport(page, row(page, "kitten.jpg").locator(".catdog-verdict"))


def test_keyboard_focus_is_always_visible(page):
    """Tab through the page: every stop is on screen-visible element with a visible ring."""
    page.get_by_role("button", name="puppy", exact=True).click()
    page.wait_for_selector(".catdog-row")
    page.locator("h1").first.click()  # start from the top of the page
    for _ in range(16):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """(() => { const e = document.activeElement, s = getComputedStyle(e),
                        r = e.getBoundingClientRect();
                return {tag: e.tagName, text: (e.innerText || e.ariaLabel || '').slice(0, 40),
                        outline: s.outlineStyle, width: parseFloat(s.outlineWidth),
                        area: r.width * r.height}; })()"""
        )
        if focused["tag"] == "BODY":
            continue
        assert focused["area"] > 0, f"focus on something invisible: {focused}"
        assert focused["outline"] != "none" and focused["width"] >= 2, focused


def test_rejected_files_are_listed_and_counted(page, tmp_path, cat_bytes):
    from playwright.sync_api import expect

    files = {
        "fluffy.webp": encode(Image.open(io.BytesIO(cat_bytes)), "WEBP"),
        "fluffy.gif": encode(Image.open(io.BytesIO(cat_bytes)).convert("P"), "GIF"),
        "IMG_0042.heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100),
        "report.jpg": b"%PDF-1.7\n a document, not a photo\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    upload(page, *(tmp_path / name for name in files))
    expect(summary(page)).to_contain_text("3 not classified yet")
    expect(summary(page)).to_contain_text("1 failed")  # the HEIC photo, said at once
    expect(row(page, "IMG_0042.heic")).to_contain_text("This is a HEIC photo")
    classify(page)
    expect(summary(page)).to_contain_text("2 failed")
    expect(summary(page)).to_contain_text("4 photos:")
    expect(summary(page)).to_contain_text("0 not classified yet")
    expect(row(page, "IMG_0042.heic")).to_contain_text("This is a HEIC photo")
    expect(row(page, "report.jpg")).to_contain_text("looks like a PDF document")
    for name in ("fluffy.webp", "fluffy.gif"):
        expect(row(page, name)).not_to_contain_text("Failed")
    assert not axe_violations(page)


def test_a_photo_of_neither_says_so(page, labels):
    from playwright.sync_api import expect

    upload(page, NOT_PETS / "sunflower.jpg", NOT_PETS / "tulips.jpg")
    classify(page)
    expect(summary(page)).to_contain_text("0 not classified yet")
    for name in ("sunflower.jpg", "tulips.jpg"):
        expect(row(page, name)).to_contain_text(verdict("other", labels), timeout=5_000)


def test_the_site_survives_the_api_dying(app, page, cat_photo, labels):
    from playwright.sync_api import expect

    upload(page, cat_photo)
    expect(summary(page)).to_contain_text("1 not classified yet")
    before = len(app.output())
    os.kill(app.api_pid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    app.wait_until_printed("the API stopped unexpectedly", after=before)  # its port is free now
    classify(page)
    alerts = page.locator('[data-testid="stMain"] [data-testid="stAlert"]')
    expect(alerts.filter(has_text="The classifier is not answering right now").last).to_be_visible()
    expect(summary(page)).to_contain_text("1 not classified yet")  # the photo stays, to retry
    expect(status(page)).to_contain_text("may be restarting")
    sidebar = page.locator('[data-testid="stSidebar"]')
    if page.size_name == "desktop":  # the sidebar is open at this width: it follows reality too
        expect(sidebar).to_contain_text("may be restarting")
    body = page.locator("body").inner_text()
    assert not any(word in body for word in DEVELOPER_WORDS), body

    app.wait_until_printed("the API is back", timeout=120, after=before)
    # Nobody reloads the page: the status line looks again by itself every few seconds.
    expect(status(page)).to_have_text("✅ Classifier ready.", timeout=15_000)
    if page.size_name == "desktop":
        expect(sidebar).to_contain_text("Classifier ready.", timeout=15_000)
    classify(page)
    expect(row(page, cat_photo.name).locator(".catdog-verdict")).to_contain_text(
        truth(app, cat_photo, labels)
    )
    expect(summary(page)).to_contain_text("0 not classified yet")
