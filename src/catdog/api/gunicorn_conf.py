"""gunicorn settings for the catdog API (``--config python:catdog.api.gunicorn_conf``).

Every value comes from :class:`catdog.config.Settings` (``CATDOG_*`` variables and ``PORT``,
as Cloud Run sets it); nothing here reads the environment itself. Command-line flags win.

The model is CPU-bound ONNX inference: one process per core, each with one ONNX Runtime
thread. Each worker loads its own model after the fork (``preload_app = False``): ONNX
Runtime sessions are not fork-safe. The worker class is a setting (``CATDOG_WORKER_CLASS``):

* ``gthread`` (default): each worker serves ``CATDOG_WORKER_THREADS`` requests at once, so a
  client that sends its request slowly holds one thread, not a whole worker; throughput
  is that of sync workers (docs/reliability.md, "Slow clients", measured with wrk).
* ``sync``: one request per worker at a time; a slow client holds the worker.

Either way a request's headers, and then its body, must each arrive within
``CATDOG_READ_TIMEOUT`` seconds (else 408), and
gunicorn's own answers (unparseable requests, worker timeouts) have the API's JSON shape
(:mod:`catdog.api.workers`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from catdog.api.codes import MULTIPROC_ENV
from catdog.config import ConfigError, Settings
from catdog.model.backends import default_threads

#: ``CATDOG_WORKER_CLASS`` -> the class gunicorn loads (JSON error pages, see catdog.api.workers).
WORKER_CLASSES = {
    "sync": "catdog.api.workers.SyncWorker",
    "gthread": "catdog.api.workers.ThreadWorker",
}


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        # One line and exit code 2, as the CLI does, instead of gunicorn's config traceback.
        print(f"catdog: error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


settings = _settings()
bind = _bind(settings.host, settings.port)
workers = settings.workers or default_threads()
worker_class = WORKER_CLASSES[settings.worker_class]
threads = settings.worker_threads if settings.worker_class == "gthread" else 1
preload_app = False
proc_name = "catdog-api"

# A prediction takes ~15 ms and a full batch stops decoding at CATDOG_BATCH_SECONDS (< this).
timeout = settings.timeout
graceful_timeout = 30  # SIGTERM: stop accepting, let in-flight requests finish
keepalive = 5

# Request line and headers stay small; an enormous header gets a 4xx before the app runs.
limit_request_line = 4094
limit_request_fields = 64
limit_request_field_size = 8190

accesslog = None  # the app logs one structured line per request
errorlog = "-"
loglevel = settings.log_level.lower()
# bandit B108 (temp dir) is intended: gunicorn's worker heartbeat files, in memory as its docs
# advise for containers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # nosec B108
# gunicorn >= 25 opens a management socket in $HOME by default: not needed in a container
# (read-only home) and two servers on one machine would fight over the same path.
control_socket_disable = True


def on_starting(server) -> None:
    """Before any worker forks: one ONNX thread per worker, and a metrics directory shared by
    the workers so /metrics adds them all up (prometheus_client's multi-process mode)."""
    if settings.threads is None:  # what each worker's Settings will read: one ONNX thread
        os.environ["CATDOG_THREADS"] = "1"
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
    """A dead worker's metrics files: live gauges dropped, counters folded into one file."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        retire_worker_metrics(worker.pid, Path(path))


#: How a dead worker's values join the retired file, by the file name's type and gauge mode.
_COMBINE = {"counter": "sum", "histogram": "sum", "gauge_sum": "sum", "gauge_max": "max", "gauge_min": "min",
            "gauge_mostrecent": "last"}
RETIRED = "retired"


def retire_worker_metrics(pid: int, path: Path) -> None:
    """Fold a dead worker's metrics files into ``<type>_retired.db`` and delete them.

    prometheus_client keeps one file per metric type per process and never deletes counters
    (so totals do not drop when a worker goes); with workers replaced (``max_requests``,
    timeouts, crashes) the directory grows and every scrape reads more files. Adding a dead
    worker's values into one file per type keeps the totals exact and the file count bounded.
    """
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    multiprocess.mark_process_dead(pid, str(path))  # live gauges: gone with the process
    for dead in path.glob(f"*_{pid}.db"):
        kind = dead.name[: -len(f"_{pid}.db")]
        how = _COMBINE.get(kind)
        if how is not None:
            target = path / f"{kind}_{RETIRED}.db"
            known = ({key: (value, stamp) for key, value, stamp, _ in MmapedDict.read_all_values_from_file(str(target))}
                     if target.exists() else {})
            retired = MmapedDict(str(target))
            try:
                for key, value, stamp, _ in MmapedDict.read_all_values_from_file(str(dead)):
                    if key in known:
                        old, old_stamp = known[key]
                        value = {"sum": old + value, "max": max(old, value), "min": min(old, value),
                                 "last": value if stamp >= old_stamp else old}[how]
                        stamp = max(stamp, old_stamp)
                    retired.write_value(key, value, stamp)
            finally:
                retired.close()
        dead.unlink(missing_ok=True)


def on_exit(server) -> None:
    owned = getattr(server, "catdog_metrics_dir", None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
