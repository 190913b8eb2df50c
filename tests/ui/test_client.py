"""The UI's HTTP client on a mocked API: typed results, one readable ApiError for every failure."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from responses import matchers

from catdog.ui import client as client_module
from catdog.ui.client import ApiClient, ApiError, Classification, Upload

URL = "http://api.test:8000"
CAT = {
    "label": "cat",
    "confidence": 0.97,
    "probabilities": {"cat": 0.97, "dog": 0.03},
    "model": {"name": "catdog-lite0", "version": "1.0.0"},
    "elapsed_ms": 9.8,
}
DOG = {
    "label": "dog",
    "confidence": 0.91,
    "probabilities": {"cat": 0.09, "dog": 0.91},
    "elapsed_ms": 8.1,
}


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def sent_timeouts(monkeypatch) -> list[float]:
    """The ``timeout`` of every request the client sends."""
    seen: list[float] = []
    original = requests.request

    def spy(method, url, **kwargs):
        seen.append(kwargs["timeout"])
        return original(method, url, **kwargs)

    monkeypatch.setattr(client_module.requests, "request", spy)
    return seen


@pytest.fixture
def client() -> ApiClient:
    return ApiClient(URL + "/", timeout=2.5)


# -- success ----------------------------------------------------------------------------------


def test_classify_posts_the_image_field_to_predict(api, client):
    api.post(
        URL + "/predict",
        json=CAT,
        match=[matchers.multipart_matcher({"image": ("cat.jpg", b"jpeg-bytes", "image/jpeg")})],
    )
    result = client.classify(b"jpeg-bytes", "cat.jpg", "image/jpeg")
    assert result == Classification("cat", 0.97, {"cat": 0.97, "dog": 0.03}, elapsed_ms=9.8)
    assert result.probability("dog") == pytest.approx(0.03)


def test_requests_use_the_timeout(api, client, sent_timeouts):
    api.post(URL + "/predict", json=CAT)
    client.classify(b"x", "cat.jpg", "image/jpeg")
    assert sent_timeouts == [2.5]


def test_health_ready(api, client):
    api.get(URL + "/readyz", json={"status": "ready", "model": "catdog-lite0"})
    status = client.health()
    assert status.ready and status.reachable and status.url == URL


def test_health_not_ready_is_an_answer_not_an_exception(api, client):
    api.get(
        URL + "/readyz", status=503, json=error_body("not_ready", "The model is still loading.")
    )
    status = client.health()
    assert not status.ready and status.reachable
    assert status.message == "The model is still loading."


def test_health_when_down_says_how_to_start_the_api(client):
    with responses.RequestsMock() as mock:
        mock.get(URL + "/readyz", body=requests.ConnectionError("refused"))
        status = client.health()
    assert not status.ready and not status.reachable
    assert "catdog serve" in status.message and URL in status.message


def test_model_info_finds_the_headline_accuracy(api, client):
    api.get(
        URL + "/v1/model",
        json={
            "name": "catdog-lite0",
            "version": "1.0.0",
            "labels": ["cat", "dog"],
            "input_size": 224,
            "threshold": 0.5,
            "temperature": 1.2,
            "metrics": {
                "holdout": {"n": 399, "accuracy": 0.992},
                "val": {"n": 1000, "accuracy": 0.987, "log_loss": 0.04},
            },
        },
    )
    info = client.model_info()
    assert (info.name, info.version, info.labels, info.accuracy) == (
        "catdog-lite0",
        "1.0.0",
        ("cat", "dog"),
        0.987,
    )


def test_model_info_without_metrics_has_no_accuracy(api, client):
    api.get(
        URL + "/v1/model",
        json={"name": "m", "version": "0", "metrics": {"holdout": {"accuracy": None}}},
    )
    assert client.model_info().accuracy is None


def test_model_info_is_none_when_the_api_has_no_model(api, client):
    api.get(URL + "/v1/model", status=503, json=error_body("not_ready", "loading"))
    assert client.model_info() is None


def test_classify_many_uses_one_batch_request_with_per_file_errors(api, client):
    api.post(
        URL + "/v1/predict/batch",
        json={
            "results": [
                CAT,
                {
                    "error": {
                        "code": "not_an_image",
                        "message": "The file looks like a PDF document.",
                    }
                },
                DOG,
            ],
            "model": {"name": "catdog-lite0", "version": "1.0.0"},
            "elapsed_ms": 30.0,
        },
    )
    results = client.classify_many(
        [
            Upload(b"a", "a.jpg", "image/jpeg"),
            (b"b", "b.jpg", "image/jpeg"),
            Upload(b"c", "c.png", "image/png"),
        ]
    )
    assert [type(r) for r in results] == [Classification, ApiError, Classification]
    assert results[1].code == "not_an_image" and "PDF" in results[1].message
    assert results[2].label == "dog"
    body = api.calls[0].request.body
    assert body.count(b'name="images"') == 3


def test_classify_many_with_one_file_uses_predict(api, client):
    api.post(URL + "/predict", json=DOG)
    assert client.classify_many([(b"d", "d.jpg", "image/jpeg")])[0].label == "dog"


def test_classify_many_chunks_large_selections(api, client, monkeypatch):
    monkeypatch.setattr(client_module, "BATCH_FILES", 2)

    def answer(request):
        n = request.body.count(b'name="images"')
        return 200, {}, json.dumps({"results": [CAT] * n})

    api.add_callback(responses.POST, URL + "/v1/predict/batch", callback=answer)
    api.post(URL + "/predict", json=DOG)
    results = client.classify_many([(bytes([i]), f"{i}.jpg", "image/jpeg") for i in range(5)])
    assert [r.label for r in results] == ["cat"] * 4 + ["dog"]
    assert len(api.calls) == 3


def test_an_oversized_batch_is_split_so_only_the_big_file_fails(api, client):
    too_big = error_body("file_too_large", "The file is 12.0 MB, over the limit of 10.5 MB.")

    def batch(request):
        if b"big.jpg" in request.body:
            return 413, {}, json.dumps(too_big)
        n = request.body.count(b'name="images"')
        return 200, {}, json.dumps({"results": [CAT] * n})

    def single(request):
        return (
            (413, {}, json.dumps(too_big))
            if b"big.jpg" in request.body
            else (200, {}, json.dumps(DOG))
        )

    api.add_callback(responses.POST, URL + "/v1/predict/batch", callback=batch)
    api.add_callback(responses.POST, URL + "/predict", callback=single)
    names = ["a.jpg", "big.jpg", "c.jpg", "d.jpg"]
    results = client.classify_many([(b"x", name, "image/jpeg") for name in names])
    assert (
        isinstance(results[1], ApiError)
        and results[1].status == 413
        and "12.0 MB" in results[1].message
    )
    assert [r.label for i, r in enumerate(results) if i != 1] == ["dog", "cat", "cat"]


# -- failures: one ApiError with a message for people -----------------------------------------


def test_4xx_carries_the_apis_json_message_and_code(api, client):
    api.post(
        URL + "/predict",
        status=415,
        json=error_body("not_an_image", "The file looks like a PDF document; send a JPEG photo."),
    )
    with pytest.raises(ApiError) as info:
        client.classify(b"%PDF-1.7", "cat.jpg", "image/jpeg")
    assert info.value.message == "The file looks like a PDF document; send a JPEG photo."
    assert (info.value.status, info.value.code) == (415, "not_an_image")
    assert str(info.value) == info.value.message


def test_a_single_bad_file_in_classify_many_is_that_files_error(api, client):
    api.post(
        URL + "/predict", status=422, json=error_body("too_many_pixels", "The image is 9000x9000.")
    )
    [result] = client.classify_many([(b"x", "huge.png", "image/png")])
    assert isinstance(result, ApiError) and result.code == "too_many_pixels"


def test_5xx_non_json_is_explained(api, client):
    api.post(
        URL + "/predict",
        status=502,
        body="<html><body>Bad Gateway</body></html>",
        content_type="text/html",
    )
    with pytest.raises(ApiError) as info:
        client.classify(b"x", "cat.jpg", "image/jpeg")
    assert info.value.status == 502 and info.value.code is None
    assert "502" in info.value.message and URL in info.value.message
    assert "<html>" not in info.value.message


def test_4xx_non_json_suggests_a_wrong_url(api, client):
    api.get(URL + "/readyz", status=404, body="Not Found", content_type="text/plain")
    status = client.health()
    assert status.reachable and not status.ready
    assert "CATDOG_API_URL" in status.message


def test_200_that_is_not_json_is_an_api_error(api, client):
    api.post(URL + "/predict", body="<html>hello</html>", content_type="text/html")
    with pytest.raises(ApiError, match="does not understand"):
        client.classify(b"x", "cat.jpg", "image/jpeg")


def test_200_json_of_the_wrong_shape_is_an_api_error(api, client):
    api.post(URL + "/predict", json={"prediction": "cat"})
    with pytest.raises(ApiError, match="does not understand"):
        client.classify(b"x", "cat.jpg", "image/jpeg")


def test_server_errors_in_classify_many_are_raised_not_hidden_per_file(api, client):
    api.post(
        URL + "/v1/predict/batch",
        status=500,
        json=error_body("internal_error", "Bug; request id abc."),
    )
    with pytest.raises(ApiError) as info:
        client.classify_many([(b"a", "a.jpg", "image/jpeg"), (b"b", "b.jpg", "image/jpeg")])
    assert info.value.status == 500 and "abc" in info.value.message


def test_connection_refused_says_where_and_how_to_start_it(free_port):
    client = ApiClient(f"http://127.0.0.1:{free_port}", timeout=2)
    with pytest.raises(ApiError) as info:
        client.classify(b"x", "cat.jpg", "image/jpeg")
    message = info.value.message
    assert f"not reachable at http://127.0.0.1:{free_port}" in message and "catdog serve" in message
    assert info.value.status is None


def test_timeout_says_the_api_was_too_slow(api, client):
    api.post(URL + "/predict", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(ApiError) as info:
        client.classify(b"x", "cat.jpg", "image/jpeg")
    assert (
        "did not answer within 2.5 s" in info.value.message
        and "CATDOG_API_TIMEOUT" in info.value.message
    )


def test_connect_timeout_is_reported_as_a_timeout(api, client):
    api.get(URL + "/v1/model", body=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(ApiError, match="did not answer within"):
        client.model_info()


def test_the_api_key_is_sent_when_configured(api):
    api.post(URL + "/predict", json=CAT, match=[matchers.header_matcher({"X-API-Key": "s3cret"})])
    ApiClient(URL, api_key="s3cret").classify(b"x", "cat.jpg", "image/jpeg")


def test_no_api_key_header_without_a_key(api, client):
    api.post(URL + "/predict", json=CAT)
    client.classify(b"x", "cat.jpg", "image/jpeg")
    assert "X-API-Key" not in api.calls[0].request.headers


def test_health_probe_does_not_wait_the_full_timeout(api, sent_timeouts):
    api.get(URL + "/readyz", json={"status": "ready"})
    ApiClient(URL, timeout=60).health()
    assert sent_timeouts == [client_module.PROBE_TIMEOUT]
