"""The real server: the production gunicorn command and ``catdog serve`` on free loopback ports."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from catdog import servers
from tests.api.conftest import png_claiming
from tests.api.test_operations import metric

pytestmark = pytest.mark.slow

GUNICORN = [str(Path(sys.executable).with_name("gunicorn")), "--config", "python:catdog.api.gunicorn_conf",
            "catdog.api:create_app()"]


def server_env(port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATDOG_", "PROMETHEUS_"))}
    env.update(PORT=str(port), CATDOG_HOST="127.0.0.1", **extra)
    return env


@pytest.fixture
def start(tmp_path):
    """``start(argv, port, **env)`` runs a server (catdog.servers), waits for /readyz, and always
    stops it; ``output(proc)`` is what it printed."""
    procs: list[subprocess.Popen] = []

    def run(argv: list[str], port: int, **env: str) -> subprocess.Popen:
        log = tmp_path / f"server-{len(procs)}.log"
        proc = servers.start(argv, log=log, env=server_env(port, **env), cwd=tmp_path, inherit_env=False)
        LOGS[proc.pid] = log
        procs.append(proc)
        servers.wait_until_answering(f"http://127.0.0.1:{port}/readyz", proc, log=log, timeout=60)
        return proc

    yield run
    for proc in procs:
        servers.stop(proc, timeout=30)
        LOGS.pop(proc.pid, None)


#: The log file of each server ``start`` ran, by process id.
LOGS: dict[int, Path] = {}


def output(proc: subprocess.Popen) -> str:
    return LOGS[proc.pid].read_text(errors="replace")


def post_photo(base: str, data: bytes, name: str = "photo.jpg") -> requests.Response:
    return requests.post(f"{base}/v1/predict", files={"image": (name, data, "image/jpeg")}, timeout=30)


def test_gunicorn_serves_predictions_and_stops_gracefully(start, free_port, cat_bytes, dog_bytes):
    proc = start(GUNICORN, free_port, CATDOG_WORKERS="2", CATDOG_MAX_UPLOAD_MB="1")
    base = f"http://127.0.0.1:{free_port}"

    cat = post_photo(base, cat_bytes)
    assert cat.status_code == 200 and cat.json()["label"] == "cat"
    dog = requests.post(f"{base}/predict", files={"image": ("d.jpg", dog_bytes)}, timeout=30)
    assert dog.status_code == 200 and dog.json()["label"] == "dog"
    assert re.fullmatch(r"[0-9a-f]{32}", dog.headers["X-Request-ID"])
    assert dog.headers["Server"] == "gunicorn"  # no version banner

    bad = post_photo(base, b"%PDF-1.7 not a photo", "cat.jpg")
    assert bad.status_code == 415 and bad.json()["error"]["code"] == "not_an_image"
    bomb = post_photo(base, png_claiming(50_000, 50_000), "cat.png")
    assert bomb.status_code == 422
    missing = requests.post(f"{base}/v1/predict", files={"file": ("c.jpg", cat_bytes)}, timeout=30)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_field"
    assert requests.get(f"{base}/nope", timeout=5).json()["error"]["code"] == "not_found"
    too_big = post_photo(base, cat_bytes + b"\0" * 3_000_000)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "file_too_large"
    huge_header = requests.get(f"{base}/healthz", headers={"X-Big": "x" * 20_000}, timeout=5)
    assert 400 <= huge_header.status_code < 500

    # Metrics add up both workers, whichever one answers the scrape.
    for _ in range(6):
        post_photo(base, cat_bytes)
    for _ in range(3):
        text = requests.get(f"{base}/metrics", timeout=5).text
        assert metric(text, "catdog_predictions_total", label="cat") == 7
        assert metric(text, "catdog_predictions_total", label="dog") == 1

    # SIGTERM while a request is in flight: send half the body, signal, then the rest.
    boundary = "catdogboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"c.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + cat_bytes + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", free_port, timeout=30)
    conn.putrequest("POST", "/v1/predict")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[: len(body) // 2])
    time.sleep(0.5)  # the worker has accepted and is reading the body
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    conn.send(body[len(body) // 2:])
    response = conn.getresponse()
    assert response.status == 200
    assert b'"label": "cat"' in response.read()
    assert proc.wait(30) == 0
    log = output(proc)
    assert "Handling signal: term" in log
    assert '"path":"/v1/predict"' in log  # the app's own JSON access lines
    assert "c.jpg" not in log  # file names never reach the log


def test_catdog_serve_runs_gunicorn(start, free_port, dog_bytes):
    proc = start([sys.executable, "-m", "catdog", "serve", "--port", str(free_port), "--workers", "1"], free_port)
    base = f"http://127.0.0.1:{free_port}"
    response = post_photo(base, dog_bytes)
    assert response.status_code == 200 and response.json()["label"] == "dog"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    out = output(proc)
    assert f"http://127.0.0.1:{free_port}" in out
    assert "Starting gunicorn" in out


def test_catdog_serve_dev(tmp_path, free_port):
    """The Flask reloader runs a child process: start it in its own session and stop the group."""
    argv = [sys.executable, "-m", "catdog", "serve", "--dev", "--port", str(free_port)]
    with servers.running(argv, f"http://127.0.0.1:{free_port}/readyz", log=tmp_path / "dev.log",
                         env=server_env(free_port), cwd=tmp_path, timeout=60, inherit_env=False):
        response = requests.get(f"http://127.0.0.1:{free_port}/healthz", timeout=5)
        assert response.json() == {"status": "ok"}
        assert response.headers["Server"] == "catdog"  # no Werkzeug/Python versions


def test_unknown_model_fails_before_starting(free_port, tmp_path):
    result = subprocess.run([sys.executable, "-m", "catdog", "serve", "--port", str(free_port),
                             "--model", str(tmp_path / "missing.onnx")],
                            env=server_env(free_port), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "missing.onnx" in result.stderr
