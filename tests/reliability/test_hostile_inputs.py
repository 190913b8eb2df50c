"""The hostile corpus (``catdog.testing.hostile``) against the API: a clear 4xx for each, never a 5xx.

Every case goes through the Flask test client and (slow) through the production gunicorn
server over loopback; the uploaded files also go through ``catdog predict``. For each answer: the status and error code the corpus expects,
the JSON error schema, a request id and ``nosniff`` header, and no stack trace or server
path in the body. After the corpus the server must still be ready, still classify a
real cat photo as "cat", and (under gunicorn) still run the workers it started with.
Then what only a raw socket can send (malformed HTTP, a slow body over the limit), and
seeded Hypothesis fuzzing: random bytes and random mutations of a real JPEG.
"""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catdog.api.errors import ERROR_TABLE
from catdog.cli import main
from catdog.model.errors import (
    DecodeTooCostly,
    EmptyFile,
    NotAnImage,
    TooManyPixels,
    TruncatedImage,
    UnsupportedFormat,
)
from catdog.testing.hostile import (
    BATCH_PATH,
    PATH,
    Case,
    Part,
    corpus,
    multipart,
    raw_protocol_cases,
    raw_request,
)
from tests.conftest import CAT_PHOTOS
from tests.reliability.conftest import LEAKS, UPLOAD_LIMIT, read_answer

PHOTO = CAT_PHOTOS[0].read_bytes()
CASES = corpus(PHOTO, upload_limit=UPLOAD_LIMIT)
#: The statuses the API documents for an upload, good or bad.
UPLOAD_ANSWERS = {200, 400, 413, 415, 422}
#: The HTTP status the API gives each error code (the CLI reports codes only).
STATUS_OF_CODE = {code: status for status, code, _ in ERROR_TABLE}
#: What an image's content alone decides (None: a prediction): the CLI reports these per file too.
IMAGE_CODES = {None, EmptyFile.code, TruncatedImage.code, NotAnImage.code, UnsupportedFormat.code, TooManyPixels.code,
               DecodeTooCostly.code}


def assert_safe(status: int, headers, body: bytes) -> dict:
    """What every answer must be: not a 5xx, JSON, identified, nothing leaked; returns the JSON."""
    assert status < 500, body[:500]
    for leak in LEAKS:
        assert leak not in body, f"{leak!r} leaked in a {status} answer: {body[:500]!r}"
    assert headers.get("X-Request-ID")
    assert headers.get("X-Content-Type-Options") == "nosniff"
    payload = json.loads(body)
    if status >= 400:
        assert list(payload) == ["error"], payload
        assert isinstance(payload["error"]["code"], str) and payload["error"]["code"]
        assert isinstance(payload["error"]["message"], str) and len(payload["error"]["message"]) > 20
    return payload


def check(case: Case, status: int, headers, body: bytes) -> None:
    payload = assert_safe(status, headers, body)
    code = payload["error"]["code"] if status >= 400 else None
    assert (status, code) in case.expected, f"{case.name}: got {status} {code}: {payload}"
    if status == 200 and case.path == PATH:
        assert payload["label"] in ("cat", "dog", "other")
        if case.label:
            assert payload["label"] == case.label, f"{case.name}: {payload}"
    if status == 200 and case.path == BATCH_PATH:
        for result in payload["results"]:
            assert result.get("label") in ("cat", "dog", "other") or set(result["error"]) == {"code", "message"}


def assert_still_serving(get, post_photo) -> None:
    """Ready, and a real cat photo is still a cat."""
    ready = get("/readyz")
    assert ready[0] == 200 and ready[1]["status"] == "ready"
    status, body = post_photo(PHOTO)
    assert status == 200 and body["label"] == "cat", body


# -- the corpus through the Flask test client ------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_through_the_test_client(api, case, figures):
    response = api.test_client().open(case.path, method=case.method, data=case.body,
                                      headers=case.request_headers())
    figures.tally("Flask test client").add(response.status_code)
    check(case, response.status_code, response.headers, response.get_data())


def test_test_client_app_still_serves_after_the_corpus(api):
    client = api.test_client()

    def get(path):
        response = client.get(path)
        return response.status_code, response.json

    def post_photo(data):
        response = client.post(PATH, data=data, content_type="image/jpeg")
        return response.status_code, response.json

    assert_still_serving(get, post_photo)


def test_corpus_files_through_the_cli(tmp_path, capsys, figures):
    """Every uploaded file whose answer depends on its content only, given to ``catdog predict``:
    a label or the same error code per file as the API, one JSON line each, no traceback."""
    files = [case for case in CASES
             if case.file is not None and all(code in IMAGE_CODES for _, code in case.expected)]
    for number, case in enumerate(files):
        (tmp_path / f"{number:03d}.jpg").write_bytes(case.file)
    exit_code = main(["predict", "--json", "--threads", "1", "--no-progress", str(tmp_path)])
    out, err = capsys.readouterr()
    rows = {Path(row["path"]).name: row for row in map(json.loads, out.splitlines())}
    assert exit_code == 1 and "Traceback" not in err
    wrong = []
    for number, case in enumerate(files):
        row = rows[f"{number:03d}.jpg"]
        got = None if "label" in row else row["error"]["code"]
        answer = (200, None) if got is None else (STATUS_OF_CODE[got], got)
        figures.tally("CLI (catdog predict --json)").add(answer[0])
        if answer not in case.expected or (case.label and row.get("label") != case.label):
            wrong.append((case.name, row))
    assert not wrong, wrong


# -- the corpus through a real gunicorn server -----------------------------------------------


@pytest.fixture(scope="module")
def server(module_gunicorn):
    """The module's server and the workers it started with (none may die during the corpus)."""
    module_gunicorn.initial_workers = sorted(module_gunicorn.workers())
    assert len(module_gunicorn.initial_workers) == 2
    return module_gunicorn


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_through_gunicorn(server, case, figures):
    response = requests.request(case.method, server.url + case.path, data=case.body,
                                headers=case.request_headers(), timeout=30)
    figures.tally("gunicorn, HTTP (requests)").add(response.status_code)
    check(case, response.status_code, response.headers, response.content)


@pytest.mark.slow
@pytest.mark.parametrize("name,request_bytes", list(raw_protocol_cases().items()))
def test_malformed_http_gets_a_4xx_from_the_server(server, name, request_bytes, figures):
    """gunicorn's parser refuses these before the app runs; catdog's worker classes give its
    answer the API's JSON error shape (it used to be a short HTML page), never a 5xx."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        status, body = read_answer(sock)
    figures.tally("gunicorn, raw socket (malformed HTTP)").add(status)
    assert 400 <= status < 500, (name, status, body[:300])
    assert not any(leak in body for leak in LEAKS), body[:500]
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["code"] and error["message"]


@pytest.mark.slow
def test_slow_body_over_the_limit_is_refused_before_it_arrives(server, figures):
    """Content-Length over the limit, body dribbled at 20 KB/s: 413 within seconds, not after 100 s."""
    _, content_type = multipart(Part(b"image", b""))
    head = raw_request("POST", PATH, [("Content-Type", content_type), ("Content-Length", str(UPLOAD_LIMIT + 1))])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        answered = False
        for _ in range(100):  # at most 100 x 2 KB in 10 s: a small fraction of the announced body
            if select.select([sock], [], [], 0.1)[0]:
                answered = True
                break
            try:
                sock.sendall(b"\0" * 2048)
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
        assert answered, "no answer while the body was still arriving"
        status, body = read_answer(sock)
    figures.tally("gunicorn, raw socket (slow body over the limit)").add(status)
    assert status == 413 and json.loads(body)["error"]["code"] == "file_too_large"
    assert time.monotonic() - started < 5


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["multipart", "raw image/jpeg"])
def test_chunked_body_over_the_limit_is_413(server, figures, kind):
    """No Content-Length (chunked): the app stops reading one byte past the limit and answers
    413. A raw image body used to be cut at the limit without a word and answered 200 (the
    JPEG decoder never reads what follows the image)."""
    if kind == "multipart":
        body, content_type = multipart(Part(b"image", PHOTO + bytes(UPLOAD_LIMIT)))
    else:
        body, content_type = PHOTO + bytes(UPLOAD_LIMIT), "image/jpeg"
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    response = requests.post(server.url + PATH, data=chunks, headers={"Content-Type": content_type}, timeout=30)
    figures.tally("gunicorn, HTTP (chunked body over the limit)").add(response.status_code)
    assert response.status_code == 413
    assert assert_safe(response.status_code, response.headers, response.content)["error"]["code"] == "file_too_large"


@pytest.mark.slow
def test_chunked_body_under_the_limit_is_served(server):
    chunks = (PHOTO[i:i + 4096] for i in range(0, len(PHOTO), 4096))
    response = requests.post(server.url + PATH, data=chunks, headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert response.status_code == 200 and response.json()["label"] == "cat"


@pytest.mark.slow
@pytest.mark.parametrize("name,framing", [
    ("chunk size that is not hexadecimal", b"zz\r\nabc\r\n0\r\n\r\n"),
    ("chunk without its terminator", b"3\r\nabcXY0\r\n\r\n"),
])
def test_malformed_chunked_framing_is_400_json(server, figures, name, framing):
    """It used to be a 500 with a traceback in the log: the app read the body and gunicorn's
    parser raised in the middle of it."""
    request_bytes = raw_request("POST", PATH, [("Content-Type", "image/jpeg"), ("Transfer-Encoding", "chunked")],
                                framing)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        status, body = read_answer(sock)
    figures.tally("gunicorn, raw socket (malformed chunked framing)").add(status)
    assert status == 400, body[:300]
    assert json.loads(body)["error"]["code"] == "malformed_body"


@pytest.mark.slow
def test_gunicorn_still_serves_after_the_corpus(server):
    def get(path):
        response = requests.get(server.url + path, timeout=10)
        return response.status_code, response.json()

    def post_photo(data):
        response = requests.post(server.url + PATH, files={"image": ("cat.jpg", data)}, timeout=30)
        return response.status_code, response.json()

    assert_still_serving(get, post_photo)
    assert sorted(server.workers()) == server.initial_workers, "a worker died or was replaced"
    log = server.log()
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log and '"severity":"ERROR"' not in log


# -- seeded fuzzing --------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def post_fuzzed(api, data: bytes, raw_body: bool):
    client = api.test_client()
    if raw_body:
        return client.post(PATH, data=data, content_type="image/jpeg")
    body, content_type = multipart(Part(b"image", data))
    return client.post(PATH, data=body, content_type=content_type)


@FUZZ
@given(data=st.binary(max_size=4096), raw_body=st.booleans())
def test_fuzz_random_bytes_never_5xx(api, figures, data, raw_body):
    response = post_fuzzed(api, data, raw_body)
    figures.tally("Hypothesis: random bytes").add(response.status_code)
    assert response.status_code in UPLOAD_ANSWERS
    assert_safe(response.status_code, response.headers, response.get_data())


@st.composite
def mutated_photo(draw) -> bytes:
    """The real JPEG after 1-6 random edits: flipped, overwritten, inserted or deleted bytes, a cut."""
    data = bytearray(PHOTO)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break  # deleted to nothing: an empty body is a hostile input too
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "cut"]))
        if edit == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=64))
            data[at:at + len(chunk)] = chunk
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif edit == "delete":
            del data[at:at + draw(st.integers(1, 256))]
        elif len(data) > 1:
            del data[max(1, at):]
    return bytes(data)


@FUZZ
@given(data=mutated_photo(), raw_body=st.booleans())
def test_fuzz_mutated_jpeg_never_5xx(api, figures, data, raw_body):
    response = post_fuzzed(api, data, raw_body)
    figures.tally("Hypothesis: mutated JPEG").add(response.status_code)
    assert response.status_code in UPLOAD_ANSWERS
    payload = assert_safe(response.status_code, response.headers, response.get_data())
    if response.status_code == 200:
        assert payload["label"] in ("cat", "dog", "other")
