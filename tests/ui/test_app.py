"""The Streamlit page, run by AppTest, with the API mocked at the HTTP layer (``responses``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from streamlit.testing.v1 import AppTest

import catdog.ui
from catdog.ui.widgets import example_files

APP = Path(catdog.ui.__file__).parent / "app.py"
URL = "http://api.test:8000"
MODEL = {
    "name": "catdog-lite0",
    "version": "1.0.0",
    "labels": ["cat", "dog"],
    "input_size": 224,
    "threshold": 0.5,
    "temperature": 1.0,
    "metrics": {"holdout": {"accuracy": 0.987}},
}


def prediction(label: str, confidence: float) -> dict:
    other = "dog" if label == "cat" else "cat"
    return {
        "label": label,
        "confidence": confidence,
        "probabilities": {label: confidence, other: round(1 - confidence, 6)},
        "elapsed_ms": 9.0,
    }


def batch(*results: dict) -> dict:
    """A /v1/predict/batch answer (the client sends every photo there)."""
    return {"results": list(results), "model": {"name": "catdog-lite0", "version": "1.0.0"}, "elapsed_ms": 20.0}


BATCH = URL + "/v1/predict/batch"


@pytest.fixture
def api(monkeypatch):
    """A mocked API that is up and ready; tests add /predict answers."""
    monkeypatch.setenv("CATDOG_API_URL", URL)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(URL + "/readyz", json={"status": "ready"})
        mock.get(URL + "/v1/model", json=MODEL)
        yield mock


def page() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=30).run()


def texts(at: AppTest) -> str:
    """Everything the page says, as one string, for 'does it show X' checks."""
    parts = [
        e.value
        for kind in (
            "title",
            "subheader",
            "markdown",
            "caption",
            "info",
            "error",
            "success",
            "warning",
        )
        for e in getattr(at, kind)
    ]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def example_button(at: AppTest, stem: str):
    return at.button(key=f"example-{stem}.jpg")


def test_page_renders_title_description_uploader_and_sidebar(api):
    at = page()
    assert not at.exception
    assert at.title[0].value == "🐱 catdog 🐶"
    assert "cat or a dog" in at.markdown[0].value
    uploader = at.file_uploader[0]
    assert uploader.accept_multiple_files
    assert set(uploader.allowed_type) >= {".jpg", ".jpeg", ".png"}
    sidebar = (
        "\n".join(str(e.value) for e in at.sidebar.success)
        + "\n"
        + "\n".join(str(e.value) for e in at.sidebar.markdown)
    )
    assert f"Ready at {URL}" in sidebar and "catdog-lite0" in sidebar
    assert at.sidebar.metric[0].value == "98.7%"
    assert at.button(key="classify").label == "Classify"
    assert at.button(key="classify").disabled  # nothing to classify yet
    assert {f"example-{p.name}" for p in example_files()} <= {b.key for b in at.button}


def test_one_click_on_an_example_shows_label_confidence_and_bar(api):
    api.post(BATCH, json=batch(prediction("cat", 0.973)))
    at = page()
    example_button(at, "kitten").click().run()
    assert not at.exception and not at.error
    assert "🐱 Cat" in [s.value for s in at.subheader]
    shown = texts(at)
    assert "**97.3%** confident" in shown
    assert "P(cat) 97.3%" in shown and "P(dog) 2.7%" in shown
    assert "Not sure" not in shown
    assert len(api.calls) >= 3 and api.calls[-1].request.url == BATCH
    assert b'name="images"; filename="kitten.jpg"' in api.calls[-1].request.body


def test_uploads_then_classify_shows_every_result_and_a_summary(api, cat_bytes, dog_bytes):
    api.post(
        URL + "/v1/predict/batch",
        json={
            "results": [prediction("cat", 0.99), prediction("dog", 0.62)],
            "model": {"name": "catdog-lite0", "version": "1.0.0"},
            "elapsed_ms": 20.0,
        },
    )
    at = page()
    at.file_uploader[0].set_value(
        [("tom.jpg", cat_bytes, "image/jpeg"), ("rex.jpg", dog_bytes, "image/jpeg")]
    )
    at.run()
    assert "Not classified yet" in texts(at)
    at.button(key="classify").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.subheader] == ["🐱 Cat", "🐶 Dog"]
    shown = texts(at)
    assert "**99.0%** confident" in shown and "**62.0%** confident" in shown
    assert "Not sure" in shown  # 0.62 < 0.7
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["🐱 Cats"] == "1" and metrics["🐶 Dogs"] == "1" and metrics["🤔 Not sure"] == "1"


def test_a_file_the_api_rejects_shows_the_apis_message(api):
    api.post(BATCH, json=batch({
        "error": {
            "code": "not_an_image",
            "message": "The file looks like a PDF document; send a JPEG photo.",
        }
    }))
    at = page()
    at.file_uploader[0].set_value(("cat.jpg", b"%PDF-1.7 not a photo", "image/jpeg"))
    at.run()
    at.button(key="classify").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The file looks like a PDF document; send a JPEG photo."]
    assert "No preview for cat.jpg" in texts(at)


def test_api_down_shows_a_clear_error_not_a_traceback(monkeypatch, free_port):
    monkeypatch.setenv("CATDOG_API_URL", f"http://127.0.0.1:{free_port}")
    at = page()
    assert not at.exception
    assert "not reachable" in at.sidebar.error[0].value
    example_button(at, "husky").click().run()
    assert not at.exception
    errors = [e.value for e in at.main.error]
    assert len(errors) == 1
    assert f"The catdog API is not reachable at http://127.0.0.1:{free_port}" in errors[0]
    assert "catdog serve" in errors[0]


def test_slow_api_shows_a_timeout_message(api, monkeypatch):
    import requests

    monkeypatch.setenv("CATDOG_API_TIMEOUT", "1.5")
    api.post(BATCH, body=requests.ReadTimeout("read timed out"))
    at = page()
    example_button(at, "puppy").click().run()
    assert not at.exception
    assert "did not answer within 1.5 s" in at.main.error[0].value


def test_server_error_without_json_is_explained(api):
    api.post(BATCH, status=502, body="<html>Bad Gateway</html>", content_type="text/html")
    at = page()
    example_button(at, "puppy").click().run()
    assert not at.exception
    assert "HTTP 502" in at.main.error[0].value


def test_examples_accumulate_and_can_be_removed(api):
    def answer(request):
        return 200, {}, json.dumps(batch(prediction("dog", 0.9)))

    api.add_callback(responses.POST, BATCH, callback=answer)
    at = page()
    example_button(at, "husky").click().run()
    example_button(at, "puppy").click().run()
    assert [s.value for s in at.subheader] == ["🐶 Dog", "🐶 Dog"]
    assert {m.label: m.value for m in at.metric}["🐶 Dogs"] == "2"
    at.button(key="clear-examples").click().run()
    assert not at.subheader and not at.exception


def test_invalid_settings_are_an_error_message(monkeypatch):
    monkeypatch.setenv("CATDOG_API_TIMEOUT", "soon")
    at = page()
    assert not at.exception
    assert "CATDOG_* environment variables" in at.error[0].value
    assert "api_timeout" in at.error[0].value
