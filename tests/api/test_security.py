"""Optional API keys and rate limiting."""

from __future__ import annotations

import pytest

from tests.api.test_predict import upload


@pytest.fixture
def keyed(make_app):
    return make_app(api_keys=["alpha-key", "beta-key"]).test_client()


def test_no_key_is_401(keyed, cat_bytes):
    response = keyed.post("/v1/predict", data=upload(cat_bytes))
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert "X-API-Key" in response.json["error"]["message"]


def test_wrong_key_is_401(keyed):
    response = keyed.get("/v1/model", headers={"X-API-Key": "alpha-kez"})
    assert response.status_code == 401
    assert "not valid" in response.json["error"]["message"]


@pytest.mark.parametrize("key", ["alpha-key", "beta-key"])
def test_any_configured_key_works(keyed, cat_bytes, key):
    assert keyed.post("/v1/predict", data=upload(cat_bytes), headers={"X-API-Key": key}).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_probes_and_docs_stay_open(keyed, path):
    assert keyed.get(path).status_code == 200


def test_unknown_path_is_still_404_with_keys(keyed):
    assert keyed.get("/nope").status_code == 404


def test_keys_come_from_the_environment(make_app, classifier, monkeypatch):
    from catdog.api import create_app

    monkeypatch.setenv("CATDOG_API_KEYS", "one, two")
    client = create_app(classifier=classifier).test_client()
    assert client.get("/v1/model").status_code == 401
    assert client.get("/v1/model", headers={"X-API-Key": "two"}).status_code == 200


def test_rate_limit_429(make_app, cat_bytes):
    client = make_app(rate_limit="2/minute").test_client()
    for _ in range(2):
        assert client.post("/v1/predict", data=upload(cat_bytes)).status_code == 200
    response = client.post("/v1/predict", data=upload(cat_bytes))
    assert response.status_code == 429
    assert response.json["error"]["code"] == "rate_limited"
    assert "2 per 1 minute" in response.json["error"]["message"]
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-Request-ID"]
    for _ in range(5):  # probes are never throttled
        assert client.get("/healthz").status_code == 200


def test_rate_limit_is_per_client_address(make_app):
    client = make_app(rate_limit="1/minute").test_client()
    first = {"REMOTE_ADDR": "10.0.0.1"}
    assert client.get("/v1/model", environ_base=first).status_code == 200
    assert client.get("/v1/model", environ_base=first).status_code == 429
    assert client.get("/v1/model", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_rate_limit_behind_a_proxy_counts_the_forwarded_client(make_app):
    client = make_app(rate_limit="1/minute", proxy_hops=1).test_client()
    proxy = {"REMOTE_ADDR": "10.9.9.9"}
    assert client.get("/v1/model", environ_base=proxy, headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 200
    assert client.get("/v1/model", environ_base=proxy, headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 200
    assert client.get("/v1/model", environ_base=proxy, headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 429


def test_invalid_rate_limit_fails_at_startup(make_app):
    with pytest.raises(ValueError, match="CATDOG_RATE_LIMIT"):
        make_app(rate_limit="lots")
