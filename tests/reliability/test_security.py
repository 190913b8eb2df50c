"""Security properties of the upload path, beyond what tests/api checks one endpoint at a time.

* the size limit is enforced from Content-Length, before the body is read (real server);
* the type is decided by content: names and declared types change nothing;
* uploaded bytes never reach the disk (Werkzeug spools big parts to a temporary file:
  the API's request class keeps them in memory);
* logs hold no file names and no image bytes, only the allowed fields, for the whole corpus;
* CORS answers only configured origins, errors included; API keys are compared against
  every key, constant-time; every error (401, 404, 413, 429, ...) carries the security
  headers; the real server sends no version banner.
"""

from __future__ import annotations

import io
import logging
import socket
import tempfile
import time

import pytest
import requests
from flask import Flask, request

from catdog.api import security
from catdog.testing.hostile import PATH, PDF, Part, corpus, multipart, raw_request
from tests.conftest import CAT_PHOTOS
from tests.reliability.conftest import UPLOAD_LIMIT, read_answer

PHOTO = CAT_PHOTOS[0].read_bytes()
#: Over Werkzeug's 500 KB spooling threshold, under the 2 MB limit (JPEG decoders ignore the tail).
BIG_PHOTO = PHOTO + bytes(1_200_000)
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
#: Everything the access log may record about a request.
ALLOWED_LOG_FIELDS = {"method", "path", "status", "ms", "request_id", "size", "type", "label", "files", "errors",
                      "explain"}


# -- size limit before the body ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "image/jpeg"])
def test_content_length_over_the_limit_is_refused_without_the_body(module_gunicorn, content_type):
    """A client announcing 1 GB and sending nothing gets its 413 at once: the server never waits for it."""
    head = raw_request("POST", PATH, [("Content-Type", content_type), ("Content-Length", str(1 << 30))])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", module_gunicorn.port), timeout=5) as sock:
        sock.sendall(head)
        status, body = read_answer(sock)
    assert status == 413 and b'"file_too_large"' in body
    assert time.monotonic() - started < 2


# -- type by content ---------------------------------------------------------------------------


def test_names_and_declared_types_change_nothing(api):
    client = api.test_client()
    answers = []
    for name, declared in [("cat.jpg", "image/jpeg"), ("cat.png", "image/png"), ("cat.exe", "application/x-msdownload"),
                           ("notes.txt", "text/plain"), ("", "application/octet-stream")]:
        body, content_type = multipart(Part(b"image", PHOTO, name.encode(), declared.encode()))
        answers.append(client.post(PATH, data=body, content_type=content_type).json["probabilities"])
    answers.append(client.post(PATH, data=PHOTO, content_type="image/gif").json["probabilities"])
    assert all(answer == answers[0] for answer in answers)
    for name, declared in [("cat.jpg", b"image/jpeg"), ("cat.png", b"image/png")]:
        body, content_type = multipart(Part(b"image", PDF, name.encode(), declared))
        assert client.post(PATH, data=body, content_type=content_type).json["error"]["code"] == "not_an_image"


# -- nothing on disk ---------------------------------------------------------------------------


@pytest.fixture
def disk_watch(tmp_path, monkeypatch):
    """Points ``tempfile`` at an empty directory and records every temporary file made."""
    made: list[str] = []
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        real = getattr(tempfile, name)

        def record(*args, _real=real, _name=name, **kwargs):
            made.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, record)
    yield made
    assert not list(tmp.iterdir()), "files left in the temporary directory"


def test_werkzeug_alone_would_spool_a_big_upload_to_disk(disk_watch):
    """The control: a plain Flask app writes a 1.3 MB part to a temporary file."""
    app = Flask(__name__)
    app.post("/")(lambda: str(len(request.files["image"].read())))
    response = app.test_client().post("/", data={"image": (io.BytesIO(BIG_PHOTO), "cat.jpg")})
    assert response.text == str(len(BIG_PHOTO))
    assert disk_watch == ["TemporaryFile"]


def test_uploads_never_touch_the_disk(api, disk_watch):
    client = api.test_client()
    single = client.post(PATH, data={"image": (io.BytesIO(BIG_PHOTO), "cat.jpg")})
    assert single.status_code == 200 and single.json["label"] == "cat"
    files = [(io.BytesIO(BIG_PHOTO[: 700_000 + i]), f"{i}.jpg") for i in range(2)]  # 1.4 MB in all
    batch = client.post("/v1/predict/batch", data={"images": files})
    assert batch.status_code == 200 and [r["label"] for r in batch.json["results"]] == ["cat", "cat"]
    assert disk_watch == []


# -- logs --------------------------------------------------------------------------------------


def test_logs_hold_no_file_names_and_no_bytes_for_the_whole_corpus(api, caplog):
    cases = corpus(PHOTO, upload_limit=UPLOAD_LIMIT)
    client = api.test_client()
    with caplog.at_level(logging.DEBUG, logger="catdog"):
        for case in cases:
            client.open(case.path, method=case.method, data=case.body, headers=case.request_headers())
    access = [record for record in caplog.records if record.name == "catdog.api.access"]
    assert len(access) == len(cases)
    for record in access:
        assert set(record.fields) <= ALLOWED_LOG_FIELDS, record.fields
    text = "\n".join(record.getMessage() for record in caplog.records)
    # File names and file contents never appear (the request path is logged: "passwd" alone may).
    for secret in ("passwd.jpg", "win.ini", "cat.jpg", "cat.svg", "Evil.class", "alert("):
        assert secret not in text
    assert PHOTO[200:216].hex() not in text and repr(PHOTO[200:216])[2:-1] not in text


# -- CORS, keys, headers -----------------------------------------------------------------------


def test_no_cors_at_all_when_no_origin_is_configured(make_app):
    client = make_app(cors_origins=[]).test_client()
    for origin in ("http://localhost:8501", "http://evil.example"):
        response = client.get("/healthz", headers={"Origin": origin})
        assert not [h for h, _ in response.headers.items() if h.startswith("Access-Control-")]


def test_cors_preflight_from_another_origin_is_not_allowed(make_app):
    client = make_app(cors_origins=["http://ui.example"]).test_client()
    response = client.options(PATH, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_errors_are_readable_by_the_configured_origin_only(make_app):
    """A browser app must be able to read the JSON of a 415 or 413, or it can only say "failed"."""
    client = make_app(cors_origins=["http://ui.example"], max_upload_mb=0.05).test_client()
    for origin, allowed in (("http://ui.example", True), ("http://evil.example", False)):
        for data in (PDF, PHOTO):
            response = client.post(PATH, data=data, content_type="image/jpeg", headers={"Origin": origin})
            assert response.status_code in (413, 415)
            assert ("Access-Control-Allow-Origin" in response.headers) is allowed


def test_every_configured_key_is_compared_constant_time(make_app, monkeypatch):
    """hmac.compare_digest against every key, whichever matches: timing tells nothing."""
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    keys = ["first-key-0123456789", "second-key-0123456789", "third-key-0123456789"]
    client = make_app(api_keys=keys).test_client()
    for sent in (keys[0], keys[2], "wrong", ""):
        calls.clear()
        client.get("/v1/model", headers={"X-API-Key": sent} if sent else {})
        assert len(calls) == 3, sent


def error_responses(make_app):
    """One response for each error status a client can cause."""
    key = {"X-API-Key": "k" * 16}
    client = make_app(api_keys=["k" * 16], max_upload_mb=0.05).test_client()
    yield client.post(PATH, data=PHOTO, content_type="image/jpeg")  # 401, no key
    yield client.post(PATH, data=b"", content_type="image/jpeg", headers=key)  # 400
    yield client.post(PATH, data=PHOTO, content_type="image/jpeg", headers=key)  # 413 (limit 52 KB)
    yield client.post(PATH, data=PDF, content_type="image/png", headers=key)  # 415
    yield client.get("/nowhere", headers=key)  # 404
    yield client.get(PATH, headers=key)  # 405
    limited = make_app(rate_limit="1/minute").test_client()
    limited.post(PATH, data=PHOTO, content_type="image/jpeg")
    yield limited.post(PATH, data=PHOTO, content_type="image/jpeg")  # 429


def test_every_error_carries_the_security_headers(make_app):
    statuses = []
    for response in error_responses(make_app):
        statuses.append(response.status_code)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.status_code, name)
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Request-ID"]
        assert list(response.json) == ["error"]
    assert statuses == [401, 400, 413, 415, 404, 405, 429]


@pytest.mark.slow
def test_real_server_sends_no_version_banner(module_gunicorn):
    """gunicorn says only "gunicorn", on answers and on errors, including its own parser's."""
    base = module_gunicorn.url
    answers = [requests.get(f"{base}/healthz", timeout=5), requests.get(f"{base}/nowhere", timeout=5),
               requests.post(f"{base}{PATH}", data=PDF, headers={"Content-Type": "image/png"}, timeout=5)]
    for response in answers:
        assert response.headers["Server"] == "gunicorn"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    with socket.create_connection(("127.0.0.1", module_gunicorn.port), timeout=5) as sock:
        sock.sendall(raw_request("GET", "/healthz", [("X-Big", "x" * 20_000)]))  # refused by gunicorn itself
        answer = sock.recv(65536)
    status_line, *lines = answer.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 4")
    headers = dict(line.split(": ", 1) for line in lines)
    assert headers.get("Server", "gunicorn") == "gunicorn"
