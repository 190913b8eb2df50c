"""gunicorn worker classes whose own answers have the API's JSON error shape.

gunicorn answers some requests itself, before or after the app: a request it cannot parse
(a header without a colon, a chunk size that is not hex), and a request whose worker the
master aborts for running past ``timeout``. Its stock answer is a small HTML page, and an
aborted request a bare ``500``. These classes keep gunicorn's decisions (which status for
which parse error) and change only the body, to ``{"error": {"code", "message"}}``; an
aborted request answers ``503 worker_timeout``, which a client may retry.

Selected by :mod:`catdog.api.gunicorn_conf` from ``CATDOG_WORKER_CLASS``.
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker
from gunicorn.workers.sync import SyncWorker as _SyncWorker

#: Stable codes for the statuses gunicorn itself answers with (see gunicorn.workers.base).
GUNICORN_CODES = {
    400: "bad_request",
    403: "forbidden",
    413: "file_too_large",
    414: "request_line_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "worker_timeout",
}


def json_error_page(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer carrying the API's error JSON (gunicorn closes the connection)."""
    text = message.strip()[:300] or reason
    if status == 500:
        text = "Something went wrong on our side; it was logged."
    body = json.dumps({"error": {"code": GUNICORN_CODES.get(status, "error"), "message": text}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error`` (same signature), JSON instead of HTML."""
    util.write_nonblock(sock, json_error_page(int(status_int), reason, mesg))


class JsonErrorsMixin:
    """Installs the JSON error page in the worker process, and answers a timed-out request."""

    alive: bool
    log: object

    def init_process(self) -> None:
        # gunicorn's workers render every error page through this one module function; the
        # worker process serves only catdog, so replacing it there changes nothing else.
        util.write_error = write_json_error  # type: ignore[assignment]
        super().init_process()  # type: ignore[misc]

    def handle_error(self, req, client, addr, exc) -> None:
        if isinstance(exc, SystemExit):
            # The master aborted this worker (SIGABRT -> SystemExit) for running past `timeout`:
            # nothing of the answer was sent yet, so say so in the API's shape, then exit.
            self.log.warning("worker timeout: answering 503 to the request it was handling")  # type: ignore[attr-defined]
            message = ("The server took too long on this request and stopped it; "
                       "retry, or send fewer or smaller photos.")
            try:
                util.write_nonblock(client, json_error_page(503, "Service Unavailable", message))
            except Exception:  # the client may be gone; the worker exits either way  # nosec B110
                pass
            return
        super().handle_error(req, client, addr, exc)  # type: ignore[misc]


class SyncWorker(JsonErrorsMixin, _SyncWorker):
    """One request at a time per process (gunicorn's sync worker)."""


class ThreadWorker(JsonErrorsMixin, _ThreadWorker):
    """Several requests per process, one per thread (gunicorn's gthread worker)."""

