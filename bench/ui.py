"""The web UI in a real browser: how compact the results are, where the first answer lands,
how long Classify takes, and how fast the site recovers when the API is killed.

Runs ``catdog up`` on free loopback ports and Debian's Chromium (Playwright), at desktop
(1280x900) and phone (390x844) size, with the real photos of ``tests/data``::

    python bench/ui.py              # prints the table and writes the "ui" section of docs/benchmarks.md
    python bench/ui.py --no-write   # print only
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _report import ROOT, machine, table, update_section, write_json

from catdog import servers

CHROMIUM = "/usr/bin/chromium"
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
PHOTOS = sorted((ROOT / "tests" / "data" / "images").glob("*/*.jpg")) + sorted(
    (ROOT / "tests" / "data" / "not-pets").glob("*.jpg")
)


def api_pid(up: int) -> int:
    """The child of ``catdog up`` that runs the API (the other one runs Streamlit)."""
    for pid in Path(f"/proc/{up}/task/{up}/children").read_text().split():
        if b"streamlit" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return int(pid)
    raise RuntimeError("catdog up has no API child")


def measure_page(browser, url: str, size: str, photos: list[Path]) -> dict:
    width, height = SIZES[size]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_text("Classifier ready.").first.wait_for()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(p) for p in photos]
    )
    page.wait_for_selector(f"text={len(photos)} not classified yet")
    started = time.perf_counter()
    page.get_by_role("button", name="Classify", exact=True).click()
    page.wait_for_selector("#catdog-results >> text=0 not classified yet")
    seconds = time.perf_counter() - started
    page.wait_for_timeout(500)  # the scroll after Classify
    rows = page.locator(".catdog-row")
    heights = [rows.nth(i).bounding_box()["height"] for i in range(rows.count())]
    first = page.locator(".catdog-row .catdog-verdict").first.bounding_box()
    block = page.locator("#catdog-results").bounding_box()
    page.close()
    return {
        "size": size,
        "photos": len(photos),
        "classify_s": seconds,
        "row_px": statistics.mean(heights),
        "results_px": block["height"],
        "first_answer_bottom_px": first["y"] + first["height"],
        "viewport_px": height,
    }


def measure_recovery(browser, up, url: str, api_url: str, photo: Path) -> dict:
    """SIGKILL the API under ``catdog up``; seconds until it answers again, and until the page
    (never reloaded) classifies again."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(url)
    page.get_by_text("Classifier ready.").first.wait_for()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(photo))
    killed = time.perf_counter()
    os.kill(api_pid(up.pid), signal.SIGKILL)
    time.sleep(0.5)
    while not servers.answers(api_url + "/readyz", timeout=1):
        time.sleep(0.05)
    api_back = time.perf_counter() - killed
    while True:  # the page's own route: press Classify until an answer shows
        page.get_by_role("button", name="Classify", exact=True).click()
        page.wait_for_selector("#catdog-results")
        if page.locator("#catdog-results >> text=0 not classified yet").count():
            break
        time.sleep(0.2)
    page_back = time.perf_counter() - killed
    page.close()
    return {"api_back_s": api_back, "page_classifies_again_s": page_back}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    api_port, ui_port = servers.free_ports(2)
    url, api_url = f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{api_port}"
    log = Path(tempfile.mkstemp(prefix="bench-ui-", suffix=".log")[1])
    command = [sys.executable, "-m", "catdog", "up", "--api-port", str(api_port)]
    command += ["--ui-port", str(ui_port), "--workers", "1"]
    up = servers.start(command, log=log, cwd=ROOT)
    try:
        servers.wait_until_answering(url + "/_stcore/health", up, name="catdog up", log=log)
        servers.wait_until_answering(api_url + "/readyz", up, name="catdog up", log=log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            pages = [
                measure_page(browser, url, size, photos)
                for size in SIZES
                for photos in (PHOTOS[:1], PHOTOS)
            ]
            recovery = measure_recovery(browser, up, url, api_url, PHOTOS[0])
            browser.close()
    finally:
        up.send_signal(signal.SIGINT)  # catdog up stops its children in order
        try:
            up.wait(60)
        finally:
            servers.stop(up)
            log.unlink(missing_ok=True)

    rows = [
        [p["size"], p["photos"], f"{p['classify_s']:.2f}", f"{p['row_px']:.0f}",
         f"{p['results_px']:.0f}", f"{p['first_answer_bottom_px']:.0f} / {p['viewport_px']}"]
        for p in pages
    ]  # fmt: skip
    markdown = "\n".join([
        "## Web UI",
        "",
        (f"`python bench/ui.py`: `catdog up` (1 API worker) and Debian's Chromium on loopback, "
         f"the real photos of `tests/data` ({len(PHOTOS)} photos: cats, dogs, flowers). "
         f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."),
        "",
        table(["window", "photos", "Classify to all answers (s)", "px per result row",
               "results height (px)", "first answer's bottom / window height (px)"], rows),
        "",
        (f"API killed (SIGKILL) under `catdog up`: it answers `/readyz` again after "
         f"**{recovery['api_back_s']:.1f} s** (1 s back-off, then the model loads), and the page, "
         f"never reloaded, classifies again after **{recovery['page_classifies_again_s']:.1f} s**."),
    ])  # fmt: skip
    print(markdown)
    if not args.no_write:
        write_json("ui", {"pages": pages, "recovery": recovery, "machine": machine()})
        update_section("ui", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
