"""Overload answered, not queued: a bounded wait for photo requests in each worker.

A photo request (a POST to an endpoint declared ``counts_photos``) is classified only when a
slot of its lane is free in the worker:

* the **light** lane, :data:`~catdog.api.capacity.ACTIVE_PER_WORKER` slots, for ordinary photos;
* the **heavy** lane, one slot, for requests with an image that would take more than
  :data:`HEAVY_BYTES` to decode (estimated from its header: 40 MP PNGs, decoded-size bombs). They are decoded one at a time anyway (the decode gate), and in their
  own lane they cannot hold the slots ordinary photos need: a photo is answered in its usual
  time while bombs queue behind each other.

Otherwise a request waits, but only if fewer than the worker's share of ``CATDOG_MAX_QUEUE``
already wait in its lane, and only for ``CATDOG_QUEUE_SECONDS`` (twice that in the heavy lane); beyond either bound it is
answered at once with ``503 overloaded`` and ``Retry-After`` (JSON, like every other error).
Latency under overload is then bounded by the queue, not by how many clients there are.

The body is read (and a multipart form parsed) before a request takes its place in the queue,
so a client sending slowly holds a thread (gthread) but never a slot. Probes, docs and
/metrics never wait.

Under gunicorn's gthread worker (the default) the worker's poller queues first: a photo request
that has fully arrived waits there, unread, until the worker has room, and is refused there
when too many wait (:class:`catdog.api.workers.Door`). The lanes here then bound what reaches
the app anyway: uploads still arriving when the poller looked, the sync worker, the dev server.

``/metrics`` carries ``catdog_queue_waiting{lane}``, ``catdog_queue_active{lane}`` (summed over
workers) and ``catdog_shed_requests_total{lane,reason}``; ``/readyz`` says the answering
worker's queues. Readiness stays 200 under overload: failing it would take the whole instance
out of a load balancer's rotation, turning a burst into an outage (docs/reliability.md, "Overload").
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, current_app, request
from prometheus_client import Counter, Gauge

from catdog.api.capacity import ACTIVE_PER_WORKER, HEAVY_PER_WORKER, queue_per_worker
from catdog.api.endpoint import is_photo_request
from catdog.api.errors import V2_PREFIX, Overloaded
from catdog.config import Settings

EXTENSION = "catdog_admission"
#: Estimated decoding memory from which a request goes to the heavy lane: a phone photo (JPEG,
#: decoded at a reduced scale) costs about 10 MB, a 40 MP palette PNG 50 MB, an RGBA one 170 MB.
HEAVY_BYTES = 32 << 20


class QueueMetrics:
    """The queue's Prometheus series, shared by the lanes of one app."""

    def __init__(self, registry: Any = None):
        self.waiting = Gauge("catdog_queue_waiting", "Photo requests waiting for a free slot", ["lane"],
                             registry=registry, multiprocess_mode="livesum")
        self.active = Gauge("catdog_queue_active", "Photo requests being classified", ["lane"],
                            registry=registry, multiprocess_mode="livesum")
        self.shed = Counter("catdog_shed_requests", "Photo requests answered 503 overloaded, by lane and "
                            "reason (queue_full: too many waiting; queue_timeout: waited too long)",
                            ["lane", "reason"], registry=registry)


class Admission:
    """The slots and the bounded queue of one lane of one worker process."""

    def __init__(self, active: int, queue: int, seconds: float, registry: Any = None, *, name: str = "light",
                 metrics: QueueMetrics | None = None):
        self.name, self.slots, self.queue_limit, self.seconds = name, active, queue, seconds
        self.active = self.waiting = 0
        self.shed: dict[str, int] = {"queue_full": 0, "queue_timeout": 0}
        self._changed = threading.Condition()
        metrics = metrics or QueueMetrics(registry)
        self._waiting_gauge = metrics.waiting.labels(name)
        self._active_gauge = metrics.active.labels(name)
        self._shed_counters = {reason: metrics.shed.labels(name, reason) for reason in self.shed}

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
        self._shed_counters[reason].inc()
        why = ("too many requests are waiting" if reason == "queue_full"
               else f"no worker was free within {self.seconds:g} s")
        raise Overloaded(why)

    def status(self) -> dict[str, Any]:
        return {"active": self.active, "waiting": self.waiting, "slots": self.slots,
                "max_waiting": self.queue_limit, "shed": dict(self.shed)}


class Lanes:
    """A worker's two lanes: ordinary photos, and requests that are costly to decode."""

    def __init__(self, settings: Settings, registry: Any = None):
        #: The gthread worker's door (:class:`catdog.api.workers.Door`), which counts here so
        #: /readyz can say so: photo requests waiting in its poller, and those it refused, by reason.
        self.door_waiting = 0
        self.door_refused = {"queue_full": 0, "queue_timeout": 0}
        metrics = QueueMetrics(registry)
        share = queue_per_worker(settings)
        self.light = Admission(ACTIVE_PER_WORKER, share, settings.queue_seconds, name="light", metrics=metrics)
        # Costly decodes queue behind each other for up to twice as long: one takes 1-3 s of CPU, and
        # a burst of them is answered late rather than refused (issue 28: no 5xx under a bomb flood).
        self.heavy = Admission(HEAVY_PER_WORKER, share, 2 * settings.queue_seconds, name="heavy", metrics=metrics)

    def status(self) -> dict[str, Any]:
        return {"light": self.light.status(), "heavy": self.heavy.status(),
                "door": {"waiting": self.door_waiting, "shed": dict(self.door_refused)}}


def decode_cost_of_request() -> int:
    """Estimated decoding memory of this request's costliest image, from its header (0 if unknown)."""
    service = current_app.extensions.get("catdog")
    engine = getattr(service, "classifier", None)
    if engine is None:
        return 0
    from catdog.model.decode import estimate_cost

    mimetype = request.mimetype
    if request.path.startswith(V2_PREFIX + "/"):
        return 0  # v2 reads JSON only, and checks its whole budget before any decode (BatchBudget.whole)
    if mimetype == "multipart/form-data":
        blobs = [upload.stream.getvalue() for upload in request.files.values() if hasattr(upload.stream, "getvalue")]
    elif mimetype.startswith("image/"):
        blobs = [request.get_data()]
    else:
        return 0
    side = engine.recipe.input.resize
    # The costliest one: a batch's files are decoded one after another.
    return max((estimate_cost(blob, min_side=side, max_pixels=engine.max_pixels) for blob in blobs), default=0)


def init_overload(app: Flask, settings: Settings, registry: Any) -> Lanes:
    """Install the bound on ``app`` (registered after security: refused or unauthenticated
    requests never wait)."""
    lanes = Lanes(settings, registry)
    app.extensions[EXTENSION] = lanes

    @app.before_request
    def admit() -> None:
        if not is_photo_request():
            return
        request.get_data(cache=True)  # the whole body first: a slow client holds no slot
        lane = lanes.heavy if decode_cost_of_request() >= HEAVY_BYTES else lanes.light
        lane.enter()
        request.environ["catdog.admitted"] = lane

    @app.teardown_request
    def release(_exc: BaseException | None) -> None:
        lane = request.environ.pop("catdog.admitted", None)
        if lane is not None:
            lane.leave()

    return lanes


def queue_status() -> dict[str, Any] | None:
    """This worker's queues, for /readyz (None if the app has none)."""
    lanes = current_app.extensions.get(EXTENSION)
    return lanes.status() if lanes is not None else None
