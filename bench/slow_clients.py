"""Slow clients against each gunicorn worker class, side by side, with wrk driving the load.

For each server shape (sync workers, gthread workers with 2 and 4 threads; 2 workers, one
ONNX Runtime thread each) this starts the production command on loopback and runs wrk
(Debian's ``wrk``: a C load generator, so the client costs little CPU) twice:

* **clean**: wrk alone, ``-c 16`` connections POSTing a real JPEG as multipart to
  ``/v1/predict``: the throughput of the speed issue.
* **with slow clients**: the same, while ``--slow`` attacker connections each send headers
  announcing ``Content-Length: 100000`` and then one body byte a second, reconnecting as
  soon as the server cuts them (as a slowloris script would).

It reports wrk's requests/s and latency percentiles for both, how the slow connections were
answered (408 after ``CATDOG_READ_TIMEOUT``), and the throughput of each shape relative to
sync workers in the same run.

    python bench/slow_clients.py                  # 15 s per run, writes docs/reliability.md
    python bench/slow_clients.py --seconds 5 --no-write

Writes the "slow-clients" section of docs/reliability.md and docs/bench/slow_clients.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import FIXTURE_PHOTO, ROOT, machine, table, update_section, write_json

from catdog import servers

HOST = "127.0.0.1"
PATH = "/v1/predict"
IMAGE = FIXTURE_PHOTO
DOC = ROOT / "docs" / "reliability.md"
SERVER_CMD = [sys.executable, "-m", "gunicorn", "--config", "python:catdog.api.gunicorn_conf",
              "catdog.api:create_app()"]
#: (label, CATDOG_* settings) of each server shape compared.
SHAPES = [
    ("sync", {"CATDOG_WORKER_CLASS": "sync"}),
    ("gthread, 2 threads", {"CATDOG_WORKER_CLASS": "gthread", "CATDOG_WORKER_THREADS": "2"}),
    ("gthread, 4 threads", {"CATDOG_WORKER_CLASS": "gthread", "CATDOG_WORKER_THREADS": "4"}),
]
BOUNDARY = "catdog-wrk-boundary"
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=%(boundary)s"
local f = io.open("%(image)s", "rb")
local photo = f:read("*all")
f:close()
wrk.body = "--%(boundary)s\\r\\nContent-Disposition: form-data; name=\\"image\\"; filename=\\"cat.jpg\\"\\r\\n" ..
  "Content-Type: image/jpeg\\r\\n\\r\\n" .. photo .. "\\r\\n--%(boundary)s--\\r\\n"
"""


class Server:
    """The production command with one shape's settings, in its own process group (catdog.servers)."""

    def __init__(self, workers: int, settings: dict[str, str], read_timeout: float):
        self.port = servers.free_port(HOST)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CATDOG_", "PROMETHEUS_"))}
        env.update(PORT=str(self.port), CATDOG_HOST=HOST, CATDOG_WORKERS=str(workers),
                   CATDOG_READ_TIMEOUT=str(read_timeout), **settings)
        self.log = Path(tempfile.gettempdir()) / f"catdog-slow-clients-{self.port}.log"
        self.process = servers.start(SERVER_CMD, log=self.log, env=env, cwd=ROOT, inherit_env=False)

    def wait_ready(self, timeout: float = 120) -> None:
        servers.wait_until_answering(f"http://{HOST}:{self.port}/readyz", self.process, log=self.log,
                                     timeout=timeout)

    def stop(self) -> None:
        servers.stop(self.process, timeout=40)


def run_wrk(port: int, script: Path, seconds: float, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", "--latency", "--timeout", "30s",
         "-s", str(script), f"http://{HOST}:{port}{PATH}"],
        capture_output=True, text=True, check=True,
    ).stdout
    return parse_wrk(out)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict:
    percentiles = {f"p{p}_ms": _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.MULTILINE)}
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": requests,
        **percentiles,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in sockets.groups()) if sockets else 0,
    }


class SlowClients:
    """``count`` connections sending a body one byte a second, reopened as soon as they end."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.stop_event = threading.Event()
        self.answers: Counter = Counter()
        self.held: list[float] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        time.sleep(1.0)  # let them take their places before measuring
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(5)

    def _loop(self) -> None:
        head = (f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 100000\r\n\r\n").encode()
        while not self.stop_event.is_set():
            started = time.monotonic()
            answer = "no answer"
            try:
                with socket.create_connection((HOST, self.port), timeout=60) as sock:
                    sock.sendall(head)
                    sock.settimeout(1.0)
                    while not self.stop_event.is_set():
                        try:
                            data = sock.recv(4096)
                        except TimeoutError:
                            sock.sendall(b"\xff")  # one more byte, a second later
                            continue
                        if data.startswith(b"HTTP/1.1 "):
                            answer = data[9:12].decode()
                        break
            except OSError:
                answer = "reset"
            if self.stop_event.is_set() and answer == "no answer":
                return
            with self.lock:
                self.answers[answer] += 1
                self.held.append(time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0, help="wrk duration per run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--slow", type=int, default=4, help="slow attacker connections")
    parser.add_argument("--read-timeout", type=float, default=10.0, help="CATDOG_READ_TIMEOUT for the servers")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT % {"boundary": BOUNDARY, "image": IMAGE})
        for label, settings in SHAPES:
            server = Server(args.workers, settings, args.read_timeout)
            try:
                server.wait_ready()
                run_wrk(server.port, script, 3, args.connections)  # warm-up, not counted
                clean = run_wrk(server.port, script, args.seconds, args.connections)
                with SlowClients(server.port, args.slow) as slow:
                    attacked = run_wrk(server.port, script, args.seconds, args.connections)
                held = sorted(slow.held)
                results.append({"shape": label, "settings": settings, "clean": clean, "attacked": attacked,
                                "slow_answers": dict(slow.answers),
                                "slow_held_s_median": held[len(held) // 2] if held else None})
                print(json.dumps(results[-1]), flush=True)
            finally:
                server.stop()

    base = results[0]["clean"]["rps"]
    rows = []
    for r in results:
        c, a = r["clean"], r["attacked"]
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["slow_answers"].items())) or "-"
        rows.append([r["shape"], f"{c['rps']:.1f}", f"{100 * (c['rps'] / base - 1):+.1f}%", f"{c['p50_ms']:.0f}",
                     f"{c['p99_ms']:.0f}", f"{a['rps']:.1f}", f"{a['p50_ms']:.0f}", f"{a['p99_ms']:.0f}",
                     a["non_2xx"] + a["socket_errors"], answers,
                     f"{r['slow_held_s_median']:.1f}" if r["slow_held_s_median"] else "-"])
    headers = ["worker class", "req/s", "vs sync", "p50 ms", "p99 ms", f"req/s with {args.slow} slow",
               "p50 ms", "p99 ms", "errors", "slow connections answered", "seconds each held"]
    load = os.getloadavg()
    markdown = f"""`python bench/slow_clients.py` (wrk {args.connections} connections, {args.seconds:g} s per run,
{args.workers} workers, `CATDOG_READ_TIMEOUT={args.read_timeout:g}`; the slow clients send one body byte a second
and reconnect when cut). Machine: {machine()}. Load average after: {load[0]:.2f}.

{table(headers, rows)}

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."""
    print("\n" + markdown)
    if not args.no_write:
        update_section("slow-clients", markdown, doc=DOC)
        write_json("slow_clients", {"results": results, "args": vars(args)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
