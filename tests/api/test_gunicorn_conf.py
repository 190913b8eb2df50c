"""The gunicorn settings module: environment handling and the multi-process metrics directory."""

from __future__ import annotations

import importlib
import os
from types import SimpleNamespace

import pytest

from catdog.model.backends import default_threads


@pytest.fixture
def conf(monkeypatch):
    """``conf(**env)``: the config module as gunicorn would load it under that environment."""
    for name in ("PORT", "CATDOG_HOST", "CATDOG_WORKERS", "CATDOG_LOG_LEVEL", "CATDOG_THREADS",
                 "CATDOG_WORKER_CLASS", "CATDOG_WORKER_THREADS", "CATDOG_TIMEOUT", "CATDOG_API_KEYS",
                 "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(name, "")  # recorded, so whatever the hooks set is undone afterwards
        monkeypatch.delenv(name)

    def load(**env):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        import catdog.api.gunicorn_conf as module

        return importlib.reload(module)

    return load


def test_defaults_are_for_a_cpu_bound_model(conf):
    c = conf()
    assert c.bind == "0.0.0.0:8000"
    assert c.workers == default_threads()
    # gthread: a slow client holds a thread, not a worker (docs/reliability.md, "Slow clients");
    # threads hold the photo slot and the heavy lane's, each worker's share of the queue in each
    # lane, and spares that answer 503s
    share = -(-32 // default_threads())
    assert (c.worker_class, c.threads, c.preload_app) == ("catdog.api.workers.ThreadWorker", 1 + 1 + 2 * share + 4,
                                                          False)
    assert c.max_requests == 20_000 and c.max_requests_jitter == 2_000
    assert c.timeout == 30 and c.graceful_timeout == 30 and c.keepalive == 5
    assert c.accesslog is None
    assert c.limit_request_field_size <= 8190


def test_environment(conf):
    c = conf(PORT="9123", CATDOG_HOST="127.0.0.1", CATDOG_WORKERS="3", CATDOG_LOG_LEVEL="WARNING",
             CATDOG_WORKER_CLASS="sync", CATDOG_WORKER_THREADS="8", CATDOG_TIMEOUT="60")
    assert c.bind == "127.0.0.1:9123"
    assert c.workers == 3
    assert c.loglevel == "warning"
    assert (c.worker_class, c.threads, c.timeout) == ("catdog.api.workers.SyncWorker", 1, 60)


def test_the_config_reads_the_environment_only_through_settings():
    """No os.environ reads of CATDOG_* or PORT in the module: Settings is the one reader."""
    import inspect

    import catdog.api.gunicorn_conf as module

    source = inspect.getsource(module)
    assert "environ.get(\"CATDOG" not in source and "environ.get(\"PORT" not in source
    assert "Settings.from_env()" in source


@pytest.mark.parametrize("env,message", [
    ({"CATDOG_API_KEYS": " , "}, "CATDOG_API_KEYS is set but holds no key"),
    ({"CATDOG_WORKER_CLASS": "eventlet"}, "CATDOG_WORKER_CLASS"),
    ({"PORT": "http"}, "PORT"),
])
def test_a_bad_setting_stops_gunicorn_with_one_line(env, message):
    import subprocess
    import sys

    environment = {k: v for k, v in os.environ.items() if not k.startswith("CATDOG_")}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", "import catdog.api.gunicorn_conf"], capture_output=True,
                         text=True, env=environment, check=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("catdog: error: ") and message in lines[0], out.stderr


def test_ipv6_host(conf):
    assert conf(CATDOG_HOST="::1", PORT="8080").bind == "[::1]:8080"


def test_importing_the_config_does_not_import_flask_or_prometheus(conf):
    """The master imports the config; metrics' multi-process mode must be chosen before the
    workers import prometheus_client, so the config must not import the app."""
    import subprocess
    import sys

    code = ("import sys, catdog.api.gunicorn_conf; "
            "print(any(m in sys.modules for m in ('flask', 'prometheus_client', 'onnxruntime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_metrics_directory_lifecycle(conf, monkeypatch):
    c = conf()
    server = SimpleNamespace()
    c.on_starting(server)
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert os.path.isdir(path) and os.environ["CATDOG_THREADS"] == "1"  # for the workers' Settings
    c.on_exit(server)
    assert not os.path.exists(path)


def test_a_given_metrics_directory_is_cleaned_not_removed(conf, tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"stale")
    c = conf(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    server = SimpleNamespace()
    c.on_starting(server)
    c.on_exit(server)
    assert tmp_path.is_dir() and not list(tmp_path.glob("*.db"))


def test_dead_workers_metrics_files_are_folded_not_piled_up(conf, tmp_path, monkeypatch):
    """Workers come and go (timeouts, crashes): their counters must stay in the totals while
    their files go, so the directory holds one file per type for all of them."""
    import subprocess
    import sys

    code = """
import os, sys
from prometheus_client import Counter, Gauge, Histogram, CollectorRegistry
r = CollectorRegistry()
Counter('hits', 'h', ['status'], registry=r).labels('200').inc(int(sys.argv[1]))
Histogram('lat', 'l', buckets=(0.1, 1.0), registry=r).observe(0.5)
Gauge('load_seconds', 'g', multiprocess_mode='max', registry=r).set(float(sys.argv[1]))
Gauge('busy', 'b', multiprocess_mode='livesum', registry=r).set(1)
print(os.getpid())
"""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    pids = [int(subprocess.run([sys.executable, "-c", code, str(n)], env=env, capture_output=True, text=True,
                               check=True).stdout) for n in (2, 3, 5)]
    c = conf(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for pid in pids:
        c.child_exit(None, SimpleNamespace(pid=pid))
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_retired.db", "gauge_max_retired.db", "histogram_retired.db"]

    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()
    assert 'hits_total{status="200"} 10.0' in text
    assert "lat_count 3.0" in text and 'lat_bucket{le="1.0"} 3.0' in text
    assert "load_seconds 5.0" in text


def test_the_read_deadline_bounds_a_dribbling_client_and_stays_out_of_the_close():
    """One deadline over every recv (a timeout per call would let a byte a second through),
    disarmed once the headers are in and when gunicorn closes the socket."""
    import socket
    import time

    from catdog.api.workers import BodyTimeout, HeaderTimeout, ReadDeadline

    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        sock = ReadDeadline(server_side, 0.5)
        sock.arm()
        client_side.sendall(b"POST / HTTP/1.1\r\n")
        assert sock.recv(100) == b"POST / HTTP/1.1\r\n"
        started = time.monotonic()
        with pytest.raises(HeaderTimeout):
            while True:
                client_side.sendall(b"X")  # a byte at a time, each well within any per-call timeout
                sock.recv(1)
                time.sleep(0.05)
        assert time.monotonic() - started < 1.5
        sock.arm()
        client_side.sendall(b"Host: x\r\n\r\nbody")
        assert sock.recv(100).endswith(b"Host: x\r\n\r\nbody")  # after a byte the timeout left
        time.sleep(0.6)
        client_side.sendall(b"more")
        assert sock.recv(100) == b"more"  # the headers were complete: no deadline any more
        sock.arm_body(0.2)
        with pytest.raises(BodyTimeout):
            sock.recv(100)  # nothing comes
        sock.arm_body(0.0)
        sock.shutdown(socket.SHUT_WR)
        client_side.sendall(b"late")
        assert sock.recv(100) == b"late"  # graceful close drains without a deadline
