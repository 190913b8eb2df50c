"""A small closed-loop HTTP load generator for the benchmarks (standard library only).

``clients`` threads each POST a photo, wait for the answer, and POST the next, for a
fixed time. Only answers that arrive inside the measured window count (throughput is
completions per second of that window, whatever the queue was at its start). ``http.client``
is used rather than ``requests`` because the load generator shares the machine with the
server: its own CPU cost per request must stay small next to the server's.

    bodies = [multipart_body("image", "cat.jpg", photo_bytes)]
    result = run_load("127.0.0.1", 8000, "/predict", bodies, clients=16, seconds=8)
    result.rps, result.p50, result.p95
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

Body = tuple[bytes, str]  # (encoded request body, its Content-Type)


def multipart_body(field_name: str, filename: str, data: bytes, content_type: str = "image/jpeg") -> Body:
    """One file as ``multipart/form-data``, encoded once so clients only send bytes."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(host: str, port: int, path: str, body: Body, timeout: float = 30.0) -> tuple[int, bytes]:
    """One POST on a fresh connection (gunicorn's sync workers close every connection anyway)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body[0], headers={"Content-Type": body[1]})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class LoadResult:
    """What one load level measured; latencies are of the counted (post-warm-up) requests."""

    clients: int
    seconds: float
    ok: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else float("nan")

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    def merge(self, other: LoadResult) -> LoadResult:
        """Two runs of the same level as one (for interleaved rounds)."""
        return LoadResult(self.clients, self.seconds + other.seconds, self.ok + other.ok,
                          self.errors + other.errors, self.latencies_ms + other.latencies_ms)

    def to_dict(self) -> dict:
        return {"clients": self.clients, "seconds": round(self.seconds, 3), "ok": self.ok,
                "errors": self.errors, "rps": self.rps, "p50_ms": self.p50, "p95_ms": self.p95,
                "p99_ms": self.percentile(99)}


def run_load(host: str, port: int, path: str, bodies: list[Body], *, clients: int, seconds: float,
             warmup: float = 1.0, timeout: float = 30.0) -> LoadResult:
    """``clients`` concurrent closed-loop clients for ``warmup + seconds``; count the last ``seconds``.

    A request counts when its answer arrives inside the measured window; a non-200 answer
    or a connection error counts as an error (the client goes on).
    """
    start = time.perf_counter()
    counted_from, deadline = start + warmup, start + warmup + seconds
    lock = threading.Lock()
    result = LoadResult(clients, seconds)

    def client(offset: int) -> None:
        for body in itertools.islice(itertools.cycle(bodies), offset, None):
            t0 = time.perf_counter()
            if t0 >= deadline:
                return
            try:
                status, _ = post(host, port, path, body, timeout)
            except OSError:
                status = 0
            t1 = time.perf_counter()
            if not counted_from <= t1 <= deadline:
                continue
            with lock:
                if status == 200:
                    result.ok += 1
                    result.latencies_ms.append((t1 - t0) * 1000)
                else:
                    result.errors += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(deadline - time.perf_counter() + timeout + 5)
    return result


def wait_until_serving(host: str, port: int, path: str, body: Body, *, timeout: float = 180.0,
                       poll: float = 0.05, alive=lambda: True) -> float:
    """Seconds until ``POST path`` first answers 200 (for cold starts); raises TimeoutError.

    ``alive`` is checked between polls so a server that crashed fails fast.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if post(host, port, path, body, timeout=timeout)[0] == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        if not alive():
            raise RuntimeError(f"the server on port {port} exited before answering")
        time.sleep(poll)
    raise TimeoutError(f"no 200 from http://{host}:{port}{path} within {timeout:.0f} s")
