"""Reliability fixtures: an app for the test client, real gunicorn servers, and a figures report.

Servers run the production command (``tests.api.test_gunicorn_server.GUNICORN``) on a
free loopback port, in their own session, with their log in a file: load tests make
thousands of log lines, which would fill (and block on) a pipe.

Figures (cases tried, statuses, shutdown results) are collected in ``figures`` and
printed at the end of the session; with ``CATDOG_RELIABILITY_DOC=1`` they are also
written into docs/reliability.md, through ``bench/_report.update_section``.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from catdog import servers
from catdog.api import create_app
from catdog.config import Settings
from catdog.servers import free_port as pick_port
from tests.api.conftest import make_app  # noqa: F401  (a fixture, shared with tests/api)
from tests.api.test_gunicorn_server import GUNICORN, server_env

ROOT = Path(__file__).resolve().parents[2]
RELIABILITY_DOC = ROOT / "docs" / "reliability.md"
#: The upload limit the reliability servers run with: small, so over-the-limit cases stay cheap.
UPLOAD_LIMIT_MB = 2
UPLOAD_LIMIT = int(UPLOAD_LIMIT_MB * 1024 * 1024)
def start_redis(binary: str, port: int, directory: Path) -> subprocess.Popen:
    """A real redis-server on ``port`` of loopback, without persistence, once it answers a ping."""
    import redis

    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.1)


#: What must never appear in a response body: traces and paths of the server's files.
LEAKS = (b"Traceback", b'File "/', b"/work/", b"site-packages", b"/home/", b"catdog/api/", b"werkzeug")


def bench_module(name: str):
    """A module of ``bench/`` (scripts beside each other, not a package)."""
    bench = str(ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module(name)


def read_answer(sock: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    """Read an HTTP answer until the server closes; returns (status, body)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), data[:200]
    return int(head.split()[1]), body


@dataclass
class Gunicorn:
    """One running production server (master + workers) started by a test."""

    process: subprocess.Popen
    port: int
    log_path: Path
    #: Worker pids when a test module started using the server (set by the module).
    initial_workers: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def wait_ready(self, timeout: float = 90) -> None:
        servers.wait_until_answering(f"{self.url}/readyz", self.process, log=self.log_path, timeout=timeout)

    def wait_workers(self, count: int, timeout: float = 60) -> list[int]:
        """Wait until ``count`` workers exist and each has loaded its model (answers /readyz)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.workers()
            if len(pids) == count and self.log().count("Booting worker") >= count:
                return pids
            time.sleep(0.2)
        raise AssertionError(f"not {count} workers after {timeout} s: {self.workers()}")

    def stop(self, timeout: float = 40) -> int | None:
        return servers.stop(self.process, timeout)


def start_gunicorn(directory: Path, *, workers: int = 2, extra_args: tuple[str, ...] = (), wait: bool = True,
                   **env: str) -> Gunicorn:
    """The production command, ``--workers``-style flags in ``extra_args`` (they win over the config)."""
    port = pick_port()
    log_path = directory / f"gunicorn-{port}.log"
    argv = [*GUNICORN[:-1], *extra_args, GUNICORN[-1]]
    environment = server_env(port, CATDOG_WORKERS=str(workers), CATDOG_MAX_UPLOAD_MB=str(UPLOAD_LIMIT_MB), **env)
    process = servers.start(argv, env=environment, inherit_env=False, cwd=directory, log=log_path)
    server = Gunicorn(process, port, log_path)
    if wait:
        try:
            server.wait_ready()
        except servers.ServerError:
            server.stop()
            raise
    return server


@pytest.fixture
def gunicorn(tmp_path):
    """``gunicorn(workers=2, extra_args=(), wait=True, **env)``: start servers; all are stopped afterwards."""
    servers: list[Gunicorn] = []

    def start(**kwargs) -> Gunicorn:
        server = start_gunicorn(tmp_path, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def module_gunicorn(tmp_path_factory):
    """One 2-worker server shared by a module's tests (the hostile corpus over real HTTP)."""
    server = start_gunicorn(tmp_path_factory.mktemp("gunicorn"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(classifier):
    """An app with the reliability servers' settings, built once per module (Hypothesis needs that)."""
    settings = Settings(max_upload_mb=UPLOAD_LIMIT_MB, api_keys=[], rate_limit=None)
    return create_app(settings, classifier=classifier)


@dataclass
class Tally:
    """Answers counted by status class, for one transport (test client, gunicorn, fuzz)."""

    tried: int = 0
    statuses: Counter = field(default_factory=Counter)

    def add(self, status: int) -> None:
        self.tried += 1
        self.statuses[f"{status // 100}xx"] += 1

    def row(self) -> dict:
        return {"tried": self.tried, **{k: self.statuses.get(k, 0) for k in ("2xx", "4xx", "5xx")}}


@dataclass
class Figures:
    tallies: dict[str, Tally] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)

    def tally(self, name: str) -> Tally:
        return self.tallies.setdefault(name, Tally())


@pytest.fixture(scope="session")
def figures():
    collected = Figures()
    yield collected
    if not collected.tallies and not collected.results:
        return
    data = {"tallies": {k: v.row() for k, v in collected.tallies.items()}, "results": collected.results}
    print("\nreliability figures:", json.dumps(data, indent=1, default=str))
    if os.environ.get("CATDOG_RELIABILITY_DOC") == "1":
        write_figures(data)


def write_figures(data: dict) -> None:
    """The sections of docs/reliability.md that the test run measured."""
    report = bench_module("_report")
    stamp = f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {report.machine()}."
    if data["tallies"]:
        rows = [[name, *row.values()] for name, row in data["tallies"].items()]
        markdown = (report.table(["requests sent through", "tried", "2xx", "4xx", "5xx"], rows)
                    + f"\n\n{stamp}")
        report.update_section("hostile-counts", markdown, doc=RELIABILITY_DOC)
    for name, result in data["results"].items():
        rows = [[key, value] for key, value in result.items()]
        report.update_section(name, report.table(["figure", "value"], rows) + f"\n\n{stamp}", doc=RELIABILITY_DOC)
