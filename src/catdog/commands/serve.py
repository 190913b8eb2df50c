"""``catdog serve``: run the REST API, with gunicorn exactly as in production.

The command becomes the production command line (``os.execv``), so the process a
supervisor starts *is* the gunicorn master: SIGTERM reaches it directly and shuts
down gracefully, and there is no second code path to keep in step with the container.
``--dev`` runs Flask's debug server with the reloader instead, for editing code.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catdog.config import Settings

GUNICORN_ARGS = ["--config", "python:catdog.api.gunicorn_conf", "catdog.api:create_app()"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the REST API (gunicorn; --dev for the Flask reloader)",
        description="Run the REST API. Same gunicorn settings as the container; see /docs once it runs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $PORT or 8000)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes, one model each (default: $CATDOG_WORKERS or the CPU count)")
    parser.add_argument("--model", default=None, help="model file or directory (default: $CATDOG_MODEL or bundled)")
    parser.add_argument("--dev", action="store_true", help="Flask debug server with auto-reload (never in production)")
    parser.set_defaults(func=run)


def _url(host: str, port: int) -> str:
    # Bandit B104 sees the wildcard address; this only compares with it, nothing binds here.
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # nosec B104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def run(args: argparse.Namespace) -> int:
    from catdog.config import Settings
    from catdog.model.engine import Classifier

    settings = Settings.from_env()  # a bad CATDOG_* setting is one line and exit 2, before anything starts
    if args.port is None:
        args.port = settings.port  # $PORT, as Cloud Run sets it, read by Settings only

    # Fail fast, before gunicorn forks workers: a missing or corrupt model is one clear line
    # and exit code 2. This process is replaced by gunicorn (execve), model and all.
    checked = Classifier.from_settings(settings, model=args.model, threads=1, warmup=False)
    model = str(checked.path.resolve()) if args.model and checked.path else None
    print(f"catdog API on {_url(args.host, args.port)}  (docs: /docs, health: /healthz)", flush=True)
    if args.dev:
        return _run_dev(args, settings, model)

    env = dict(os.environ, CATDOG_HOST=args.host, PORT=str(args.port))
    if args.workers:
        env["CATDOG_WORKERS"] = str(args.workers)
    if model:
        env["CATDOG_MODEL"] = model
    if getattr(args, "verbose", False):
        env["CATDOG_LOG_LEVEL"] = "DEBUG"
    argv = [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS]
    # Bandit B606: a fixed argv (this Python runs gunicorn with catdog's config), no shell, no user input.
    os.execve(sys.executable, argv, env)  # nosec B606
    return 0  # pragma: no cover - execve does not return


def _run_dev(args: argparse.Namespace, settings: Settings, model: str | None) -> int:
    from werkzeug.serving import WSGIRequestHandler

    from catdog.api import create_app

    class QuietHandler(WSGIRequestHandler):
        def version_string(self) -> str:  # no "Werkzeug/x Python/y" banner
            return "catdog"

    if model:
        settings = settings.model_copy(update={"model": model})
    app = create_app(settings)
    app.run(host=args.host, port=args.port, debug=True, use_reloader=True, request_handler=QuietHandler)
    return 0
