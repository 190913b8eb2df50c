"""``catdog up`` for the slow UI tests: start it on free ports, find its children, never leave it running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from catdog.servers import free_ports, stop, wait_until_answering

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Up:
    """A running ``catdog up`` (its process, its two URLs, and its output file)."""

    process: subprocess.Popen
    api_url: str
    ui_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def api_pid(self) -> int:
        """The direct child that runs the API (``catdog serve`` execs gunicorn)."""
        return next(pid for pid in descendants(self.process.pid) if _is_api(pid, self.process.pid))

    def wait_until_printed(self, text: str, timeout: float = 30, after: int = 0) -> str:
        """Until ``text`` appears in the output (past its first ``after`` characters)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.output()
            if text in output[after:]:
                return output
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not printed; output:\n{self.output()[-4000:]}")


@contextmanager
def catdog_up(log: Path, *extra: str) -> Iterator[Up]:
    api_port, ui_port = free_ports(2)
    command = [sys.executable, "-m", "catdog", "up", "--api-port", str(api_port)]
    command += ["--ui-port", str(ui_port), "--workers", "1", *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    up = Up(process, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}", log)
    try:
        wait_until_answering(up.api_url + "/readyz", process, name="catdog up", log=log)
        wait_until_answering(up.ui_url + "/_stcore/health", process, name="catdog up", log=log)
        up.wait_until_printed("catdog is up")
        yield up
    finally:
        family = descendants(process.pid)
        if process.poll() is None:  # SIGINT, as a terminal's Ctrl-C: only `catdog up` gets it
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                stop(process)
        for pid in family | descendants(process.pid):  # only if a test failed half-way
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, gunicorn workers, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def any_alive(pids: set[int], grace: float = 5.0) -> list[int]:
    """The ``pids`` still running after up to ``grace`` seconds (orphans exit asynchronously)."""
    deadline = time.monotonic() + grace
    while (running := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running


def _is_api(pid: int, parent: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return False
    return ppid == parent and b"streamlit" not in cmdline
