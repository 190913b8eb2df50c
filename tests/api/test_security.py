"""Optional API keys and the per-client photo rate limit (test client; the shared store and
the real server are in tests/reliability/test_limits.py)."""

from __future__ import annotations

import logging

import pytest

from catdog.config import ConfigError, Settings
from tests.api.test_predict import upload

ALPHA, BETA = "alpha-key-0123456789", "beta-key-0123456789"


@pytest.fixture
def keyed(make_app):
    return make_app(api_keys=[ALPHA, BETA]).test_client()


def test_no_key_is_401(keyed, cat_bytes):
    response = keyed.post("/v1/predict", data=upload(cat_bytes))
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert "X-API-Key" in response.json["error"]["message"]


def test_wrong_key_is_401(keyed):
    response = keyed.get("/v1/model", headers={"X-API-Key": ALPHA[:-1] + "x"})
    assert response.status_code == 401
    assert "not valid" in response.json["error"]["message"]


@pytest.mark.parametrize("key", [ALPHA, BETA])
def test_any_configured_key_works(keyed, cat_bytes, key):
    assert keyed.post("/v1/predict", data=upload(cat_bytes), headers={"X-API-Key": key}).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_probes_and_docs_stay_open(keyed, path):
    assert keyed.get(path).status_code == 200


def test_unknown_path_is_still_404_with_keys(keyed):
    assert keyed.get("/nope").status_code == 404


def test_keys_come_from_the_environment(make_app, classifier, monkeypatch, caplog):
    from catdog.api import create_app

    monkeypatch.setenv("CATDOG_API_KEYS", f"{ALPHA}, {BETA}")
    with caplog.at_level(logging.INFO, logger="catdog.api"):
        client = create_app(classifier=classifier).test_client()
    assert "API keys: 2 active" in caplog.text
    assert client.get("/v1/model").status_code == 401
    assert client.get("/v1/model", headers={"X-API-Key": BETA}).status_code == 200


@pytest.mark.parametrize("value", ["", " ", ",", " , ,"])
def test_a_key_setting_that_holds_no_key_refuses_to_start(monkeypatch, value):
    """Set to nothing, the old behaviour was an open API without a word; now it is an error."""
    monkeypatch.setenv("CATDOG_API_KEYS", value)
    with pytest.raises(ConfigError, match="^CATDOG_API_KEYS is set but holds no key"):
        Settings.from_env()


def test_short_keys_are_refused(monkeypatch):
    monkeypatch.setenv("CATDOG_API_KEYS", f"{ALPHA},x")
    with pytest.raises(ConfigError, match="1 key.*shorter than 16 characters"):
        Settings.from_env()


def test_without_keys_the_log_says_the_api_is_open(make_app, caplog):
    with caplog.at_level(logging.INFO, logger="catdog.api"):
        make_app()
    assert "API keys: none; anyone who can reach the API may use it" in caplog.text


def _post(client, n: int = 1, **kwargs):
    """A cheap prediction request (a 3-byte non-image): it costs a photo like any other."""
    if n == 1:
        return client.post("/v1/predict", data=b"abc", content_type="image/jpeg", **kwargs)
    files = {"images": [(__import__("io").BytesIO(b"abc"), f"{i}.jpg") for i in range(n)]}
    return client.post("/v1/predict/batch", data=files, content_type="multipart/form-data", **kwargs)


def test_rate_limit_429(make_app):
    client = make_app(rate_limit="2/minute").test_client()
    for _ in range(2):
        assert _post(client).status_code == 415  # refused image, but the photo was counted
    response = _post(client)
    assert response.status_code == 429
    assert response.json["error"]["code"] == "rate_limited"
    assert "limit 2/minute" in response.json["error"]["message"]
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-Request-ID"]
    for _ in range(5):  # probes and the model card are never throttled
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/model").status_code == 200


def test_one_limit_across_every_prediction_endpoint_counting_photos(make_app):
    client = make_app(rate_limit="5/minute").test_client()
    assert _post(client, 3).status_code == 200  # a batch of 3 costs 3
    assert _post(client).status_code == 415  # 4
    refused = _post(client, 2)  # 4 + 2 > 5: refused whole, and nothing spent
    assert refused.status_code == 429 and "asked for 2 photos" in refused.json["error"]["message"]
    assert client.post("/predict", data=b"abc", content_type="image/jpeg").status_code == 415  # 5, old path
    assert _post(client).status_code == 429


def test_retry_after_only_on_429(make_app, cat_bytes):
    client = make_app(rate_limit="100/minute", api_keys=[ALPHA]).test_client()
    assert "Retry-After" not in client.post("/v1/predict", data=upload(cat_bytes),
                                            headers={"X-API-Key": ALPHA}).headers
    assert "Retry-After" not in client.post("/v1/predict", data=upload(cat_bytes)).headers  # 401
    assert "Retry-After" not in client.get("/healthz").headers


def test_guessing_keys_is_throttled_too(make_app):
    client = make_app(rate_limit="3/minute", api_keys=[ALPHA]).test_client()
    statuses = [_post(client, headers={"X-API-Key": f"guess-{i:012d}"}).status_code for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]  # each wrong key spent a photo


def test_rate_limit_is_per_client_address(make_app):
    client = make_app(rate_limit="1/minute").test_client()
    first = {"REMOTE_ADDR": "10.0.0.1"}
    assert _post(client, environ_base=first).status_code == 415
    assert _post(client, environ_base=first).status_code == 429
    assert _post(client, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 415


def test_rate_limit_behind_a_proxy_counts_the_forwarded_client(make_app):
    client = make_app(rate_limit="1/minute", proxy_hops=1).test_client()
    proxy = {"REMOTE_ADDR": "10.9.9.9"}
    assert _post(client, environ_base=proxy, headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 415
    assert _post(client, environ_base=proxy, headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 415
    assert _post(client, environ_base=proxy, headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 429


def test_two_proxy_hops_count_the_client_the_first_proxy_saw(make_app):
    """Cloud Run behind an external load balancer: the balancer and Google's front end each append."""
    client = make_app(rate_limit="1/minute", proxy_hops=2).test_client()
    front = {"REMOTE_ADDR": "10.9.9.9"}
    hops = {"X-Forwarded-For": "6.6.6.6, 1.1.1.1, 35.191.0.1"}  # spoofed, client, balancer
    assert _post(client, environ_base=front, headers=hops).status_code == 415
    hops = {"X-Forwarded-For": "7.7.7.7, 1.1.1.1, 35.191.0.2"}  # another spoof, same client
    assert _post(client, environ_base=front, headers=hops).status_code == 429


def test_without_a_store_the_log_says_the_limit_is_per_worker(make_app, caplog):
    with caplog.at_level(logging.INFO, logger="catdog.api"):
        make_app(rate_limit="10/minute")
    assert "counted in memory by each worker process" in caplog.text


def test_invalid_rate_limit_fails_at_startup(make_app):
    with pytest.raises(ValueError, match="CATDOG_RATE_LIMIT"):
        make_app(rate_limit="lots")
