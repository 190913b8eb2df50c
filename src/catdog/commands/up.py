"""``catdog up``: the whole app with one command, the API and the web UI as two child processes.

The children run in their own sessions, so a Ctrl-C in the terminal reaches only
this supervisor, which then stops them in order (UI first, then API): terminate,
wait, kill after a grace period. If either child dies on its own, the other is
stopped too and the command fails, so a half-running app never goes unnoticed.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import signal
import socket
import subprocess  # nosec B404
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from catdog.config import Settings
from catdog.model.errors import CatdogError

#: Seconds to wait for the API to load its model and for Streamlit to start.
START_TIMEOUT = 120.0
#: Seconds a child gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
POLL_SECONDS = 0.25
UI_SCRIPT = Path(__file__).resolve().parents[1] / "ui" / "app.py"


class Shutdown(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM: stop everything and exit 0.

    A BaseException, like KeyboardInterrupt, so no library's ``except Exception`` swallows it.
    """


@dataclass
class Child:
    name: str
    process: subprocess.Popen

    def exited(self) -> int | None:
        return self.process.poll()


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start the API and the web UI together (Ctrl-C stops both)",
        description="Start the REST API (catdog serve) and the Streamlit web UI as two processes, "
        "wait until both answer, print the URL to open, and stop both on Ctrl-C.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address both servers listen on (default: 127.0.0.1, this machine only)",
    )
    parser.add_argument(
        "--api-port", type=int, default=8000, help="port of the REST API (default: 8000)"
    )
    parser.add_argument(
        "--ui-port", type=int, default=8501, help="port of the web UI (default: 8501)"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model file or directory (default: $CATDOG_MODEL, else the bundled model)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="API worker processes (default: catdog serve's)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise CatdogError(
            "The web UI needs Streamlit: pip install 'catdog[ui]' (or run the API alone "
            "with `catdog serve`)."
        )
    for port in (args.api_port, args.ui_port):
        _check_port_free(args.host, port)
    local = _connect_host(args.host)
    api_url = f"http://{local}:{args.api_port}"
    ui_url = f"http://{local}:{args.ui_port}"
    env = {**os.environ, "CATDOG_API_URL": api_url, "PYTHONUNBUFFERED": "1"}

    children: list[Child] = []
    previous = {sig: signal.signal(sig, _raise_shutdown) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        api = api_command(args.host, args.api_port, workers=args.workers, model=args.model)
        children.append(_start("API", api, env))
        _wait_until_answering(children[0], api_url + "/readyz")
        ui = ui_command(args.host, args.ui_port)
        children.append(_start("web UI", ui, env))
        _wait_until_answering(children[1], ui_url + "/_stcore/health")
        print(
            f"\ncatdog is up: open {ui_url} in your browser.\n"
            f"  API: {api_url} (docs: {api_url}/docs). Press Ctrl-C to stop both.\n",
            flush=True,
        )
        return _supervise(children)
    except Shutdown:
        print("\ncatdog: stopping...", file=sys.stderr, flush=True)
        return 0
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        _stop(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def api_command(
    host: str, port: int, *, workers: int | None = None, model: Path | None = None
) -> list[str]:
    """``catdog serve`` with this Python (the same virtualenv, whatever PATH says)."""
    command = [sys.executable, "-m", "catdog", "serve", "--host", host, "--port", str(port)]
    if workers:
        command += ["--workers", str(workers)]
    if model:
        command += ["--model", str(model)]
    return command


def ui_command(host: str, port: int, *, max_upload_mb: float | None = None) -> list[str]:
    """``streamlit run`` for the page: headless, no file watcher, no usage statistics (no network).

    Streamlit's upload limit follows the API's (``CATDOG_MAX_UPLOAD_MB``), so a file the API
    would refuse is refused in the browser already.
    """
    if max_upload_mb is None:
        max_upload_mb = Settings().max_upload_mb
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(UI_SCRIPT),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.maxUploadSize",
        str(math.ceil(max_upload_mb)),
        "--browser.gatherUsageStats",
        "false",
        # Streamlit's own banner would look up the public IP on a wildcard address: no network calls.
        "--logger.hideWelcomeMessage",
        "true",
        "--client.toolbarMode",
        "minimal",
        "--global.developmentMode",
        "false",
    ]


def _start(name: str, command: list[str], env: dict[str, str]) -> Child:
    # Own session: the terminal's Ctrl-C goes to us only, and we stop the children in order.
    # Bandit B404/B603: `catdog up` starts its own servers from fixed argument lists, never a shell.
    return Child(name, subprocess.Popen(command, env=env, start_new_session=True))  # nosec B603


def _wait_until_answering(child: Child, url: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.exited() is not None:
            raise CatdogError(
                f"The {child.name} exited while starting (exit code {child.exited()}); "
                "see its messages above."
            )
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(POLL_SECONDS)
    raise CatdogError(
        f"The {child.name} did not answer at {url} within {timeout:g} s; see its messages above."
    )


def _supervise(children: list[Child]) -> int:
    """Sleep until a child dies on its own (a failure: the app is no longer whole)."""
    while True:
        for child in children:
            code = child.exited()
            if code is not None:
                print(
                    f"catdog: error: the {child.name} stopped unexpectedly (exit code {code}); "
                    "stopping the rest. See its messages above.",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        time.sleep(POLL_SECONDS)


def _stop(children: list[Child]) -> None:
    """Stop the UI, then the API: SIGTERM, wait, SIGKILL after STOP_TIMEOUT seconds.

    Each child leads its own process group, so the signals reach its helpers too (the
    gunicorn workers), even if the child itself has died and left them behind.
    """
    for child in reversed(children):
        _signal_group(child, signal.SIGTERM)
        try:
            child.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(
                f"catdog: the {child.name} did not stop within {STOP_TIMEOUT:g} s; killing it.",
                file=sys.stderr,
                flush=True,
            )
            _signal_group(child, signal.SIGKILL)
            child.process.wait()
        _signal_group(child, signal.SIGKILL)  # whatever the child left behind


def _signal_group(child: Child, sig: signal.Signals) -> None:
    try:
        os.killpg(child.process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty


def _raise_shutdown(signum, frame) -> None:
    raise Shutdown(signal.Signals(signum).name)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as the servers do: TIME_WAIT is fine
        try:
            s.bind((host, port))
        except OSError:
            raise CatdogError(
                f"Port {port} on {host} is already in use (is catdog already running?); "
                "pick free ones with --api-port / --ui-port."
            ) from None


def _connect_host(host: str) -> str:
    """Where local clients reach a server bound to ``host`` (a wildcard address means loopback)."""
    # Bandit B104 sees the wildcard address; this only compares with it, nothing binds here.
    if host in ("0.0.0.0", ""):  # nosec B104
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
