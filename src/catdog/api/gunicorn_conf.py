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
    # Binding every interface is intended (bandit B104): a container must (Cloud Run, compose).
    host = os.environ.get("CATDOG_HOST") or "0.0.0.0"  # nosec B104
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
# bandit B108 (temp dir) is intended: gunicorn's worker heartbeat files, in memory as its docs
# advise for containers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # nosec B108
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


def post_fork(server, worker) -> None:
    """A model that cannot load is a configuration error, not a crash: one line, then stop.

    gunicorn logs a traceback for any exception raised while a worker loads the app. Raised
    as gunicorn's ``AppImportError`` instead, catdog's own errors (a missing or corrupt model
    file) print as their message alone, and the master halts with "App failed to load"
    (exit code 4) rather than serve without a model.
    """
    load_wsgi = worker.load_wsgi

    def load_or_explain() -> None:
        from gunicorn.errors import AppImportError

        from catdog.model.errors import CatdogError

        try:
            load_wsgi()
        except CatdogError as exc:
            raise AppImportError(f"catdog: error: {exc.message}") from None

    worker.load_wsgi = load_or_explain


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges; its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    owned = getattr(server, "catdog_metrics_dir", None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
