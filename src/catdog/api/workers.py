"""gunicorn worker classes: a deadline on request headers, and JSON for gunicorn's own answers.

* **Headers within a deadline.** gunicorn reads a request's headers with blocking reads and
  no time limit: a client sending them a byte a second holds a sync worker until the master
  kills it (``timeout``), and a gthread thread for ever. Here each request's headers must
  arrive within ``CATDOG_READ_TIMEOUT`` seconds in all, else ``408``. (The body gets the
  same time again, enforced by the app: :class:`catdog.api.uploads.BoundedBody`.)
* **JSON error pages.** gunicorn answers some requests itself: one it cannot parse (a header
  without a colon, a chunk size that is not hex), and one whose worker the master aborts for
  running past ``timeout``. Its stock answer is a small HTML page, and an aborted request a
  bare ``500``. These classes keep gunicorn's decisions (which status for which parse error)
  and change only the body, to ``{"error": {"code", "message"}}``; an aborted request answers
  ``503 worker_timeout``, which a client may retry.

* **Big buffers go back to the system.** glibc serves allocations from per-thread arenas
  and, after the first large block is freed, raises its mmap threshold to 32 MB: the pixel
  blocks of a 40 MP image (Pillow allocates in 16 MB blocks) then stay in the arena of the
  thread that decoded it, and each gthread thread keeps its own. Fixing the threshold at
  1 MB (``mallopt``, as ``MALLOC_MMAP_THRESHOLD_`` would) returns them on free: a worker's
  peak under decoded-size bombs is what one decode needs, not one per thread
  (docs/reliability.md, "Memory under decoded-size bombs").

Selected by :mod:`catdog.api.gunicorn_conf` from ``CATDOG_WORKER_CLASS``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import socket
import time

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker
from gunicorn.workers.sync import SyncWorker as _SyncWorker

from catdog.api.codes import HTTP_CODES

#: glibc's mallopt parameter and the threshold above which allocations are mmapped (and unmapped on free).
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20


def return_big_buffers_to_the_system() -> bool:
    """Fix glibc's mmap threshold (no-op elsewhere, e.g. musl or macOS); True if it was set."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError, TypeError):
        return False


def json_error_page(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer carrying the API's error JSON (gunicorn closes the connection)."""
    text = message.strip()[:300] or reason
    if status == 500:
        text = "Something went wrong on our side; it was logged."
    body = json.dumps({"error": {"code": HTTP_CODES.get(status, "error"), "message": text}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error`` (same signature), JSON instead of HTML."""
    util.write_nonblock(sock, json_error_page(int(status_int), reason, mesg))


class HeaderTimeout(Exception):
    """The request headers did not arrive within the read timeout (answered 408 by the worker)."""

    def __init__(self, seconds: float):
        super().__init__(f"The request headers did not arrive within {seconds:g} s; "
                         "send the request again over a faster connection.")


class BodyTimeout(TimeoutError):
    """The request body did not arrive within its deadline (the app answers 408)."""


class ReadDeadline:
    """A client socket whose ``recv`` calls share one deadline: the headers', then the body's.

    gunicorn reads with blocking ``recv`` and loops until it has what it asked for, so a
    timeout per call does not bound a client sending a byte a second; a deadline does. It is
    armed for the headers when a request starts (:meth:`arm`), disarmed once the blank line
    ending them has been received, and armed again by the app for the body
    (:meth:`arm_body`, called by :class:`catdog.api.uploads.BoundedBody`). Once it fires it
    disarms, so gunicorn's graceful close can still drain the socket. Everything else is the
    socket's own.
    """

    def __init__(self, sock: socket.socket, seconds: float):
        self._sock, self.seconds = sock, seconds
        self._deadline: float | None = None
        self._body = False
        self._tail = b""

    def arm(self) -> None:
        self._deadline, self._body, self._tail = time.monotonic() + self.seconds, False, b""

    def arm_body(self, seconds: float) -> None:
        self._deadline, self._body = time.monotonic() + seconds, True

    def __getattr__(self, name: str):
        return getattr(self._sock, name)

    def shutdown(self, how: int) -> None:
        # gunicorn's graceful close shuts the write side, then drains with recv(): no deadline
        # may fire there (it catches only OSError).
        self._deadline = None
        self._sock.shutdown(how)

    def _expired(self) -> Exception:
        body, self._deadline = self._body, None
        return BodyTimeout("body read deadline") if body else HeaderTimeout(self.seconds)

    def recv(self, size: int, *flags: int) -> bytes:
        if self._deadline is None:
            return self._sock.recv(size, *flags)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise self._expired()
        previous = self._sock.gettimeout()
        try:
            self._sock.settimeout(remaining)
            data = self._sock.recv(size, *flags)
        except TimeoutError:
            raise self._expired() from None
        finally:
            self._sock.settimeout(previous)
        if not self._body:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self._deadline = None
            else:
                self._tail = seen[-3:]
        return data


class JsonErrorsMixin:
    """Installs the JSON error page in the worker process, bounds header reads, and answers a
    timed-out request."""

    alive: bool
    log: object
    read_timeout: float = 10.0

    def init_process(self) -> None:
        from catdog.config import Settings

        self.read_timeout = Settings.from_env().read_timeout
        return_big_buffers_to_the_system()
        # gunicorn's workers render every error page through this one module function; the
        # worker process serves only catdog, so replacing it there changes nothing else.
        util.write_error = write_json_error
        super().init_process()  # type: ignore[misc]

    def _deadline(self, sock):
        wrapped = sock if isinstance(sock, ReadDeadline) else ReadDeadline(sock, self.read_timeout)
        wrapped.arm()
        return wrapped

    def handle_error(self, req, client, addr, exc) -> None:
        if isinstance(exc, HeaderTimeout):
            self.log.info("request headers timed out after %g s", self.read_timeout)  # type: ignore[attr-defined]
            try:
                util.write_nonblock(client, json_error_page(408, "Request Timeout", str(exc)))
            except OSError:  # the client may be gone
                self.log.debug("could not send the 408")  # type: ignore[attr-defined]
            return
        if isinstance(exc, SystemExit):
            # The master aborted this worker (SIGABRT -> SystemExit) for running past `timeout`:
            # nothing of the answer was sent yet, so say so in the API's shape, then exit.
            self.log.warning("worker timeout: answering 503 to the request it was handling")  # type: ignore[attr-defined]
            message = ("The server took too long on this request and stopped it; "
                       "retry, or send fewer or smaller photos.")
            try:
                util.write_nonblock(client, json_error_page(503, "Service Unavailable", message))
            except OSError:  # the client may be gone; the worker exits either way
                self.log.debug("could not send the 503")  # type: ignore[attr-defined]
            return
        super().handle_error(req, client, addr, exc)  # type: ignore[misc]


class SyncWorker(JsonErrorsMixin, _SyncWorker):
    """One request at a time per process (gunicorn's sync worker)."""

    def handle(self, listener, client, addr):
        return super().handle(listener, self._deadline(client), addr)


class ThreadWorker(JsonErrorsMixin, _ThreadWorker):
    """Several requests per process, one per thread (gunicorn's gthread worker)."""

    def handle(self, conn):
        # Once per request (keep-alive connections come back here for each one).
        conn.sock = self._deadline(conn.sock)
        return super().handle(conn)

