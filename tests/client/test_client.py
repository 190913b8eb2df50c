"""catdog.client.Client against the real app on a loopback port: every kind of photo, batching
within the server's limits, per-photo errors, the API's codes, retries and Retry-After."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from catdog.client import APIConnectionError, APIError, Client, ServerStatus
from catdog.prediction import Prediction
from tests.api.conftest import PHOTOS, serving
from tests.api.test_operations import metric
from tests.conftest import CAT_PHOTOS


@pytest.fixture
def api(live_url):
    with Client(live_url, timeout=30) as client:
        yield client


def engine(classifier, data: bytes) -> dict:
    return classifier.predict(data).to_dict()


# -- one photo -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "named", "file"])
def test_classify_any_kind_of_photo_gives_the_engines_prediction(api, classifier, cat_photo, kind):
    photo = {"path": cat_photo, "str": str(cat_photo), "bytes": cat_photo.read_bytes(),
             "named": ("tom.jpg", cat_photo.read_bytes())}.get(kind)
    if kind == "file":
        photo = cat_photo.open("rb")
    prediction = api.classify(photo)
    assert isinstance(prediction, Prediction)
    assert prediction.to_dict() == engine(classifier, cat_photo.read_bytes())


def test_classify_a_pil_image(api, classifier, dog_photo):
    image = Image.open(dog_photo)
    image.load()
    assert api.classify(image).label == "dog"
    assert api.classify(image.convert("CMYK")).label == "dog"  # not PNG-able: sent as RGB


def test_labels_come_from_the_server(api, classifier, cat_bytes):
    model = api.model()
    assert model.labels == tuple(classifier.recipe.labels)
    assert model.name == classifier.recipe.name and model.limits.max_batch == 32
    assert set(api.classify(cat_bytes).probabilities) == set(model.labels)


def test_a_bad_photo_raises_the_apis_code(api, bad_inputs):
    with pytest.raises(APIError) as info:
        api.classify(bad_inputs["not_an_image"])
    error = info.value
    assert (error.code, error.status) == ("not_an_image", 415)
    assert "PDF" in error.message and str(error) == error.message
    assert error.request_id and len(error.request_id) == 32


def test_photo_of_the_wrong_type_is_a_type_error(api):
    with pytest.raises(TypeError, match="path, bytes, a binary file object, a PIL image or a"):
        api.classify(12)
    with pytest.raises(TypeError, match="binary mode"):
        api.classify(io.StringIO("text"))


# -- many photos -----------------------------------------------------------------------------------


def test_classify_many_keeps_order_and_puts_errors_in_their_slots(make_app, classifier, bad_inputs, tmp_path):
    app = make_app(max_batch=2)
    photos = [path for path, _ in PHOTOS]
    mixed = [photos[0], bad_inputs["truncated_image"], photos[3], tmp_path / "missing.jpg", *photos[4:]]
    with serving(app) as url, Client(url) as client:
        results = client.classify_many(mixed)
        metrics = client.session.get(url + "/metrics").text
    assert len(results) == len(mixed)
    for photo, result in zip(mixed, results):
        if photo in photos:
            assert isinstance(result, Prediction)
            expected = classifier.predict(photo.read_bytes())
            assert result.label == expected.label
            assert result.probabilities == pytest.approx(expected.probabilities, abs=1e-5)
    assert isinstance(results[1], APIError) and results[1].code == "truncated_image"
    assert isinstance(results[3], APIError) and results[3].code == "unreadable_file"
    # 5 readable photos, at most 2 per request (the limit /v1/model advertises): 3 requests
    assert metric(metrics, "catdog_http_requests_total", endpoint="/v1/predict/batch", status="200") == 3


def test_classify_many_stays_within_the_body_limit(make_app, bad_inputs):
    """A photo over the limit gets its own error; the others are sent in requests that fit."""
    too_big = b"\xff\xd8" + bytes(400_000)
    with serving(make_app(max_upload_mb=0.3)) as url, Client(url) as client:
        results = client.classify_many([*CAT_PHOTOS, too_big, CAT_PHOTOS[0]])
    assert [r.label for r in results if isinstance(r, Prediction)] == ["cat"] * (len(CAT_PHOTOS) + 1)
    error = results[len(CAT_PHOTOS)]
    assert isinstance(error, APIError) and (error.code, error.status) == ("file_too_large", 413)


def test_classify_many_of_nothing(api):
    assert api.classify_many([]) == []


# -- access, retries, failures ---------------------------------------------------------------------


def test_api_key(make_app, cat_bytes):
    with serving(make_app(api_keys=["sesame"])) as url:
        with pytest.raises(APIError) as info:
            Client(url).classify(cat_bytes)
        assert (info.value.code, info.value.status) == ("unauthorized", 401)
        assert Client(url, api_key="sesame").classify(cat_bytes).label == "cat"


def test_rate_limit_is_retried_after_the_servers_retry_after(make_app, cat_bytes):
    with serving(make_app(rate_limit="1/second")) as url:
        started = time.monotonic()
        with Client(url, retries=3) as client:
            assert [client.classify(cat_bytes).label for _ in range(3)] == ["cat"] * 3
        assert time.monotonic() - started >= 1.5  # it waited, as Retry-After said, twice
        time.sleep(1.1)  # a fresh window
        with Client(url, retries=0) as impatient:
            impatient.classify(cat_bytes)
            with pytest.raises(APIError) as info:
                impatient.classify(cat_bytes)
    error = info.value
    assert (error.code, error.status) == ("rate_limited", 429)
    assert error.retry_after and error.retry_after > 0 and "1 per 1 second" in error.message


class Interrupting:
    """WSGI middleware in front of the real app: the first ``times`` requests get ``status``
    with ``body`` (an overloaded load balancer, a proxy's error page), the rest reach catdog."""

    def __init__(self, app, times: int, status: str, body: bytes, headers: list, delay: float = 0.0):
        self.app, self.times, self.status, self.body, self.headers, self.delay = app, times, status, body, headers, delay
        self.seen = 0

    def __call__(self, environ, start_response):
        self.seen += 1
        if self.seen <= self.times:
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            time.sleep(self.delay)
            start_response(self.status, self.headers)
            return [self.body]
        return self.app(environ, start_response)


def test_503_is_retried_honouring_retry_after(app, cat_bytes):
    front = Interrupting(app, 2, "503 Service Unavailable", b'{"error": {"code": "overloaded", "message": "busy"}}',
                         [("Content-Type", "application/json"), ("Retry-After", "1")])
    with serving(front) as url, Client(url, retries=3, backoff=0.01) as client:
        started = time.monotonic()
        assert client.classify(cat_bytes).label == "cat"
        assert time.monotonic() - started >= 2  # two waits of the Retry-After second
    assert front.seen == 3


def test_503_after_the_retries_keeps_what_the_server_said(app, cat_bytes):
    front = Interrupting(app, 10, "503 Service Unavailable",
                         b'{"error": {"code": "overloaded", "message": "Too busy, come back later."}}',
                         [("Content-Type", "application/json"), ("X-Request-ID", "abc123")])
    with serving(front) as url, Client(url, retries=2, backoff=0.01) as client, \
            pytest.raises(APIError) as info:
        client.classify(cat_bytes)
    assert (info.value.code, info.value.status, info.value.message) == ("overloaded", 503, "Too busy, come back later.")
    assert info.value.request_id == "abc123" and front.seen == 3


def test_an_error_page_that_is_not_catdogs_is_an_api_error(app, cat_bytes):
    front = Interrupting(app, 1, "502 Bad Gateway", b"<html>bad gateway</html>", [("Content-Type", "text/html")])
    with serving(front) as url, Client(url) as client, pytest.raises(APIError) as info:
        client.classify(cat_bytes)
    assert (info.value.code, info.value.status) == ("http_error", 502)
    assert "502 Bad Gateway" in info.value.message and front.seen == 1  # 502 is not retried


def test_a_server_that_starts_late_is_reached_by_retrying(app, cat_bytes, free_port):
    url = f"http://127.0.0.1:{free_port}"
    ready = threading.Event()

    def start_late():
        time.sleep(0.8)
        with serving(app, port=free_port):
            ready.set()
            time.sleep(10)

    threading.Thread(target=start_late, daemon=True).start()
    with Client(url, retries=5, backoff=0.3) as client:
        assert client.classify(cat_bytes).label == "cat"
    assert ready.is_set()


def test_unreachable_and_too_slow_are_connection_errors(app, cat_bytes, free_port):
    with pytest.raises(APIConnectionError) as info:
        Client(f"http://127.0.0.1:{free_port}", retries=0).classify(cat_bytes)
    assert info.value.code == "unreachable" and info.value.status is None
    slow = Interrupting(app, 5, "200 OK", b"{}", [("Content-Type", "application/json")], delay=1.0)
    with serving(slow) as url, pytest.raises(APIConnectionError) as info:
        Client(url, timeout=0.3, retries=0).classify(cat_bytes)
    assert info.value.code == "timeout"


def test_status(live_url, free_port):
    assert Client(live_url).status() == ServerStatus(live_url, ready=True, reachable=True, message="ready")
    down = Client(f"http://127.0.0.1:{free_port}").status()
    assert not down.ready and not down.reachable and "not reachable" in down.message


def test_model_accuracy_is_the_model_cards_validation_accuracy(api, classifier):
    metrics = classifier.recipe.metrics
    splits = {name: split["accuracy"] for name, split in metrics.items()
              if isinstance(split, dict) and "accuracy" in split}
    expected = splits.get("val", metrics.get("accuracy", next(iter(splits.values()), None)))
    assert api.model().accuracy == expected
    assert api.model().raw["metrics"] == metrics  # nothing the server said is dropped


def test_the_client_does_not_load_the_engine():
    """A program that only calls a server imports neither numpy nor ONNX Runtime."""
    import subprocess
    import sys
    from pathlib import Path

    import catdog

    code = "import sys, catdog.client; print(sorted(m for m in ('numpy', 'onnxruntime', 'flask') if m in sys.modules))"
    src = str(Path(catdog.__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == "[]"
