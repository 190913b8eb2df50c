"""``catdog up``: the whole app with one command, the API and the web UI as two child processes.

The children run in their own sessions, so a Ctrl-C in the terminal reaches only
this supervisor, which then stops them in order (UI first, then API): terminate,
wait, kill after a grace period. If a child dies on its own (killed, out of memory),
it is restarted after a back-off that doubles with each quick failure, and the other
keeps running: the web page stays up and tells people the classifier is restarting.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import signal
import socket
import subprocess  # nosec B404
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from catdog import servers
from catdog.config import Settings
from catdog.model.errors import CatdogError

#: Seconds to wait for the API to load its model and for Streamlit to start.
START_TIMEOUT = 120.0
#: Seconds a child gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
POLL_SECONDS = 0.25
#: Restart back-off: the first restart waits BACKOFF_FIRST s, each quick failure doubles it.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
#: A child that ran this long before dying starts again from the first back-off step.
STABLE_SECONDS = 60.0
UI_SCRIPT = Path(__file__).resolve().parents[1] / "ui" / "app.py"


class Shutdown(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM: stop everything and exit 0.

    A BaseException, like KeyboardInterrupt, so no library's ``except Exception`` swallows it.
    """


@dataclass
class Child:
    """One supervised server: how to start it, where it answers, and its restart history."""

    name: str
    command: list[str]
    ready_url: str
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    #: Deaths in a row, each less than STABLE_SECONDS after its start.
    failures: int = 0
    restart_at: float | None = None
    answering: bool = False
    restarts: int = 0

    def start(self) -> None:
        self.process = servers.start(self.command, env=self.env)
        self.started = time.monotonic()
        self.restart_at = None
        self.answering = False

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()


def backoff(failures: int) -> float:
    """Seconds to wait before restarting a child that failed ``failures`` times in a row."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(failures - 1, 0))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start the API and the web UI together (Ctrl-C stops both)",
        description="Start the REST API (catdog serve) and the Streamlit web UI as two processes, "
        "wait until both answer, print the URL to open, and stop both on Ctrl-C. If one of them "
        "dies, it is restarted (after 1 s, doubling up to 30 s if it keeps dying); the other "
        "keeps running.",
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
    env = {"CATDOG_API_URL": api_url}  # on top of our own environment

    children = [
        Child(
            "API",
            api_command(args.host, args.api_port, workers=args.workers, model=args.model),
            api_url + "/readyz",
            env,
        ),
        Child("web UI", ui_command(args.host, args.ui_port), ui_url + "/_stcore/health", env),
    ]
    previous = {sig: signal.signal(sig, _raise_shutdown) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            child.start()
            _wait_until_answering(child)
        print(
            f"\ncatdog is up: open {ui_url} in your browser.\n"
            f"  API: {api_url} (docs: {api_url}/docs). Press Ctrl-C to stop both.\n",
            flush=True,
        )
        _supervise(children)
        return 0  # pragma: no cover (only a signal ends the supervision)
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

    Streamlit's upload limit is the page's (``CATDOG_UI_MAX_UPLOAD_MB``, above the API's: the
    page shrinks a photo that is over the API's limit before sending it).
    """
    if max_upload_mb is None:
        max_upload_mb = Settings().ui_max_upload_mb
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


def _wait_until_answering(child: Child, timeout: float = START_TIMEOUT) -> None:
    if child.process is None:
        raise CatdogError(f"The {child.name} was never started.")
    try:
        servers.wait_until_answering(
            child.ready_url, child.process, name=child.name, timeout=timeout
        )
    except servers.ServerError as exc:
        raise CatdogError(str(exc)) from None
    child.answering = True


def _supervise(children: list[Child]) -> None:
    """Forever (until a signal): restart a child that died, with back-off; say when it is back."""
    while True:
        for child in children:
            _check(child, time.monotonic())
        time.sleep(POLL_SECONDS)


def _check(child: Child, now: float) -> None:
    """One look at one child: notice a death, restart when its back-off is over, notice it is back."""
    if child.restart_at is not None:
        if now >= child.restart_at:
            child.restarts += 1
            _say(f"restarting the {child.name} (restart {child.restarts}).")
            child.start()
        return
    code = child.exited()
    if child.process is not None and code is not None:
        quick = now - child.started < STABLE_SECONDS
        child.failures = child.failures + 1 if quick else 1
        delay = backoff(child.failures)
        servers.stop(child.process, STOP_TIMEOUT)  # orphaned workers would keep its port
        _say(
            f"the {child.name} stopped unexpectedly (exit code {code}); restarting it in {delay:g} s. "
            "See its messages above."
        )
        child.restart_at = now + delay
    elif not child.answering and servers.answers(child.ready_url, timeout=1):
        child.answering = True
        _say(f"the {child.name} is back at {child.ready_url.rsplit('/', 1)[0]}.")


def _say(message: str) -> None:
    print(f"catdog: {message}", file=sys.stderr, flush=True)


def _stop(children: list[Child]) -> None:
    """Stop the UI, then the API (each with its whole process group, gunicorn workers included)."""
    for child in reversed(children):
        if child.process is None:
            continue
        was_running = child.process.poll() is None
        if servers.stop(child.process, STOP_TIMEOUT) == -signal.SIGKILL and was_running:
            _say(f"the {child.name} did not stop within {STOP_TIMEOUT:g} s; it was killed.")


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
