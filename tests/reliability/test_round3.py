"""Issue 28 (and 24's overload bound) against the production server on loopback.

Silent connections, pipelining, the memory ceiling, the queue bound and an unreachable
Redis, each with the production gunicorn command. Behaviour only: timeouts here are
generous bounds on a hang, never measurements (the figures are in bench/ and docs/).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import requests

from catdog.testing.hostile import PATH, SILENT_CONNECTIONS, pipelined
from tests.conftest import CAT_PHOTOS
from tests.reliability.conftest import pick_port, start_redis

pytestmark = pytest.mark.slow

PHOTO = CAT_PHOTOS[0].read_bytes()
T = TypeVar("T")
M = TypeVar("M")
REQUEST_ID = "X-Request-ID"  # on every answer of the app; the door's are made before it


def at_once(count: int, call: Callable[[], T], *, meanwhile: Callable[[], M] = lambda: None,
            ) -> tuple[list[T], M]:
    """``count`` clients each ``call()`` at the same moment (a barrier); returns their answers and
    what ``meanwhile`` returned, run in this thread while they were at it."""
    start = threading.Barrier(count)
    answers: list[T] = []

    def client() -> None:
        start.wait()
        answers.append(call())

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    during = meanwhile()
    for thread in threads:
        thread.join(90)
    return answers, during


def predict(server, timeout: float = 30) -> requests.Response:
    return requests.post(server.url + PATH, data=PHOTO, headers={"Content-Type": "image/jpeg"}, timeout=timeout)


def test_silent_connections_hold_no_thread_and_get_a_408(gunicorn):
    server = gunicorn(workers=1, CATDOG_READ_TIMEOUT="3")
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(SILENT_CONNECTIONS)]
    try:
        time.sleep(0.5)  # every one accepted by now
        # Before: 300 silent connections stopped the service (no answer within 20 s).
        assert predict(server, timeout=10).status_code == 200
        silent[0].settimeout(15)
        answer = b""
        while chunk := silent[0].recv(4096):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:200]
        assert json.loads(body)["error"]["code"] == "request_timeout"
    finally:
        for sock in silent:
            sock.close()
    assert predict(server).status_code == 200


def test_pipelined_requests_are_answered_in_order(gunicorn):
    server = gunicorn(workers=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(pipelined(PHOTO))
        data = b""
        while chunk := sock.recv(65536):  # the second request asks the server to close
            data += chunk
    statuses = [line.split()[1] for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    # Answered in order, or closed after the first: never a request left unanswered on an open socket.
    assert statuses in ([b"200", b"200"], [b"200"]), data[:400]
    assert b'"label"' in data.split(b"HTTP/1.1 200")[1]
    if len(statuses) == 2:
        assert data.rstrip().endswith(b'{"status":"ok"}')


def test_a_worker_over_its_memory_ceiling_is_replaced_between_requests(gunicorn):
    server = gunicorn(workers=1, CATDOG_WORKER_MAX_RSS_MB="20")  # below any worker's idle size
    first = server.workers()
    assert predict(server).status_code == 200  # answered in full, then the worker goes
    deadline = time.monotonic() + 60
    while server.workers() in ([], first):
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.2)
    server.wait_ready()
    assert predict(server).status_code == 200
    log = server.log()
    assert "over CATDOG_WORKER_MAX_RSS_MB" in log and "Traceback" not in log


def test_a_slow_upload_holds_no_photo_back_and_probes_pass_a_full_door(gunicorn):
    """One worker, no queue. An upload still arriving goes to a thread and holds nothing: a photo
    sent meanwhile is answered. Then, with the worker full of batches, photo POSTs are refused
    at the worker's door (a JSON 503 with Retry-After, the connection closed cleanly after the
    answer) while a probe still goes through; the slow upload, finished, is answered too."""
    server = gunicorn(workers=1, CATDOG_MAX_QUEUE="0")
    host, port = server.url.removeprefix("http://").split(":")
    body = b"".join([b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"c.jpg\"\r\n",
                     b"Content-Type: image/jpeg\r\n\r\n", PHOTO, b"\r\n--b--\r\n"])
    slow = socket.create_connection((host, int(port)), timeout=30)
    slow.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])
    time.sleep(0.3)  # the worker has handed the upload to a thread, which waits for the rest
    assert predict(server).status_code == 200

    answers, probes = at_once(24, lambda: predict(server), meanwhile=lambda: [
        requests.get(server.url + "/healthz", timeout=10).status_code for _ in range(3)])
    assert probes == [200, 200, 200]
    statuses = sorted(r.status_code for r in answers)
    assert len(statuses) == 24 and set(statuses) == {200, 503}, statuses
    at_door = [r for r in answers if r.status_code == 503 and REQUEST_ID not in r.headers]
    assert at_door, "photos that arrived whole were refused by the door, before the app"
    for refused in at_door:
        assert refused.json()["error"]["code"] == "overloaded" and refused.headers["Retry-After"] == "1"
        assert refused.headers["Connection"] == "close"
    door = requests.get(server.url + "/readyz", timeout=10).json()["queue"]["door"]
    assert door == {"waiting": 0, "shed": {"queue_full": len(at_door), "queue_timeout": 0}}

    slow.sendall(body[100:])
    answer = slow.recv(65536)
    slow.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_a_worker_with_photos_waiting_closes_connections_so_others_can_take_them(gunicorn):
    """Photos waiting in a worker's door: its answers say "Connection: close", so a client's next
    request comes on a new connection another worker may accept (kept-alive connections would
    otherwise stay where they landed, possibly all on one worker). All are answered."""
    server = gunicorn(workers=1, CATDOG_MAX_QUEUE="8")
    answers, _ = at_once(6, lambda: predict(server))
    assert sorted(r.status_code for r in answers) == [200] * 6
    assert any(r.headers.get("Connection") == "close" for r in answers)
    alone = predict(server)  # nothing waits now: the connection may be kept
    assert alone.status_code == 200 and alone.headers.get("Connection") != "close"


def test_overload_is_answered_503_at_once_and_the_server_recovers(gunicorn):
    """One worker (one slot), no queue: of 12 simultaneous batches most are refused by the
    worker's door (catdog.api.workers.Door) with a JSON 503 and Retry-After, none fails
    otherwise, /readyz and /metrics count them, and a photo is answered afterwards."""
    server = gunicorn(workers=1, CATDOG_MAX_QUEUE="0")
    files = [("images", (f"{i}.jpg", PHOTO, "image/jpeg")) for i in range(16)]
    answers, _ = at_once(12, lambda: requests.post(server.url + "/v1/predict/batch", files=files, timeout=60))
    statuses = sorted(r.status_code for r in answers)
    assert len(statuses) == 12 and set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= 1
    refused = next(r for r in answers if r.status_code == 503)
    assert refused.headers["Retry-After"] == "1" and refused.json()["error"]["code"] == "overloaded"
    ready = requests.get(server.url + "/readyz", timeout=10).json()
    queue = ready["queue"]
    # Refused by the worker's door (a batch that had fully arrived) or by the app (one whose
    # body was still arriving when the poller looked): both counted, both the same JSON.
    assert queue["door"]["shed"]["queue_full"] + queue["light"]["shed"]["queue_full"] == statuses.count(503)
    assert queue["light"]["active"] == 0 and queue["door"]["waiting"] == 0
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert "catdog_shed_requests_total{" in metrics
    assert "catdog_queue_waiting" in metrics
    assert predict(server).status_code == 200


@pytest.fixture
def redis_server(tmp_path):
    """``start()``/``stop()`` a real redis-server on one loopback port (stop it mid-test)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    port = pick_port()
    processes: list[subprocess.Popen] = []

    class Redis:
        url = f"redis://127.0.0.1:{port}"

        def start(self) -> None:
            processes.append(start_redis(binary, port, tmp_path))

        def stop(self) -> None:
            processes[-1].terminate()
            processes[-1].wait(10)

    yield Redis()
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


def test_redis_down_refuse_answers_503_and_says_so(gunicorn, redis_server):
    server = gunicorn(workers=1, CATDOG_RATE_LIMIT="5/minute", CATDOG_RATE_LIMIT_STORAGE=redis_server.url,
                      CATDOG_RATE_LIMIT_STORE_DOWN="refuse")
    refused = [predict(server) for _ in range(3)]
    assert [r.status_code for r in refused] == [503] * 3
    assert refused[0].headers["Retry-After"] == "5"
    assert refused[0].json()["error"]["code"] == "rate_limit_unavailable"
    ready = requests.get(server.url + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["rate_limit_store"]["reachable"] is False
    assert "catdog_rate_limit_store_up 0.0" in requests.get(server.url + "/metrics", timeout=10).text
    assert server.log().count("unreachable") == 1  # once per outage, not per request


def test_redis_down_local_never_lets_more_than_the_limit_per_worker_through(gunicorn, redis_server):
    """Issue 28, finding 5: with Redis down, 15 of 15 photos were answered with a 5/minute limit."""
    redis_server.start()
    server = gunicorn(workers=1, CATDOG_RATE_LIMIT="5/minute", CATDOG_RATE_LIMIT_STORAGE=redis_server.url)
    assert [predict(server).status_code for _ in range(2)] == [200, 200]  # counted in Redis
    redis_server.stop()
    statuses = [predict(server).status_code for _ in range(15)]
    assert statuses == [200] * 5 + [429] * 10  # the worker's own count: at most the limit
    log = server.log()
    assert log.count("unreachable") == 1 and "at most the limit per worker" in log
    redis_server.start()
    time.sleep(5.5)  # the store is tried again every 5 s
    assert predict(server).status_code == 200  # Redis's count again (2 + 1 of 5)
    assert "reachable again" in server.log()
    ready = requests.get(server.url + "/readyz", timeout=10).json()
    assert ready["rate_limit_store"] == {"store": "redis://127.0.0.1", "reachable": True, "when_down": "local"}
