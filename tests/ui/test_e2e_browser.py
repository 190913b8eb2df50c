"""End to end in a real browser: ``catdog up`` (the real API and page), Debian's Chromium.

One ``catdog up`` for the whole module. The main checks run at desktop (1280x900) and phone
(390x844) size, the rest at one: real photos in (HEIC and AVIF too), the answers a person
would read (a contradictory one "not sure", a French browser's in French), that 12 photos
get their verdicts before any heatmap is asked, where answers land on the screen, keyboard
focus, axe-core audits (all WCAG 2.0-2.2 A/AA rules and best practices) after results and
with a heatmap open, downloads, rejected files, and the API killed under ``catdog up`` and
the page recovering by itself. Screenshots for the README go to ``docs/``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

from catdog.ui.widgets import example_files
from catdog.ui.words import Words
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
#: A cat, then flowers to blend it with: the bundled model finds "other" most probable for some
#: blend while its recipe still answers "cat" (see contradictory_photo).
CONTRADICTORY = (ROOT / "tests" / "data" / "images" / "cat" / "cat.4003.jpg", NOT_PETS / "sunflower.jpg",
                 NOT_PETS / "tulips.jpg")
DEVELOPER_WORDS = ("catdog serve", "CATDOG_", "Traceback", "gunicorn")


@pytest.fixture(scope="module")
def feedback_db(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feedback") / "feedback.sqlite3"


@pytest.fixture(scope="module")
def app(tmp_path_factory, feedback_db):
    """``catdog up`` on free loopback ports, for this module only (its feedback database in a
    temporary folder)."""
    before = os.environ.get("CATDOG_FEEDBACK_PATH")
    os.environ["CATDOG_FEEDBACK_PATH"] = str(feedback_db)
    try:
        with catdog_up(tmp_path_factory.mktemp("up") / "up.log") as up:
            yield up
    finally:
        if before is None:
            os.environ.pop("CATDOG_FEEDBACK_PATH", None)
        else:
            os.environ["CATDOG_FEEDBACK_PATH"] = before


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


def open_page(browser, app, size: str, locale: str = "en-US"):
    """The page at one window size and browser language, ready; with a list of what it
    fetched from beyond loopback (it must fetch nothing)."""
    from playwright.sync_api import expect

    width, height = SIZES[size]
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True, locale=locale)
    page.set_default_timeout(60_000)
    page.elsewhere = []  # fonts, telemetry, CDNs: the page must fetch nothing from outside
    page.on("request", lambda r: r.url.startswith(LOCAL) or page.elsewhere.append(r.url))
    page.goto(app.ui_url)
    expect(status(page)).to_contain_text("✅", timeout=60_000)  # a first run on a busy machine
    page.size_name = size
    return page


@pytest.fixture
def opened(app, browser):
    """Opens pages (``opened(size, locale)``); closes them after the test, which fails if a
    page reached past loopback."""
    pages = []

    def open_one(size: str, locale: str = "en-US"):
        pages.append(open_page(browser, app, size, locale))
        return pages[-1]

    yield open_one
    for page in pages:
        page.close()
    assert not [url for page in pages for url in page.elsewhere]


@pytest.fixture(params=list(SIZES))
def page(request, opened):
    """The page at each window size, in English."""
    return opened(request.param)


@pytest.fixture
def desktop(opened):
    return opened("desktop")


@pytest.fixture
def phone(opened):
    return opened("phone")


def status(page):
    """The live status line on the page itself (not in the sidebar, hidden on phones)."""
    return (
        page.locator('[data-testid="stMain"] [data-testid="stCaptionContainer"]', has_text="✅")
        .or_(page.locator('[data-testid="stMain"] [data-testid="stAlert"]', has_text="classif"))
        .first
    )


def upload(page, *paths: Path) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(p) for p in paths]
    )


def classify(page) -> None:
    page.locator(".st-key-classify button").click()


def row(page, name: str):
    """One result row (its words, bars and controls)."""
    return page.locator('[class*="st-key-row-"]', has=page.locator(".catdog-name", has_text=name))


def verdict_of(page, name: str):
    return row(page, name).locator(".catdog-verdict")


def summary(page):
    return page.locator('#catdog-results [role="status"]')


def api_answer(app, path: Path) -> dict:
    files = {"image": (path.name, path.read_bytes(), "application/octet-stream")}
    return requests.post(app.api_url + "/v1/predict", files=files, timeout=30).json()


def truth(app, path: Path, labels, lang: str = "en") -> str:
    """What the API itself says about ``path``, in the page's words."""
    answer = api_answer(app, path)
    return Words(lang, labels, "other" if "other" in labels else None).verdict(answer["label"])


def explain_requests(app) -> float:
    """How many explain requests the API has answered so far (from its /metrics)."""
    text = requests.get(app.api_url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("catdog_http_request_duration_seconds_count") and "/v1/explain" in line)


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
    """axe-core's serious and critical findings, every WCAG 2.0-2.2 A/AA rule and best practice
    (axe.min.js from the axe-playwright-python wheel)."""
    axe = pytest.importorskip("axe_playwright_python")
    settle(page)
    page.evaluate((Path(axe.__file__).parent / "axe.min.js").read_text())
    found = page.evaluate(
        """axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
           'wcag22a', 'wcag22aa', 'best-practice']}}).then(r => r.violations)"""
    )
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
    expect(summary(page)).not_to_contain_text("not classified")
    expect(summary(page)).to_contain_text("2 photos:")
    for photo in (cat_photo, dog_photo):
        expect(verdict_of(page, photo.name)).to_contain_text(truth(app, photo, labels))
        for label in labels:  # every label's probability, inline, as a number
            expect(row(page, photo.name).locator(".catdog-probs")).to_contain_text(
                "neither" if label == "other" else label)
    first = verdict_of(page, cat_photo.name)
    assert in_viewport(page, first), "the first answer is off screen after Classify"
    assert page.evaluate("document.activeElement.id") == "catdog-results"  # focus moved there
    assert page.evaluate("document.documentElement.lang") == "en"
    settle(page)
    screenshot = ROOT / "docs" / f"ui-{page.size_name}.png"
    page.screenshot(path=str(screenshot))  # the window as the person sees it after Classify
    assert screenshot.stat().st_size > 10_000

    images = page.locator("img")
    alts = [images.nth(i).get_attribute("alt") for i in range(images.count())]
    assert alts and all(alt and alt.strip() for alt in alts), alts
    assert any(alt.startswith(f"{cat_photo.name}: ") for alt in alts)

    with page.expect_download() as download:  # next to the summary, not thousands of px down
        page.get_by_role("button", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["file"] for r in rows] == [cat_photo.name, dog_photo.name]
    assert {f"p_{label}" for label in labels} <= set(rows[0])

    assert not axe_violations(page)
    assert not page.locator('[data-testid="stException"]').count()


def test_show_where_it_looked(app, labels, page, dog_photo):
    """The toggle beside an answer fetches the heatmap then: the photo once, large, with the
    model's square outlined, a colour scale and what it means."""
    from playwright.sync_api import expect

    upload(page, dog_photo)
    classify(page)
    expect(verdict_of(page, dog_photo.name)).to_be_visible()
    card = row(page, dog_photo.name)
    expect(card.locator(".catdog-looked")).to_have_count(0)  # not until asked
    card.get_by_text("Show where it looked").click()
    overlay = card.locator(".catdog-looked img")
    expect(overlay).to_be_visible()
    assert overlay.get_attribute("alt") == f"{dog_photo.name} with a heatmap of where the model looked"
    expect(card.locator(".catdog-square")).to_have_count(1)
    expect(card.locator(".catdog-scale")).to_contain_text("counted most")
    answer = api_answer(app, dog_photo)
    expect(card.locator(".catdog-looked")).to_contain_text(Words("en", labels, "other").looked(answer["label"]))
    settle(page)
    card.locator(".catdog-looked p").scroll_into_view_if_needed()  # the photo and the words under it
    screenshot = ROOT / "docs" / f"ui-looked-{page.size_name}.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000
    assert not axe_violations(page)
    assert not page.locator('[data-testid="stException"]').count()


def test_twelve_photos_all_get_their_verdict_before_any_heatmap_is_asked(app, desktop, tmp_path, cat_bytes, dog_bytes):
    from playwright.sync_api import expect

    paths = []
    for i in range(12):
        path = tmp_path / f"photo-{i:02d}.jpg"
        path.write_bytes(cat_bytes if i % 2 else dog_bytes)
        paths.append(path)
    before = explain_requests(app)
    upload(desktop, *paths)
    expect(summary(desktop)).to_contain_text("12 not classified yet")
    classify(desktop)
    expect(summary(desktop)).not_to_contain_text("not classified", timeout=60_000)
    expect(desktop.locator(".catdog-verdict")).to_have_count(12)
    for path in paths:
        expect(verdict_of(desktop, path.name)).not_to_contain_text("Not classified")
    assert explain_requests(app) == before, "a heatmap was asked before anyone opened one"
    row(desktop, paths[0].name).get_by_text("Show where it looked").click()
    expect(row(desktop, paths[0].name).locator(".catdog-looked img")).to_be_visible()
    assert explain_requests(app) == before + 1  # just the one opened


def contradictory_photo(app, path: Path) -> dict:
    """Writes to ``path`` a cat blended with flowers that the served model finds most probably
    "other" while its recipe keeps a pet answer (found among a few blends, so that a retrained
    model still has one); returns the API's answer for it."""
    cat = Image.open(CONTRADICTORY[0]).convert("RGB").resize((320, 320))
    for flowers_path in CONTRADICTORY[1:]:
        flowers = Image.open(flowers_path).convert("RGB").resize((320, 320))
        for share in (0.4, 0.35, 0.3, 0.45, 0.5):
            Image.blend(cat, flowers, share).save(path, quality=90)
            answer = api_answer(app, path)
            if answer["label"] != "other" and max(answer["probabilities"], key=answer["probabilities"].get) == "other":
                return answer
    raise AssertionError("no blend of a cat and flowers is answered 'cat' while 'other' is more probable")


def test_a_contradictory_photo_is_not_sure_and_names_neither_first(app, labels, desktop, tmp_path):
    """"Other" is the most probable, the recipe keeps the pet's answer: the API says sure: false,
    and the page says "not sure", naming "neither" first."""
    from playwright.sync_api import expect

    photo = tmp_path / "catflower.jpg"
    answer = contradictory_photo(app, photo)
    assert answer["sure"] is False
    upload(desktop, photo)
    classify(desktop)
    said = verdict_of(desktop, photo.name)
    expect(said).to_contain_text("Not sure — probably neither a cat nor a dog")
    text = said.inner_text()
    assert text.index("neither") < text.index("maybe"), text
    expect(summary(desktop)).to_contain_text("1 not sure")


def test_heic_and_avif_photos_are_classified(app, labels, desktop, tmp_path, cat_bytes):
    from playwright.sync_api import expect

    image = Image.open(io.BytesIO(cat_bytes)).convert("RGB")
    paths = [tmp_path / "IMG_0042.HEIC", tmp_path / "IMG_0043.avif"]
    image.save(paths[0], "HEIF", quality=90)
    image.save(paths[1], "AVIF", quality=90)
    upload(desktop, *paths)
    classify(desktop)
    for path in paths:
        expect(verdict_of(desktop, path.name)).to_contain_text(truth(app, path, labels))
    expect(summary(desktop)).not_to_contain_text("failed")


def test_a_french_browser_gets_a_french_page(app, labels, opened):
    from playwright.sync_api import expect

    page = opened("desktop", "fr-FR")
    expect(status(page)).to_contain_text("Classificateur prêt.")
    page.wait_for_function("document.documentElement.lang === 'fr'", timeout=10_000)
    page.get_by_role("button", name="kitten", exact=True).click()
    kitten = example_files()[1]
    expect(verdict_of(page, kitten.name)).to_contain_text(truth(app, kitten, labels, "fr"))
    expect(summary(page)).to_contain_text("1 photo :")
    settle(page)
    screenshot = ROOT / "docs" / "ui-french.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000
    page.get_by_text("English", exact=True).click()  # the visible switch
    expect(summary(page)).to_contain_text("1 photo:")
    page.wait_for_function("document.documentElement.lang === 'en'", timeout=10_000)


def test_examples_status_and_what_it_knows_are_on_the_page(page, labels):
    from playwright.sync_api import expect

    examples = [path.stem for path in example_files()]
    tops = {
        round(page.get_by_role("button", name=x, exact=True).bounding_box()["y"]) for x in examples
    }
    assert len(tops) == 1, "the examples are not one row"
    assert in_viewport(page, page.locator(".st-key-classify button"))
    expect(status(page)).to_be_visible()  # not only in the sidebar
    intro = page.locator('[data-testid="stMarkdown"]', has_text="It knows").first
    expect(intro).to_be_visible()  # what it knows: on the page, not behind the sidebar toggle
    expect(intro).to_contain_text(Words("en", labels, "other" if "other" in labels else None).knows())
    expect(page.get_by_text("HEIC or AVIF", exact=False)).to_be_visible()  # said before upload

    page.get_by_role("button", name="kitten", exact=True).click()
    expect(summary(page)).to_contain_text("1 photo:")
    settle(page)  # the page scrolls to the answer by script once the run is over, not before
    assert in_viewport(page, verdict_of(page, "kitten.jpg"))


def test_keyboard_focus_is_always_visible(desktop):
    """Tab through the page: every stop is on screen-visible element with a visible ring."""
    desktop.get_by_role("button", name="puppy", exact=True).click()
    desktop.wait_for_selector(".catdog-row")
    desktop.locator("h1").first.click()  # start from the top of the page
    stops = []
    for _ in range(24):
        desktop.keyboard.press("Tab")
        focused = desktop.evaluate(
            """(() => { const e = document.activeElement, s = getComputedStyle(e),
                        r = e.getBoundingClientRect();
                return {tag: e.tagName, text: (e.innerText || e.ariaLabel || '').slice(0, 40),
                        outline: s.outlineStyle, width: parseFloat(s.outlineWidth),
                        area: r.width * r.height}; })()"""
        )
        stops.append(focused["text"])
        if focused["tag"] == "BODY":
            continue
        assert focused["area"] > 0, f"focus on something invisible: {focused}"
        assert focused["outline"] != "none" and focused["width"] >= 2, focused
    assert any("Wrong answer" in stop for stop in stops), stops  # reached the results by keyboard


def test_rejected_files_are_listed_and_counted(desktop, tmp_path, cat_bytes):
    from playwright.sync_api import expect

    page = desktop
    files = {
        "fluffy.webp": encode(Image.open(io.BytesIO(cat_bytes)), "WEBP"),
        "fluffy.gif": encode(Image.open(io.BytesIO(cat_bytes)).convert("P"), "GIF"),
        "IMG_0042.heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100),
        "report.jpg": b"%PDF-1.7\n a document, not a photo\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    upload(page, *(tmp_path / name for name in files))
    expect(summary(page)).to_contain_text("4 not classified yet")
    classify(page)
    expect(summary(page)).to_contain_text("2 failed")
    expect(summary(page)).to_contain_text("4 photos:")
    expect(summary(page)).not_to_contain_text("not classified")
    expect(row(page, "IMG_0042.heic")).to_contain_text("truncated or corrupt")  # read, not refused
    expect(row(page, "report.jpg")).to_contain_text("looks like a PDF document")
    for name in ("fluffy.webp", "fluffy.gif"):
        expect(row(page, name)).not_to_contain_text("Failed")
    # The counts filter the rows: "failed" lists the two failures only.
    page.locator('[data-testid="stButtonGroup"] button', has_text="2 failed").click()
    expect(page.locator(".catdog-row")).to_have_count(2)
    assert not axe_violations(page)


def test_a_photo_of_neither_says_so(desktop, labels):
    from playwright.sync_api import expect

    upload(desktop, NOT_PETS / "sunflower.jpg", NOT_PETS / "tulips.jpg")
    classify(desktop)
    neither = Words("en", labels, "other").verdict("other")  # "Neither a cat nor a dog"
    for name in ("sunflower.jpg", "tulips.jpg"):  # as the answer, or first when not sure
        expect(verdict_of(desktop, name)).to_contain_text(re.compile(re.escape(neither), re.IGNORECASE))


def test_the_site_recovers_by_itself_when_the_api_comes_back(app, phone, cat_photo, labels):
    """Killed API: the message says so and the photo waits; when the API is back the message
    goes away and the photo is classified, with nobody clicking anything."""
    from playwright.sync_api import expect

    page = phone
    upload(page, cat_photo)
    expect(summary(page)).to_contain_text("1 not classified yet")
    intro_text = page.locator('[data-testid="stMain"] [data-testid="stMarkdown"]', has_text="It knows").first
    intro = intro_text.inner_text()
    before = len(app.output())
    os.kill(app.api_pid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    app.wait_until_printed("the API stopped unexpectedly", after=before)  # its port is free now
    classify(page)
    alerts = page.locator('[data-testid="stMain"] [data-testid="stAlert"]')
    outage = alerts.filter(has_text="The classifier is not answering right now")
    expect(outage.first).to_be_visible()
    expect(summary(page)).to_contain_text("1 not classified yet")  # the photo stays
    assert intro_text.inner_text() == intro  # the words around the photos do not change
    body = page.locator("body").inner_text()
    assert not any(word in body for word in DEVELOPER_WORDS), body

    app.wait_until_printed("the API is back", timeout=120, after=before)
    # Nobody clicks or reloads: the status line sees the API back, the message goes, and the
    # waiting photo is classified.
    expect(outage).to_have_count(0, timeout=20_000)
    expect(verdict_of(page, cat_photo.name)).to_contain_text(truth(app, cat_photo, labels), timeout=20_000)
    expect(summary(page)).not_to_contain_text("not classified")
    assert intro_text.inner_text() == intro


def test_wrong_answer_sends_a_correction_that_the_export_holds(app, labels, phone, feedback_db, tmp_path):
    """Issue 27: "Wrong answer?" on a result, "neither", share ticked: the photo is in the
    operator's export under other/, and feedback.csv lists it."""
    from playwright.sync_api import expect

    from catdog.client import Client

    if not hasattr(Client, "feedback"):
        pytest.skip("Client.feedback and POST /v1/feedback (issue 27) are not on this branch yet")
    page = phone  # the phone layout, by keyboard where a person would type
    page.get_by_role("button", name="puppy", exact=True).click()
    puppy = row(page, "puppy.jpg")
    expect(puppy.locator(".catdog-verdict")).to_be_visible()
    puppy.get_by_role("button", name="Wrong answer?").click()
    dialog = page.locator('[data-testid="stPopoverBody"]')
    share = dialog.get_by_text("Share this photo to improve the model")
    expect(dialog.get_by_role("checkbox")).not_to_be_checked()  # unticked by default
    dialog.get_by_text(Words("en", labels, "other").verdict("other"), exact=True).click()
    share.click()
    dialog.get_by_role("button", name="Send the correction").press("Enter")
    expect(dialog).to_contain_text("Thank you!")
    assert not axe_violations(page)
    out = tmp_path / "export"
    env = {**os.environ, "CATDOG_FEEDBACK_PATH": str(feedback_db)}
    subprocess.run([sys.executable, "-m", "catdog", "feedback", "export", "--out", str(out)],
                   check=True, env=env, capture_output=True, timeout=120)
    shared = list((out / "other").iterdir())
    assert len(shared) == 1 and shared[0].read_bytes() == (example_files()[2]).read_bytes()
    rows = list(csv.DictReader((out / "feedback.csv").open()))
    assert [(r["answer"], r["correct"]) for r in rows] == [("dog", "other")]
