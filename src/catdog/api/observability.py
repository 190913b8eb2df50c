"""What the API tells its operators: request ids, one log line per request, Prometheus metrics.

* Request id: an incoming ``X-Request-ID`` is kept when it is a well-formed id (so a
  proxy's id threads through), else a fresh uuid4; every response echoes it.
* Logs: one line per request with method, path, status, milliseconds and request id;
  prediction endpoints add the upload's size, declared type and the label. Never a
  filename or image bytes. Lines are JSON when catdog owns the log output (gunicorn).
* Metrics live on a per-app ``CollectorRegistry`` (tests build many apps). Under
  gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` (set by :mod:`catdog.api.gunicorn_conf`)
  makes /metrics add up every worker, not whichever worker answered the scrape.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from catdog.api.codes import MULTIPROC_ENV
from catdog.api.endpoint import JSON, DocContext, Endpoint

REQUEST_ID_HEADER = "X-Request-ID"
#: A well-formed id: letters, digits, "-" and "_", 4 to 64 of them (uuids, W3C traceparents,
#: nginx's $request_id). Anything else (paths, quotes, "=", 200 characters) is replaced, so what
#: a client chooses cannot steer the logs or the headers that echo it.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{3,63}")
_PLAIN_VALUE = re.compile(r"[\x21\x23-\x7e]*")  # printable ASCII without spaces or quotes

#: Methods recorded as themselves in metrics; any other token becomes "other", so a client
#: inventing methods cannot create unbounded label values (unknown paths are "unmatched").
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: Latency buckets (seconds) around what one CPU prediction costs (10-50 ms).
LATENCY_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

access_log = logging.getLogger("catdog.api.access")


@dataclass(frozen=True)
class Metrics:
    """The service's Prometheus metrics, registered on one registry per app."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    predictions: Counter
    model_load_seconds: Gauge
    #: A cascade's photos by the model that answered (``fast``/``slow``); copied from the engine's
    #: own counts after each request (:meth:`record_cascade`), so the engine knows nothing of Prometheus.
    cascade_answers: Counter
    _cascade_seen: dict[str, int] = field(default_factory=dict)
    _cascade_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry(auto_describe=True)
        return cls(
            registry=registry,
            requests=Counter(
                "catdog_http_requests", "HTTP requests answered",
                ["endpoint", "method", "status"], registry=registry,
            ),
            latency=Histogram(
                "catdog_http_request_duration_seconds", "Time to answer an HTTP request",
                ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS, registry=registry,
            ),
            predictions=Counter(
                "catdog_predictions", "Photos classified, by predicted label", ["label"], registry=registry,
            ),
            model_load_seconds=Gauge(
                "catdog_model_load_seconds", "Seconds the model took to load and warm up",
                registry=registry, multiprocess_mode="max",
            ),
            cascade_answers=Counter(
                "catdog_cascade_answers", "Photos answered by each model of a cascade "
                "(fast: the fast model was sure; slow: handed to the accurate model)", ["path"],
                registry=registry,
            ),
        )

    def record_cascade(self, counts: tuple[int, int], *, baseline: bool = False) -> None:
        """Bring ``catdog_cascade_answers_total`` up to a cascade's (fast, slow) counts since it
        loaded; ``baseline`` only notes them (photos answered before this app existed)."""
        with self._cascade_lock:
            for path, total in zip(("fast", "slow"), counts):
                new = total - self._cascade_seen.get(path, 0)
                if new > 0 and not baseline:
                    self.cascade_answers.labels(path).inc(new)
                elif baseline:
                    self.cascade_answers.labels(path)  # the series exist (at 0) from the start
                self._cascade_seen[path] = total

    def exposition(self) -> bytes:
        """The Prometheus text format: this registry, or every worker's files under gunicorn."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)


def annotate(**fields: Any) -> None:
    """Add fields to this request's log line (prediction endpoints: size, type, label)."""
    g.log_fields = {**g.get("log_fields", {}), **fields}


def request_id_for(incoming: str | None) -> str:
    """Keep a sane incoming id (threads a proxy's trace through); otherwise make a new one."""
    if incoming and _SANE_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors (Cloud Logging, Loki) parse without rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "severity": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        entry.update(fields if fields else {"message": record.getMessage()})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for ``catdog.*`` when nothing else has configured logging.

    Under gunicorn the root logger has no handler, so catdog owns its output. When a
    host application (pytest, ``catdog serve --dev``) has configured logging, records
    propagate to its handlers instead and nothing is printed twice.
    """
    logger = logging.getLogger("catdog")
    logger.setLevel(level)
    if logging.getLogger().handlers or any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)


class LogFields(dict):
    """A log line's fields; rendered as ``key=value`` only if a plain-text handler asks.

    The JSON formatter reads the dict directly, so under gunicorn no text is built twice.
    Values with spaces, quotes or control characters are JSON-quoted, so a crafted path
    (``/a%0Afake line``) cannot forge a second log line.
    """

    def __str__(self) -> str:
        return " ".join(
            f"{key}={value if _PLAIN_VALUE.fullmatch(str(value)) else json.dumps(str(value))}"
            for key, value in self.items()
        )


def init_observability(app: Flask, metrics: Metrics) -> None:
    """Wire request ids, access logging and request metrics into ``app`` (/metrics is an endpoint)."""

    @app.before_request
    def start_request() -> None:
        g.started = time.perf_counter()
        g.request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))

    @app.after_request
    def finish_request(response: Response) -> Response:
        request_id = g.get("request_id") or request_id_for(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in _KNOWN_METHODS else "other"
        status = str(response.status_code)
        metrics.requests.labels(endpoint, method, status).inc()
        metrics.latency.labels(endpoint, method, status).observe(seconds)
        cascade = getattr(getattr(app.extensions.get("catdog"), "classifier", None), "cascade", None)
        if cascade is not None:
            metrics.record_cascade(cascade.counts())
        fields = LogFields({
            "method": request.method[:16],
            "path": request.path[:200],
            "status": response.status_code,
            "ms": round(seconds * 1000, 2),
            "request_id": request_id,
            **g.get("log_fields", {}),
        })
        access_log.info(fields, extra={"fields": fields})
        return response


class PrometheusMetrics(Endpoint):
    """``GET /metrics``: Prometheus text format (open: scrapers carry no API key)."""

    routes = ("/metrics",)
    open = True

    def get(self) -> Response:
        return Response(self.service.metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics",
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }}


ENDPOINTS: tuple[type[Endpoint], ...] = (PrometheusMetrics,)
