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

* **Big buffers go back to the system.** Blocks from 1 MB are mmapped and unmapped on free,
  so a worker's peak under decoded-size bombs is what one decode needs, not one per thread,
  while ordinary photos reuse the heap (:func:`catdog.api.memory.tune_malloc`).
* **Memory comes back, or the worker is replaced.** After each request (the answer sent),
  :class:`catdog.api.memory.MemoryGuard` trims the heap if the request decoded a lot, and
  past ``CATDOG_WORKER_MAX_RSS_MB`` the worker stops accepting, finishes its requests and
  exits; the master starts a fresh one.
* **No thread for a silent connection** (gthread). gunicorn hands a new connection to a
  thread at once, and the thread waits up to 5 s for its first byte: 300 connections that
  send nothing held every thread. Here a new connection waits in the worker's poller, like a
  kept-alive one, and gets a thread when its first bytes arrive; one that sends nothing
  within ``CATDOG_READ_TIMEOUT`` gets a ``408`` and is closed.

* **The queue is in the poller** (gthread). A photo request that has fully arrived waits in the
  poller, unread, until the worker has room; too many waiting are refused there with a paced
  JSON 503, before a thread or the app sees them (:class:`Door`).

Selected by :mod:`catdog.api.gunicorn_conf` from ``CATDOG_WORKER_CLASS``.
"""

from __future__ import annotations

import errno
import json
import re
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from gunicorn import util
from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker
from gunicorn.workers.sync import SyncWorker as _SyncWorker

from catdog.api.capacity import ACTIVE_PER_WORKER
from catdog.api.codes import HTTP_CODES
from catdog.api.request_errors import Overloaded

#: A Content-Length header line, in a request head (the door reads no other header).
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)

if TYPE_CHECKING:  # imported in the worker, after the fork: gunicorn loads this module in the master,
    # before gunicorn_conf.on_starting sets PROMETHEUS_MULTIPROC_DIR, and prometheus_client picks
    # its value class (in memory, or files shared by the workers) when first imported.
    from catdog.api.overload import Lanes


def json_error_page(status: int, reason: str, message: str, *, code: str | None = None,
                    headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 answer carrying the API's error JSON (gunicorn closes the connection)."""
    text = message.strip()[:300] or reason
    if status == 500:
        text = "Something went wrong on our side; it was logged."
    body = json.dumps({"error": {"code": code or HTTP_CODES.get(status, "error"), "message": text}}).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n")
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
    memory_guard = None

    def init_process(self) -> None:
        from catdog.api.memory import MemoryGuard, tune_malloc
        from catdog.config import Settings

        settings = Settings.from_env()
        self.read_timeout = settings.read_timeout
        tune_malloc()
        ceiling = settings.worker_max_rss_mb
        self.memory_guard = MemoryGuard(int(ceiling * 1_000_000) if ceiling else None)
        # gunicorn's workers render every error page through this one module function; the
        # worker process serves only catdog, so replacing it there changes nothing else.
        util.write_error = write_json_error
        super().init_process()  # type: ignore[misc]

    def _deadline(self, sock):
        wrapped = sock if isinstance(sock, ReadDeadline) else ReadDeadline(sock, self.read_timeout)
        wrapped.arm()
        return wrapped

    def handle_request(self, *args):
        try:
            return super().handle_request(*args)  # type: ignore[misc]
        finally:
            self._after_request()

    def _after_request(self) -> None:
        guard = self.memory_guard
        if guard is not None and guard.after_request() and self.alive:
            self.log.warning(  # type: ignore[attr-defined]
                "worker memory %.0f MB is over CATDOG_WORKER_MAX_RSS_MB (%.0f MB): finishing its "
                "requests, then it is replaced", guard.last_rss / 1e6, (guard.max_rss_bytes or 0) / 1e6)
            self.stop_gracefully()

    def stop_gracefully(self) -> None:
        self.alive = False

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
    """Several requests per process, one per thread (gunicorn's gthread worker), behind the
    door (:class:`Door`): photo requests that have fully arrived wait in the poller, unread,
    until the worker can take them, and are refused there when too many wait."""

    #: Photo requests handed to threads at once (not counting those in the heavy lane): one being
    #: classified and one parsed, waiting for the slot, so it never idles.
    DISPATCH = ACTIVE_PER_WORKER + 1
    dispatched = 0  # complete photo requests handed to threads and not finished (main thread only)
    door: Door | None = None

    def handle(self, conn):
        # Once per request (keep-alive connections come back here for each one).
        conn.sock = self._deadline(conn.sock)
        return super().handle(conn)

    def run(self) -> None:
        from catdog.api.overload import EXTENSION

        lanes = getattr(self.wsgi, "extensions", {}).get(EXTENSION)
        if lanes is not None:
            self.door = Door(lanes, self.poller)
        super().run()

    def on_client_socket_readable(self, conn, client) -> None:
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._route(conn)

    def on_pending_socket_readable(self, conn, client) -> None:
        self.poller.unregister(client)
        self.pending_conns.remove(conn)
        conn.data_ready = True  # as gunicorn's: the thread need not wait for the first bytes
        self._route(conn)

    def handle_request(self, req, conn):
        # Requests are waiting here: answer this one with "Connection: close", so its client's
        # next request comes on a new connection that an idler worker may accept. Kept-alive
        # connections otherwise stay with the worker that accepted them, and all of them could
        # land on one worker (seen at 16 connections: one worker busy, the other idle, half the
        # throughput), since each worker classifies one photo at a time.
        if self.door is not None and self.door.waiting:
            req.must_close = True
        return super().handle_request(req, conn)

    def _route(self, conn) -> None:
        """A readable connection: to a thread now, to the door's queue, or refused."""
        door = self.door
        if door is None or not self.alive or not door.complete_post(conn.sock):
            # GETs, and uploads still arriving: a thread at once (a slow client holds a thread,
            # never the photo slot: the app admits a request once its body is in).
            self.enqueue_req(conn)
        elif door.room(self.dispatched, self.DISPATCH):
            self._dispatch(conn)
        elif not door.wait(conn):
            door.refuse(conn.sock, on_closed=self._closed_at_door)

    def _dispatch(self, conn) -> None:
        conn.dispatched = True
        self.dispatched += 1
        self.enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        if getattr(conn, "dispatched", False):
            conn.dispatched = False
            self.dispatched -= 1
        super().finish_request(conn, fs)
        self._dispatch_waiting()

    def _dispatch_waiting(self) -> None:
        door = self.door
        # Stopping: everything waiting goes to threads, to be answered within the drain.
        while door is not None and door.waiting and (not self.alive or door.room(self.dispatched, self.DISPATCH)):
            self._dispatch(door.next())

    def _closed_at_door(self) -> None:
        self.nr_conns -= 1

    def stop_gracefully(self) -> None:
        # As on SIGTERM: stop accepting, finish in-flight requests, exit (the master replaces it).
        self.handle_exit(None, None)

    def accept(self, listener) -> None:
        """A new connection waits in the poller for its first bytes, not in a thread."""
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client, address, listener.getsockname())  # non-blocking
        conn.timeout = time.monotonic() + self.read_timeout
        conn.first_byte = True
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def _cap_keepalive(self, deadline: float) -> None:
        # Stopping: connections that have not sent a byte get the same short linger as kept-alive
        # ones, so a drain is not held up to CATDOG_READ_TIMEOUT by idle sockets.
        super()._cap_keepalive(deadline)
        for conn in self.pending_conns:
            conn.timeout = min(conn.timeout, deadline)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Wake when the next paced refusal is due, not up to a second later.
        due = self.door.seconds_to_next(time.monotonic()) if self.door is not None else None
        super().wait_for_and_dispatch_events(timeout if due is None else min(timeout, due))
        if self.door is not None:
            self.door.answer_due(time.monotonic())
            self._dispatch_waiting()

    def murder_pending(self) -> None:
        """Connections that sent nothing in time: a 408 for new ones, then closed."""
        now = time.monotonic()
        if self.door is not None:
            self.door.expire(now, on_closed=self._closed_at_door)
            self.door.close_lingering(now)
        while self.pending_conns and self.pending_conns[0].timeout <= now:
            conn = self.pending_conns.popleft()
            try:
                self.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass
            self.nr_conns -= 1
            if getattr(conn, "first_byte", False):
                try:
                    conn.sock.send(json_error_page(408, "Request Timeout", (
                        f"Nothing was received within {self.read_timeout:g} s of connecting; "
                        "send the request right after opening the connection.")))
                except OSError:
                    pass
            conn.close()



class Door:
    """The gthread worker's queue, kept in its poller, and its refusals.

    A photo request (a POST) whose whole body is already in the socket's buffer is handed to a
    thread only when the worker has room: fewer than ``DISPATCH`` such requests in its threads,
    not counting those in the heavy lane (costly decodes, :mod:`catdog.api.overload`). The others
    wait here, unread, in arrival order, at most the worker's share of ``CATDOG_MAX_QUEUE``, each
    at most ``CATDOG_QUEUE_SECONDS``. Before, every request got a thread at once, was parsed, and
    waited for the slot in the app: seven requests per worker parsed and waited at 16
    connections, their threads contending with the one classifying (7.5 voluntary and 8
    involuntary context switches an answer, against 0.1 and 3 for the sync worker), and about
    1.4 ms more CPU an answer (docs/benchmarks.md, "Serving side by side").

    Beyond the queue a request is answered ``503 overloaded`` with ``Retry-After`` and
    ``Connection: close``, the JSON of every other error, by the poller: no thread, no HTTP
    parsing, no Flask. Refusing in the app cost about 2 ms of CPU, and at 256 connections
    clients that retry at once looped on refusals until the photos answered fell to 46 a second
    from 130. The refusal is paced: it leaves :data:`PACE_SECONDS` after the request arrived, so
    a client looping on refusals makes four a second (wrk does, ignoring Retry-After), and the
    wait stays under what a queued photo waits. The request's bytes are read and dropped after
    the answer, until the client closes (at most :data:`LINGER_SECONDS`), so the kernel does not
    reset the connection under the answer (RFC 9112, section 9.6).

    GETs (probes, /metrics, docs) and uploads still arriving go to a thread at once, as before:
    a slow client holds a thread, never the photo slot. Counted in ``/metrics``
    (``catdog_queue_waiting{lane="door"}``, ``catdog_shed_requests_total{lane="door",reason}``)
    and ``/readyz`` (``queue.door``).
    """

    PACE_SECONDS = 0.25
    LINGER_SECONDS = 2.0
    #: How much of a request the poller peeks at to see whether it has fully arrived (a photo of
    #: 40-500 KB usually has; a larger upload goes to a thread, which reads the rest).
    PEEK_BYTES = 1 << 20

    def __init__(self, lanes: Lanes, poller: selectors.BaseSelector):
        from catdog.api.overload import QueueMetrics

        self.lanes, self.poller = lanes, poller
        metrics = QueueMetrics()
        self.answers = {reason: self._page(why) for reason, why in (
            ("queue_full", "too many requests are waiting"),
            ("queue_timeout", f"no worker was free within {lanes.light.seconds:g} s"))}
        self.shed = {reason: metrics.shed.labels("door", reason) for reason in self.answers}
        self.waiting_gauge = metrics.waiting.labels("door")
        self.waiting: deque[tuple[float, Any]] = deque()
        self.paced: deque[tuple[float, socket.socket, Callable[[], None]]] = deque()
        self.lingering: dict[socket.socket, tuple[float, Callable[[], None]]] = {}
        self._peek = bytearray(self.PEEK_BYTES)

    @staticmethod
    def _page(why: str) -> bytes:
        error = Overloaded(why)
        return json_error_page(503, "Service Unavailable", str(error), code=error.code, headers=error.headers)

    # -- the queue -------------------------------------------------------------------------

    def complete_post(self, sock: socket.socket) -> bool:
        """Whether ``sock`` holds a whole POST with a Content-Length (peeked, nothing is read)."""
        try:
            size = sock.recv_into(self._peek, self.PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return False
        data = memoryview(self._peek)[:size]
        if bytes(data[:5]) != b"POST ":
            return False
        head_end = self._peek.find(b"\r\n\r\n", 0, size)
        if head_end < 0:
            return False
        length = _CONTENT_LENGTH.search(self._peek, 0, head_end + 2)
        return length is not None and size >= head_end + 4 + int(length.group(1))

    def room(self, dispatched: int, limit: int) -> bool:
        # Read without the lanes' lock: the poller only needs about how full the heavy lane is.
        heavy = self.lanes.heavy
        return dispatched - heavy.active - heavy.waiting < limit

    def wait(self, conn: Any) -> bool:
        """Queue ``conn``; False if the queue is full (the caller refuses it)."""
        if len(self.waiting) >= self.lanes.light.queue_limit:
            return False
        self.waiting.append((time.monotonic(), conn))
        self.waiting_gauge.inc()
        self.lanes.door_waiting = len(self.waiting)
        return True

    def next(self) -> Any:
        _, conn = self.waiting.popleft()
        self.waiting_gauge.dec()
        self.lanes.door_waiting = len(self.waiting)
        return conn

    def expire(self, now: float, *, on_closed: Callable[[], None]) -> None:
        """Refuse, at once, requests that waited longer than ``CATDOG_QUEUE_SECONDS``."""
        while self.waiting and self.waiting[0][0] + self.lanes.light.seconds <= now:
            self.refuse(self.next().sock, on_closed=on_closed, reason="queue_timeout", paced=False)

    # -- refusals --------------------------------------------------------------------------

    def seconds_to_next(self, now: float) -> float | None:
        """How long the poller may sleep before a paced refusal is due (None: none is waiting)."""
        return max(0.0, self.paced[0][0] - now) if self.paced else None

    def refuse(self, sock: socket.socket, *, on_closed: Callable[[], None], reason: str = "queue_full",
               paced: bool = True) -> None:
        """Answer ``sock`` 503 (once its pace is up, :meth:`answer_due`), then let it close."""
        self.shed[reason].inc()
        self.lanes.door_refused[reason] += 1
        if paced:  # every pace is the same, so the deque stays in the order refusals are due
            self.paced.append((time.monotonic() + self.PACE_SECONDS, sock, on_closed))
        else:
            self._answer(sock, on_closed, self.answers[reason])

    def answer_due(self, now: float) -> None:
        while self.paced and self.paced[0][0] <= now:
            _, sock, on_closed = self.paced.popleft()
            self._answer(sock, on_closed, self.answers["queue_full"])

    def _answer(self, sock: socket.socket, on_closed: Callable[[], None], page: bytes) -> None:
        try:
            sock.setblocking(False)
            sock.send(page)  # a few hundred bytes: the socket's buffer takes them at once
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(sock, on_closed)
            return
        self.lingering[sock] = (time.monotonic() + self.LINGER_SECONDS, on_closed)
        self.poller.register(sock, selectors.EVENT_READ, self._drain)

    def _drain(self, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._close(sock, self.lingering[sock][1])

    def close_lingering(self, now: float) -> None:
        self.answer_due(now)
        for sock, (deadline, on_closed) in list(self.lingering.items()):
            if deadline <= now:
                self._close(sock, on_closed)

    def _close(self, sock: socket.socket, on_closed: Callable[[], None]) -> None:
        if self.lingering.pop(sock, None) is not None:
            self.poller.unregister(sock)
        util.close(sock)
        on_closed()
