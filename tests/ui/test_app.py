"""The Streamlit page, run by AppTest: against a real API server where it can be, and against
recorded API answers for what today's bundled model cannot say (a third label, "other")."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import requests
import responses
from PIL import Image
from streamlit.testing.v1 import AppTest

import catdog.ui
from catdog.commands.up import api_command
from catdog.servers import free_port, running
from catdog.ui.widgets import example_files, percent, verdict
from tests.conftest import encode

APP = Path(catdog.ui.__file__).parent / "app.py"
DEVELOPER_WORDS = ("catdog serve", "CATDOG_", "Traceback", "localhost")
#: The real API's upload limit in these tests: small, so an "over the limit" photo is cheap.
API_LIMIT_MB = 1


@pytest.fixture(scope="module")
def real_api(tmp_path_factory):
    """The real API (gunicorn, the bundled model) on a free loopback port, for this module."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("api") / "api.log"
    env = {"CATDOG_MAX_UPLOAD_MB": str(API_LIMIT_MB)}
    with running(api_command("127.0.0.1", port, workers=1), url + "/readyz", log=log, env=env):
        yield url


@pytest.fixture
def live(real_api, monkeypatch):
    """The page pointed at the real API; returns the model card the API serves."""
    monkeypatch.setenv("CATDOG_API_URL", real_api)
    return requests.get(real_api + "/v1/model", timeout=10).json()


def page() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=60).run()


def texts(at: AppTest) -> str:
    """Everything the page says, as one string, for 'does it show X' checks."""
    kinds = ("title", "subheader", "markdown", "caption", "info", "error", "success", "warning")
    parts = [e.value for kind in kinds for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def results_block(at: AppTest) -> str:
    blocks = [m.value for m in at.markdown if 'id="catdog-results"' in m.value]
    assert len(blocks) == 1, texts(at)
    return blocks[0]


def summary(block: str) -> str:
    return block.split('aria-live="polite">', 1)[1].split("</div>", 1)[0]


def answer_of(api: str, data: bytes, name: str) -> dict:
    """What the real API says about a photo, asked directly (the page must show the same)."""
    files = {"image": (name, data, "image/jpeg")}
    return requests.post(api + "/v1/predict", files=files, timeout=30).json()


# -- against the real API ---------------------------------------------------------------------


@pytest.mark.slow
def test_page_shows_status_what_it_knows_and_an_upload_box_for_every_api_format(live):
    at = page()
    assert not at.exception
    assert at.title[0].value == "🐱 catdog 🐶"
    assert "✅ Classifier ready." in [c.value for c in at.main.caption]
    labels = live["labels"]
    intro = at.markdown[0].value
    assert all(label + "s" in intro for label in labels if label != "other")
    assert live["name"] in "\n".join(m.value for m in at.sidebar.markdown)
    uploader = at.file_uploader[0]
    assert uploader.label == "Photos to classify" and uploader.accept_multiple_files
    assert {".jpg", ".png", ".webp", ".gif", ".bmp", ".heic"} <= set(uploader.allowed_type)
    assert f"larger than {API_LIMIT_MB:g} MB is shrunk" in texts(at)  # the API's own limit
    assert at.button(key="classify").disabled  # nothing to classify yet
    assert {f"example-{p.name}" for p in example_files()} <= {b.key for b in at.button}


@pytest.mark.slow
def test_one_click_on_an_example_shows_what_the_api_says(live, real_api):
    at = page()
    at.button(key="example-kitten.jpg").click().run()
    assert not at.exception and not at.error
    truth = answer_of(real_api, (example_files()[1]).read_bytes(), "kitten.jpg")
    block = results_block(at)
    assert f"<b>{verdict(truth['label'], live['labels'])}</b>" in block
    assert percent(truth["confidence"]) in block
    assert "1 photo:" in block and "0 not classified yet" in block


@pytest.mark.slow
def test_a_mixed_batch_accounts_for_every_file(live, real_api, cat_bytes, dog_bytes):
    webp = encode(Image.open(io.BytesIO(dog_bytes)), "WEBP")
    gif = encode(Image.open(io.BytesIO(cat_bytes)).convert("P"), "GIF")
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100)
    files = [
        ("tom.jpg", cat_bytes, "image/jpeg"),
        ("rex.webp", webp, "image/webp"),
        ("fluffy.gif", gif, "image/gif"),
        ("IMG_0042.HEIC", heic, "image/heic"),
        ("cat.jpg", b"%PDF-1.7 a document", "image/jpeg"),
    ]
    at = page()
    at.file_uploader[0].set_value(files)
    at.run()
    before = summary(results_block(at))
    assert "4 not classified yet" in before and "1 failed" in before  # the HEIC photo, at once
    at.button(key="classify").click().run()
    assert not at.exception and not at.error
    block = results_block(at)
    assert "5 photos:" in block and "2 failed" in block and "0 not classified yet" in block
    assert "This is a HEIC photo" in block  # visible, in the row, not a tooltip
    assert "looks like a PDF document" in block  # the API's own message
    for name, data, _ in files[:3]:
        truth = answer_of(real_api, data, name)
        assert f"<b>{verdict(truth['label'], live['labels'])}</b>" in block.split(name, 1)[1]
    downloads = {b.proto.label: b for b in at.get("download_button")}
    assert set(downloads) == {"Download CSV", "Download JSON"}


@pytest.mark.slow
def test_a_photo_over_the_apis_limit_is_shrunk_and_classified(live):
    big = encode(Image.effect_noise((1400, 1400), 80).convert("RGB"), "PNG")
    assert len(big) > API_LIMIT_MB * 1e6
    at = page()
    at.file_uploader[0].set_value(("phone-photo.png", big, "image/png"))
    at.run()
    at.button(key="classify").click().run()
    block = results_block(at)
    assert not at.error and "0 failed" in block and "1 photo:" in block
    assert f"Shrunk from {len(big) / 1e6:.1f} MB to" in block
    assert "(the limit is 1.0 MB)" in block  # the API's limit, read from /v1/model


@pytest.mark.slow
def test_clear_all_empties_the_page(live, cat_bytes):
    at = page()
    at.file_uploader[0].set_value(("tom.jpg", cat_bytes, "image/jpeg"))
    at.run()
    at.button(key="example-puppy.jpg").click().run()
    assert "2 photos:" in results_block(at)
    at.button(key="clear-all").click().run()
    assert not at.exception
    assert not [m for m in at.markdown if 'id="catdog-results"' in m.value]
    assert at.file_uploader[0].value in (None, [])
    assert at.button(key="classify").disabled


# -- the API away ---------------------------------------------------------------------------


def test_api_down_is_explained_in_plain_words(monkeypatch):
    port = free_port()
    monkeypatch.setenv("CATDOG_API_URL", f"http://127.0.0.1:{port}")
    at = page()
    assert not at.exception
    assert "may be restarting" in at.main.warning[0].value  # the live status line
    assert "may be restarting" in at.sidebar.warning[0].value
    at.button(key="example-husky.jpg").click().run()
    assert not at.exception
    errors = [e.value for e in at.main.error]
    assert errors == [
        "The classifier is not answering right now; it may be restarting. "
        + "Please try again in a moment."
    ]
    assert at.expander[0].label == "Technical details"
    assert f"127.0.0.1:{port} (no answer)" in at.expander[0].caption[0].value
    shown = texts(at)
    assert not any(word in shown for word in DEVELOPER_WORDS), shown
    assert "1 not classified yet" in results_block(at)  # the photo is still there, to retry


# -- recorded API answers -------------------------------------------------------------------

URL = "http://api.test:8000"
THREE = {
    "name": "catdog-three",
    "version": "2.0.0",
    "labels": ["cat", "dog", "other"],
    "metrics": {"val": {"accuracy": 0.95}},
    "limits": {"max_upload_mb": 10, "max_batch": 32, "max_pixels": 40_000_000},
}


BATCH = URL + "/v1/predict/batch"  # the client sends every photo there


def batch(*results: dict) -> dict:
    return {"results": list(results), "model": {"name": THREE["name"], "version": THREE["version"]}}


def prediction(label: str, confidence: float) -> dict:
    rest = round((1 - confidence) / 2, 6)
    probabilities = {x: confidence if x == label else rest for x in THREE["labels"]}
    return {"label": label, "confidence": confidence, "probabilities": probabilities}


@pytest.fixture
def recorded(monkeypatch):
    """A recorded API that serves a three-label model; tests add /v1/predict/batch answers."""
    monkeypatch.setenv("CATDOG_API_URL", URL)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(URL + "/readyz", json={"status": "ready"})
        mock.get(URL + "/v1/model", json=THREE)
        yield mock


def test_other_says_neither_and_still_shows_every_probability(recorded):
    recorded.post(BATCH, json=batch(prediction("other", 0.93)))
    at = page()
    assert "for anything else it answers “neither a cat nor a dog”" in at.markdown[0].value
    at.button(key="example-sunflower.jpg").click().run()
    assert not at.exception and not at.error
    block = results_block(at)
    assert "<b>Neither a cat nor a dog</b> · 93.0% sure" in block
    assert "1 neither a cat nor a dog" in summary(block)
    for label, p in (("cat", "3.5%"), ("dog", "3.5%"), ("other", "93.0%")):
        assert f"{label}</span>" in block and f"<span>{p}</span>" in block
    assert 'alt="sunflower.jpg: neither a cat nor a dog, 93.0% sure"' in block


def test_batch_summary_counts_each_outcome_once(recorded, cat_bytes, dog_bytes):
    recorded.post(
        URL + "/v1/predict/batch",
        json={"results": [
            prediction("cat", 0.99), prediction("dog", 0.62), prediction("other", 0.9),
            {"error": {"code": "not_an_image", "message": "The file looks like a PDF document."}},
        ]},
    )  # fmt: skip
    at = page()
    at.file_uploader[0].set_value([
        ("a.jpg", cat_bytes, "image/jpeg"), ("b.jpg", dog_bytes, "image/jpeg"),
        ("c.jpg", cat_bytes[:-1], "image/jpeg"), ("d.jpg", b"%PDF", "image/jpeg"),
    ])  # fmt: skip
    at.run()
    at.button(key="classify").click().run()
    assert not at.exception
    said = summary(results_block(at))
    for count in ("1 cat", "0 dogs", "1 neither a cat nor a dog", "1 not sure", "1 failed",
                  "0 not classified yet"):  # fmt: skip
        assert f"</span> {count}</li>" in said, said
    assert "4 photos:" in said


def test_a_proxy_error_is_the_plain_offline_message(recorded):
    recorded.post(BATCH, status=502, body="<html>Bad Gateway</html>")
    at = page()
    at.button(key="example-puppy.jpg").click().run()
    assert not at.exception
    assert "may be restarting" in at.main.error[0].value
    assert "HTTP 502" in at.expander[0].caption[0].value


def test_an_answer_that_is_not_the_catdog_api_is_plain_words_too(recorded):
    recorded.post(BATCH, status=404, body="<html>Not Found</html>")
    at = page()
    at.button(key="example-puppy.jpg").click().run()
    assert at.main.error[0].value.startswith("The classifier sent an answer this page does not")
    assert "HTTP 404" in at.expander[0].caption[0].value
    assert not any(word in texts(at) for word in DEVELOPER_WORDS)


def test_the_apis_own_messages_are_shown_as_they_are(recorded):
    message = "Too many requests from your address (limit 2 per 1 minute); wait and retry."
    recorded.post(
        BATCH, status=429, json={"error": {"code": "rate_limited", "message": message}}
    )
    at = page()
    at.button(key="example-puppy.jpg").click().run()
    assert [e.value for e in at.main.error] == [message]


def test_a_slow_api_says_so(recorded, monkeypatch):
    monkeypatch.setenv("CATDOG_API_TIMEOUT", "1.5")
    recorded.post(BATCH, body=requests.ReadTimeout("read timed out"))
    at = page()
    at.button(key="example-puppy.jpg").click().run()
    assert not at.exception
    assert "may be restarting" in at.main.error[0].value


def test_invalid_settings_are_an_error_message(monkeypatch):
    monkeypatch.setenv("CATDOG_API_TIMEOUT", "soon")
    at = page()
    assert not at.exception
    assert "CATDOG_* environment variables" in at.error[0].value
    assert "api_timeout" in at.error[0].value
