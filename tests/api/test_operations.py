"""Health, readiness, model card, metrics, docs, request ids, logs and response headers."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from catdog.api.observability import JsonFormatter
from tests.api.test_predict import upload


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_when_loaded(client, classifier):
    body = client.get("/readyz").json
    assert body["status"] == "ready"
    assert body["model"]["name"] == classifier.recipe.name


def test_readyz_503_without_a_model(app):
    app.extensions["catdog"].classifier = None
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "not_ready"


def test_model_info_is_the_model_card(client, classifier):
    body = client.get("/v1/model").json
    for key in ("name", "version", "labels", "input_size", "threshold", "temperature", "metrics"):
        assert body[key] == classifier.info()[key]
    assert body["labels"] == ["cat", "dog", "other"] and body["other_label"] == "other"
    assert body["input_size"] == classifier.recipe.input.size == 288
    assert body["limits"] == {"max_upload_mb": 10.0, "max_batch": 32, "max_pixels": classifier.max_pixels}
    assert "file" not in body  # nothing about the server's file system


def test_index_points_to_the_docs(client):
    assert client.get("/").json["docs"] == "/docs"


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 if absent)."""
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_after_requests(client, cat_bytes, dog_bytes, bad_inputs):
    client.post("/v1/predict", data=upload(cat_bytes))
    client.post("/predict", data=upload(cat_bytes))
    client.post("/v1/predict", data=upload(bad_inputs["not_an_image"]))
    client.get("/nowhere")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert metric(text, "catdog_http_requests_total", endpoint="/v1/predict", method="POST", status="200") == 1
    assert metric(text, "catdog_http_requests_total", endpoint="/predict", method="POST", status="200") == 1
    assert metric(text, "catdog_http_requests_total", endpoint="/v1/predict", status="415") == 1
    assert metric(text, "catdog_http_requests_total", endpoint="unmatched", status="404") == 1
    assert metric(text, "catdog_http_request_duration_seconds_count", endpoint="/v1/predict", status="200") == 1
    assert metric(text, "catdog_predictions_total", label="cat") == 2
    assert metric(text, "catdog_model_load_seconds") > 0
    assert "/nowhere" not in text  # unknown paths must not create label values


def test_invented_methods_do_not_create_metric_labels(client):
    client.open("/v1/predict", method="BREW")
    text = client.get("/metrics").get_data(as_text=True)
    assert "BREW" not in text
    assert metric(text, "catdog_http_requests_total", method="other", status="405") == 1


def test_metrics_are_per_app(make_app, cat_bytes):
    first, second = make_app().test_client(), make_app().test_client()
    first.post("/v1/predict", data=upload(cat_bytes))
    assert metric(second.get("/metrics").get_data(as_text=True), "catdog_predictions_total", label="cat") == 0


def test_openapi_document_is_valid_and_complete(app):
    from openapi_spec_validator import validate

    document = app.test_client().get("/openapi.json").json
    validate(document)
    # Flask's /v2/models/<name> is OpenAPI's /v2/models/{name}.
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()}
    assert set(document["paths"]) == routes
    predict = document["paths"]["/v1/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"multipart/form-data", "image/*"}
    assert {"200", "400", "413", "415", "422"} <= set(predict["responses"])


def test_openapi_says_which_operations_need_a_key_and_the_server_agrees(make_app):
    """The document's ``security: []`` and the key check come from the same declaration."""
    app = make_app(api_keys=["k"], rate_limit="1000/minute")
    client = app.test_client()
    document = client.get("/openapi.json").json
    for path, item in document["paths"].items():
        url = path.replace("{name}", "catdog")
        for method, operation in item.items():
            status = client.open(url, method=method.upper()).status_code
            if operation.get("security") == []:
                assert status != 401 and "401" not in operation["responses"], (method, path)
            else:
                assert status == 401 and {"401", "429"} <= set(operation["responses"]), (method, path)


def test_openapi_states_the_real_limits(make_app):
    from openapi_spec_validator import validate

    document = make_app(max_batch=7, api_keys=["k"]).test_client().get("/openapi.json").json
    validate(document)
    assert "at most 7 files" in document["paths"]["/v1/predict/batch"]["post"]["description"]
    assert document["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"


def test_docs_page_is_self_contained(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "/v1/predict/batch" in page and "too_many_pixels" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external assets"
    assert "<script" not in page
    assert "style-src 'unsafe-inline'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("method,path", [("GET", "/healthz"), ("GET", "/nope"), ("GET", "/predict"),
                                         ("POST", "/v1/predict"), ("GET", "/metrics"), ("GET", "/docs")])
def test_every_response_has_a_request_id_and_security_headers(client, method, path):
    response = client.open(path, method=method)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Server" not in response.headers


def test_request_ids_are_unique(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("incoming,kept", [
    ("abc-123", True),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),
    ("has space", False),
    ("x" * 200, False),
    ("<script>", False),
])
def test_incoming_request_id(client, incoming, kept):
    echoed = client.get("/healthz", headers={"X-Request-ID": incoming}).headers["X-Request-ID"]
    assert (echoed == incoming) is kept


def test_one_log_line_per_request_without_file_names(client, cat_bytes, caplog):
    with caplog.at_level(logging.INFO, logger="catdog.api.access"):
        response = client.post("/v1/predict", data=upload(cat_bytes, "holiday-secret-name.jpg"),
                               headers={"X-Request-ID": "req-1"})
        client.get("/healthz")
    records = [r for r in caplog.records if r.name == "catdog.api.access"]
    assert len(records) == 2
    fields = records[0].fields
    assert fields["method"] == "POST" and fields["path"] == "/v1/predict" and fields["status"] == 200
    assert fields["request_id"] == "req-1" and fields["ms"] > 0
    assert fields["size"] == len(cat_bytes) and fields["type"] == "image/jpeg"
    assert fields["label"] == response.json["label"]
    assert "label" not in records[1].fields  # prediction fields only on predictions
    assert all("holiday-secret-name" not in r.getMessage() for r in caplog.records)
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "req-1" and line["severity"] == "INFO"


def test_log_line_cannot_be_forged_through_the_path(client, caplog):
    with caplog.at_level(logging.INFO, logger="catdog.api.access"):
        client.get("/x%0Astatus=200%20fake=1")
    (record,) = [r for r in caplog.records if r.name == "catdog.api.access"]
    assert "\n" not in record.getMessage()


def test_cors_allows_only_configured_origins(make_app):
    client = make_app(cors_origins=["http://ui.example"]).test_client()
    allowed = client.get("/healthz", headers={"Origin": "http://ui.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://ui.example"
    assert "X-Request-ID" in allowed.headers["Access-Control-Expose-Headers"]
    other = client.get("/healthz", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_preflight(make_app):
    client = make_app(cors_origins=["http://ui.example"], api_keys=["k"]).test_client()
    response = client.options("/v1/predict", headers={
        "Origin": "http://ui.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key",
    })
    assert response.status_code == 200  # preflights carry no key and must not be refused
    assert response.headers["Access-Control-Allow-Origin"] == "http://ui.example"
    assert "x-api-key" in response.headers["Access-Control-Allow-Headers"].lower()


def test_default_cors_origin_is_the_streamlit_ui(client):
    response = client.get("/healthz", headers={"Origin": "http://localhost:8501"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8501"


def test_bodies_over_the_spooling_threshold_read_the_same(client, cat_bytes):
    """Over 500 KB Werkzeug would spool a part to disk; the API keeps it in memory, same answer."""
    padded = cat_bytes + b"\0" * 600_000  # JPEG decoders ignore trailing bytes
    small = client.post("/v1/predict", data=upload(cat_bytes)).json
    large = client.post("/v1/predict", data={"image": (io.BytesIO(padded), "x.jpg")}).json
    assert small["probabilities"] == large["probabilities"]
