"""gunicorn settings for the catdog API (``--config python:catdog.api.gunicorn_conf``).

The model is CPU-bound ONNX inference, so the shape is one process per core, each
with one ONNX Runtime thread and one request at a time (sync workers): no thread
oversubscription, no GIL contention, and a slow request only holds its own core.
Each worker loads its own model after the fork (``preload_app = False``): ONNX
Runtime sessions are not fork-safe.

Environment: ``PORT`` (default 8000, as Cloud Run sets it), ``CATDOG_HOST`` (default
0.0.0.0), ``CATDOG_WORKERS`` (default: usable CPUs), ``CATDOG_THREADS`` (ONNX
threads per worker, default 1), ``CATDOG_LOG_LEVEL``. Command-line flags win.

Sync workers read a request before handling the next one; on the open internet put
a buffering proxy (Cloud Run's front end, nginx) in front, as gunicorn advises.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from catdog.model.backends import default_threads

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _bind() -> str:
    host = os.environ.get("CATDOG_HOST") or "0.0.0.0"
    port = os.environ.get("PORT") or "8000"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


bind = _bind()
workers = int(os.environ.get("CATDOG_WORKERS") or default_threads())
worker_class = "sync"
threads = 1
preload_app = False
proc_name = "catdog-api"

# A prediction takes ~15 ms and a full batch well under a second; 30 s means stuck.
timeout = 30
graceful_timeout = 30  # SIGTERM: stop accepting, let in-flight requests finish
keepalive = 5

# Request line and headers stay small; an enormous header gets a 4xx before the app runs.
limit_request_line = 4094
limit_request_fields = 64
limit_request_field_size = 8190

accesslog = None  # the app logs one structured line per request
errorlog = "-"
loglevel = (os.environ.get("CATDOG_LOG_LEVEL") or "info").lower()
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn >= 25 opens a management socket in $HOME by default: not needed in a container
# (read-only home) and two servers on one machine would fight over the same path.
control_socket_disable = True


def on_starting(server) -> None:
    """Before any worker forks: one ONNX thread per worker, and a metrics directory shared by
    the workers so /metrics adds them all up (prometheus_client's multi-process mode)."""
    os.environ.setdefault("CATDOG_THREADS", "1")
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for stale in Path(path).glob("*.db"):  # a previous run's counters must not leak in
            stale.unlink()
    else:
        path = tempfile.mkdtemp(prefix="catdog-metrics-", dir=worker_tmp_dir)
        server.catdog_metrics_dir = path
        os.environ[MULTIPROC_ENV] = path


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges; its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    owned = getattr(server, "catdog_metrics_dir", None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
