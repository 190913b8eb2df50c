"""Issue 28's probes, before and after: memory that comes back, explain under budget, silent
connections, pipelining, and an unreachable rate-limit store, against the production server.

Each probe starts ``gunicorn --config python:catdog.api.gunicorn_conf "catdog.api:create_app()"``
(2 workers, defaults unless stated) on loopback; memory is master + workers VmRSS sampled every
0.2 s. ``--src /path/to/other/src`` serves another checkout (the "before" column):

    python bench/round3.py                                   # this checkout, writes docs/reliability.md
    python bench/round3.py --src ../main/src --no-write      # the previous code, printed only

Probes (issue 28's floors in brackets):

* ``batch-v1`` / ``batch-v2``: one request of 32 palette bombs (v1 batch, v2 infer): status,
  seconds, peak and 5 s later [peak <= 900 MB, <= 500 MB 5 s later, JSON, no 5xx];
* ``explain-flood``: 8 clients sending the decoded-size bombs to ``/v1/explain?overlay=png`` for
  10 s while one client sends a normal photo to ``/v1/predict``: 5xx, peak, slowest predict
  [no 5xx, peak <= 900 MB, predict <= 3 s];
* ``silent``: 300 TCP connections that send nothing, then one normal predict [within 2 s];
* ``pipelined``: a predict and a health check in one write [both answered in order, or closed];
* ``redis-down``: ``CATDOG_RATE_LIMIT=5/minute`` with nothing listening at the redis:// address,
  15 photos [never more than the per-worker limit answered].
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import FIXTURE_PHOTO, ROOT, machine, table, update_section
from stress import rss_mb

from catdog import servers
from catdog.testing.hostile import (
    BATCH_PATH,
    EXPLAIN_OVERLAY_PATH,
    PATH,
    SILENT_CONNECTIONS,
    V2_INFER_PATH,
    palette_bomb,
    pipelined,
    uniform_png,
    v2_bomb_batch,
)

RELIABILITY_DOC = ROOT / "docs" / "reliability.md"
PHOTO = FIXTURE_PHOTO.read_bytes()
SERVER = [sys.executable, "-m", "gunicorn", "--config", "python:catdog.api.gunicorn_conf", "catdog.api:create_app()"]


class Probe:
    """A server for one probe, with a memory sampler."""

    def __init__(self, src: str | None, **env: str):
        self.port = servers.free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("CATDOG_", "PROMETHEUS_"))}
        if src:
            environment["PYTHONPATH"] = src
        environment.update({"PORT": str(self.port), "CATDOG_HOST": "127.0.0.1", "CATDOG_WORKERS": "2"} | env)
        self.env = environment
        self.url = f"http://127.0.0.1:{self.port}"
        self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self):
        self.process = servers.start(SERVER, env=self.env, inherit_env=False, log=Path(os.devnull))
        servers.wait_until_answering(self.url + "/readyz", self.process)
        time.sleep(2)  # both workers up
        self.idle = self.total()
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        servers.stop(self.process)

    def total(self) -> float:
        return rss_mb(self.process.pid)  # the master and its workers

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.total())
            time.sleep(0.2)


def predict(url: str, timeout: float = 60) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        status = requests.post(url + PATH, data=PHOTO, headers={"Content-Type": "image/jpeg"},
                               timeout=timeout).status_code
    except requests.RequestException:
        status = 0
    return status, time.perf_counter() - started


def batch(src: str | None, version: str) -> dict:
    with Probe(src) as probe:
        started = time.perf_counter()
        if version == "v1":
            files = [("images", (f"{i}.png", palette_bomb(), "image/png")) for i in range(32)]
            response = requests.post(probe.url + BATCH_PATH, files=files, timeout=120)
        else:
            response = requests.post(probe.url + V2_INFER_PATH, data=v2_bomb_batch(32),
                                     headers={"Content-Type": "application/json"}, timeout=120)
        seconds = time.perf_counter() - started
        time.sleep(5)
        later = probe.total()
        return {"status": response.status_code, "json": response.headers.get("Content-Type") == "application/json",
                "seconds": round(seconds, 1), "idle MB": round(probe.idle), "peak MB": round(probe.peak),
                "5 s later MB": round(later)}


def explain_flood(src: str | None, clients: int = 8, seconds: float = 10.0) -> dict:
    bombs = [uniform_png(6324, 0, 16), palette_bomb(), uniform_png(6324, 6)]
    statuses: list[int] = []
    slowest = [0.0]
    with Probe(src) as probe:
        deadline = time.monotonic() + seconds

        def flood(i: int) -> None:
            k = i
            while time.monotonic() < deadline:
                files = {"image": ("b.png", bombs[k % len(bombs)], "image/png")}
                k += 1
                try:
                    statuses.append(requests.post(probe.url + EXPLAIN_OVERLAY_PATH, files=files, timeout=120).status_code)
                except requests.RequestException:
                    statuses.append(0)

        threads = [threading.Thread(target=flood, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        predicts = []
        while time.monotonic() < deadline:
            status, took = predict(probe.url)
            predicts.append(status)
            slowest[0] = max(slowest[0], took)
            time.sleep(0.2)
        for thread in threads:
            thread.join(180)
        return {"explains": len(statuses), "explain 5xx or failed": sum(s >= 500 or s == 0 for s in statuses),
                "of which 503": statuses.count(503), "predicts": len(predicts),
                "predict not 200": sum(s != 200 for s in predicts), "slowest predict s": round(slowest[0], 2),
                "peak MB": round(probe.peak)}


def silent(src: str | None) -> dict:
    with Probe(src) as probe:
        socks = []
        for _ in range(SILENT_CONNECTIONS):
            try:
                socks.append(socket.create_connection(("127.0.0.1", probe.port), timeout=5))
            except OSError:
                break
        time.sleep(1)
        status, took = predict(probe.url, timeout=30)
        for s in socks:
            s.close()
        return {"silent connections": len(socks), "predict status": status or "no answer in 30 s",
                "predict s": round(took, 2)}


def pipelining(src: str | None) -> dict:
    with Probe(src) as probe, socket.create_connection(("127.0.0.1", probe.port), timeout=20) as sock:
        sock.sendall(pipelined(PHOTO))
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
            ending = "closed by the server"
        except TimeoutError:
            ending = "left open, nothing more in 20 s"
        statuses = [line.split()[1].decode() for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
        return {"answers": " ".join(statuses) or "none", "then": ending}


def redis_down(src: str | None) -> dict:
    with Probe(src, CATDOG_RATE_LIMIT="5/minute", CATDOG_RATE_LIMIT_STORAGE=f"redis://127.0.0.1:{servers.free_port()}",
               CATDOG_WORKERS="1") as probe:
        statuses = [predict(probe.url)[0] for _ in range(15)]
        return {"photos sent": 15, "answered 200": statuses.count(200), "refused 429": statuses.count(429),
                "refused 503": statuses.count(503)}


PROBES = {"batch-v1": lambda src: batch(src, "v1"), "batch-v2": lambda src: batch(src, "v2"),
          "explain-flood": explain_flood, "silent": silent, "pipelined": pipelining, "redis-down": redis_down}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=None, help="serve this checkout's src/ instead (a before column)")
    parser.add_argument("--only", nargs="*", choices=sorted(PROBES), help="run only these probes")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    load = os.getloadavg()[0]
    for name in args.only or PROBES:
        result = PROBES[name](args.src)
        print(name, result, flush=True)
        rows.append([name, "; ".join(f"{k} {v}" for k, v in result.items())])
    stamp = (f"`python bench/round3.py{' --src ' + args.src if args.src else ''}`, {machine()}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load:.1f} at the start. {args.note}")
    markdown = table(["probe", "result"], rows) + f"\n\n{stamp}"
    print(markdown)
    if not args.no_write:
        update_section("round3", markdown, doc=RELIABILITY_DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
