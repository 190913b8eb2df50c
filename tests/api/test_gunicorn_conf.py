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
    assert (c.worker_class, c.threads, c.preload_app) == ("sync", 1, False)
    assert c.timeout == 30 and c.graceful_timeout == 30 and c.keepalive == 5
    assert c.accesslog is None
    assert c.limit_request_field_size <= 8190


def test_environment(conf):
    c = conf(PORT="9123", CATDOG_HOST="127.0.0.1", CATDOG_WORKERS="3", CATDOG_LOG_LEVEL="WARNING")
    assert c.bind == "127.0.0.1:9123"
    assert c.workers == 3
    assert c.loglevel == "warning"


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
    assert os.path.isdir(path) and os.environ["CATDOG_THREADS"] == "1"
    c.on_exit(server)
    assert not os.path.exists(path)


def test_a_given_metrics_directory_is_cleaned_not_removed(conf, tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"stale")
    c = conf(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    server = SimpleNamespace()
    c.on_starting(server)
    c.on_exit(server)
    assert tmp_path.is_dir() and not list(tmp_path.glob("*.db"))
