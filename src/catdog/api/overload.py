"""Overload answered, not queued: a bounded wait for photo requests in each worker.

A photo request (a POST to an endpoint declared ``counts_photos``) is classified only when
one of the worker's :data:`ACTIVE_PER_WORKER` slots is free. Otherwise it waits, but only
if fewer than its share of ``CATDOG_MAX_QUEUE`` are already waiting, and only for
``CATDOG_QUEUE_SECONDS``; beyond either bound it is answered at once with ``503 overloaded``
and ``Retry-After`` (JSON, like every other error). Latency under overload is then bounded by
the queue, not by how many clients there are: the excess is refused in a millisecond.

The body is read before a request takes its place in the queue, so a client sending slowly
holds a thread (gthread) but never a slot. Probes, docs and /metrics never wait.

``/metrics`` carries ``catdog_queue_waiting``, ``catdog_queue_active`` (summed over workers)
and ``catdog_shed_requests_total{reason}``; ``/readyz`` says the answering worker's queue.
Readiness stays 200 under overload: failing it would take the whole instance out of a load
balancer's rotation, turning a burst into an outage (docs/reliability.md, "Overload").
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, current_app, request
from prometheus_client import Counter, Gauge

from catdog.api.capacity import ACTIVE_PER_WORKER, queue_per_worker
from catdog.api.endpoint import is_photo_request
from catdog.api.errors import Overloaded
from catdog.config import Settings

EXTENSION = "catdog_admission"


class Admission:
    """The slots and the bounded queue of one worker process."""

    def __init__(self, active: int, queue: int, seconds: float, registry: Any = None):
        self.slots, self.queue_limit, self.seconds = active, queue, seconds
        self.active = self.waiting = 0
        self.shed: dict[str, int] = {"queue_full": 0, "queue_timeout": 0}
        self._changed = threading.Condition()
        self._waiting_gauge = Gauge("catdog_queue_waiting", "Photo requests waiting for a free slot",
                                    registry=registry, multiprocess_mode="livesum")
        self._active_gauge = Gauge("catdog_queue_active", "Photo requests being classified",
                                   registry=registry, multiprocess_mode="livesum")
        self._shed_counter = Counter("catdog_shed_requests", "Photo requests answered 503 overloaded, by "
                                     "reason (queue_full: too many waiting; queue_timeout: waited too long)",
                                     ["reason"], registry=registry)
        for reason in self.shed:
            self._shed_counter.labels(reason)

    def enter(self) -> None:
        """Take a slot, waiting in the bounded queue if need be; :class:`Overloaded` if not."""
        with self._changed:
            if self.active >= self.slots:
                if self.waiting >= self.queue_limit:
                    self._refuse("queue_full")
                self.waiting += 1
                self._waiting_gauge.inc()
                try:
                    free = self._changed.wait_for(lambda: self.active < self.slots, self.seconds)
                finally:
                    self.waiting -= 1
                    self._waiting_gauge.dec()
                if not free:
                    self._refuse("queue_timeout")
            self.active += 1
            self._active_gauge.inc()

    def leave(self) -> None:
        with self._changed:
            self.active -= 1
            self._active_gauge.dec()
            self._changed.notify()

    def _refuse(self, reason: str) -> None:
        self.shed[reason] += 1
        self._shed_counter.labels(reason).inc()
        why = ("too many requests are waiting" if reason == "queue_full"
               else f"no worker was free within {self.seconds:g} s")
        raise Overloaded(why)

    def status(self) -> dict[str, Any]:
        return {"active": self.active, "waiting": self.waiting, "slots": self.slots,
                "max_waiting": self.queue_limit, "shed": dict(self.shed)}


def init_overload(app: Flask, settings: Settings, registry: Any) -> Admission:
    """Install the bound on ``app`` (registered after security: refused or unauthenticated
    requests never wait)."""
    admission = Admission(ACTIVE_PER_WORKER, queue_per_worker(settings), settings.queue_seconds, registry)
    app.extensions[EXTENSION] = admission

    @app.before_request
    def admit() -> None:
        if not is_photo_request():
            return
        request.get_data(cache=True)  # the whole body first: a slow client holds no slot
        admission.enter()
        request.environ["catdog.admitted"] = True

    @app.teardown_request
    def release(_exc: BaseException | None) -> None:
        if request.environ.pop("catdog.admitted", False):
            admission.leave()

    return admission


def queue_status() -> dict[str, Any] | None:
    """This worker's queue, for /readyz (None if the app has none)."""
    admission = current_app.extensions.get(EXTENSION)
    return admission.status() if admission is not None else None
