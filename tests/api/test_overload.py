"""Overload answered, not queued (issue 24): each worker's photo slots and bounded queue.

Behaviour only, never timings: a request beyond the bound is a JSON 503 with Retry-After,
requests that fit still run, and the bound lets requests in again once slots free up.
"""

from __future__ import annotations

import threading

import pytest

from catdog.api.errors import Overloaded
from catdog.api.overload import EXTENSION, Admission


def test_a_full_worker_refuses_beyond_its_queue_and_recovers():
    admission = Admission(active=1, queue=1, seconds=30)
    admission.enter()  # the one slot
    waited = threading.Event()

    def waiter() -> None:
        admission.enter()  # queues (1 of 1) until the slot frees
        waited.set()
        admission.leave()

    thread = threading.Thread(target=waiter)
    thread.start()
    while admission.waiting == 0:
        threading.Event().wait(0.01)
    with pytest.raises(Overloaded) as refused:
        admission.enter()  # slot busy, queue full: answered at once
    assert refused.value.headers == {"Retry-After": "1"}
    assert admission.status()["shed"] == {"queue_full": 1, "queue_timeout": 0}
    admission.leave()
    thread.join(10)
    assert waited.is_set()
    admission.enter()  # recovered
    admission.leave()
    assert admission.status() | {"shed": None} == {"active": 0, "waiting": 0, "slots": 1, "max_waiting": 1,
                                                   "shed": None}


def test_a_request_that_waits_too_long_is_refused():
    admission = Admission(active=1, queue=4, seconds=0.05)
    admission.enter()
    with pytest.raises(Overloaded):
        admission.enter()
    assert admission.shed["queue_timeout"] == 1 and admission.waiting == 0


def test_the_api_answers_503_json_with_retry_after_and_says_so(make_app, cat_bytes):
    app = make_app(max_queue=0)
    admission = app.extensions[EXTENSION].light
    client = app.test_client()
    for _ in range(admission.slots):
        admission.enter()  # every slot busy, no queue
    try:
        response = client.post("/v1/predict", data=cat_bytes, content_type="image/jpeg")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json["error"]["code"] == "overloaded"
        assert client.get("/healthz").status_code == 200  # probes never wait
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["queue"]["light"]["shed"]["queue_full"] == 1
        assert b'catdog_shed_requests_total{lane="light",reason="queue_full"} 1.0' in client.get("/metrics").data
    finally:
        for _ in range(admission.slots):
            admission.leave()
    assert client.post("/v1/predict", data=cat_bytes, content_type="image/jpeg").status_code == 200
    assert admission.status()["active"] == 0


def test_a_costly_decode_takes_the_heavy_lane_and_leaves_photos_their_slots(make_app, cat_bytes):
    from catdog.testing.hostile import palette_bomb

    app = make_app(max_queue=0)
    lanes = app.extensions[EXTENSION]
    client = app.test_client()
    lanes.heavy.enter()  # the heavy slot busy (a bomb decoding)
    try:
        bomb = client.post("/v1/predict", data=palette_bomb(), content_type="image/png")
        assert bomb.status_code == 503 and bomb.json["error"]["code"] == "overloaded"
        assert client.post("/v1/predict", data=cat_bytes, content_type="image/jpeg").status_code == 200
    finally:
        lanes.heavy.leave()
    assert lanes.status()["heavy"]["shed"]["queue_full"] == 1 and lanes.status()["light"]["shed"]["queue_full"] == 0
