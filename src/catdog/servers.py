"""Start a server process, wait until it answers, stop it: the one helper for ``catdog up``,
the tests and the benchmarks (standard library and ``requests`` only, no catdog imports).

Every server runs in its own session (process group), so a terminal's Ctrl-C reaches
only whoever started it, and :func:`stop` can reach everything the server started
(gunicorn's workers), even when the server itself has died and left them behind.

    with running([sys.executable, "-m", "catdog", "serve", "--port", "8000"],
                 "http://127.0.0.1:8000/readyz", log=Path("api.log")) as process:
        ...
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess  # nosec B404
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

#: Seconds to wait for a server to answer (the API loads and warms up its model first).
START_TIMEOUT = 180.0
#: Seconds a server gets to exit after SIGTERM before its group is killed.
STOP_TIMEOUT = 15.0
POLL_SECONDS = 0.25


class ServerError(RuntimeError):
    """A server exited while starting or did not answer in time; the message says which."""


def free_ports(n: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports on ``host`` (all held open together while they are chosen)."""
    sockets = [socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) for _ in range(n)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def start(
    command: Sequence[str],
    *,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    inherit_env: bool = True,
) -> subprocess.Popen:
    """Start ``command`` in its own session; its output goes to ``log`` (appended) or, without
    one, to our own stdout/stderr. A file, not a pipe: a busy server would fill a pipe and block.

    ``env`` is added to our own environment, or is the whole environment if not ``inherit_env``.
    """
    environment = {**(os.environ if inherit_env else {}), "PYTHONUNBUFFERED": "1", **(env or {})}
    # Bandit B404/B603: fixed argument lists from catdog's own code and tests, never a shell.
    if log is None:
        return subprocess.Popen(  # nosec B603
            list(command), env=environment, cwd=cwd, start_new_session=True
        )
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(  # nosec B603
            list(command),
            env=environment,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def answers(url: str, timeout: float = 2.0) -> bool:
    """Does ``GET url`` answer 2xx right now?"""
    try:
        return requests.get(url, timeout=timeout).ok
    except requests.RequestException:
        return False


def wait_until_answering(
    url: str,
    process: subprocess.Popen,
    *,
    name: str = "server",
    log: Path | None = None,
    timeout: float = START_TIMEOUT,
    poll: float = POLL_SECONDS,
) -> None:
    """Until ``GET url`` answers 2xx, asking every ``poll`` seconds; raise :class:`ServerError`
    (with the log's tail, if there is one) as soon as the process exits, or after ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise ServerError(f"The {name} exited while starting (exit code {code})." + _tail(log))
        if answers(url):
            return
        time.sleep(poll)
    raise ServerError(f"The {name} did not answer at {url} within {timeout:g} s." + _tail(log))


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM to the server's group, wait, SIGKILL after ``timeout`` s; returns its exit code.

    Whatever is left in the group afterwards (a worker orphaned by a crashed master) is
    killed too, so a stopped server never keeps its port.
    """
    if process.poll() is None:
        signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait()
    signal_group(process, signal.SIGKILL)
    return process.returncode


def signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty


@contextmanager
def running(
    command: Sequence[str],
    ready_url: str,
    *,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    name: str = "server",
    timeout: float = START_TIMEOUT,
    inherit_env: bool = True,
) -> Iterator[subprocess.Popen]:
    """Run ``command`` for the block, once ``ready_url`` answers; always stopped afterwards."""
    process = start(command, log=log, env=env, cwd=cwd, inherit_env=inherit_env)
    try:
        wait_until_answering(ready_url, process, name=name, log=log, timeout=timeout)
        yield process
    finally:
        stop(process)


def _tail(log: Path | None, chars: int = 4000) -> str:
    if log is None:
        return " See its messages above."
    try:
        return "\n" + log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
