"""``catdog up``: both servers start, answer, and stop cleanly; a dead child takes the app down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from catdog.cli import main
from catdog.commands.up import api_command, ui_command
from tests.ui.servers import ROOT, free_ports, stop, wait_for


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


def any_alive(pids: set[int], grace: float = 5.0) -> list[int]:
    """The ``pids`` still running after up to ``grace`` seconds (orphans exit asynchronously)."""
    deadline = time.monotonic() + grace
    while (running := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def catdog_up(tmp_path):
    """Start ``catdog up`` on free ports; yield (process, api_url, ui_url, log); never leave it running."""
    api_port, ui_port = free_ports(2)
    log = tmp_path / "up.log"
    command = [sys.executable, "-m", "catdog", "up", "--api-port", str(api_port)]
    command += ["--ui-port", str(ui_port), "--workers", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        api_url, ui_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}"
        try:
            wait_for(api_url + "/readyz", process, log)
            wait_for(ui_url + "/_stcore/health", process, log)
            yield process, api_url, ui_url, log
        finally:
            family = descendants(process.pid)
            stop(process)
            for pid in family:  # only if the test failed half-way: never leave servers behind
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def wait_until_printed(log: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        if text in output:
            return output
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not printed; output:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_up_serves_both_and_ctrl_c_stops_both(catdog_up):
    process, api_url, ui_url, log = catdog_up
    output = wait_until_printed(log, "catdog is up")
    assert f"open {ui_url}" in output
    assert requests.get(ui_url, timeout=5).ok
    assert requests.get(api_url + "/v1/model", timeout=5).json()["name"]
    family = descendants(process.pid)
    assert len(family) >= 2  # the API (and its worker) and Streamlit

    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0, log.read_text()[-4000:]
    assert not any_alive(family)
    for url in (api_url + "/healthz", ui_url):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)


@pytest.mark.slow
def test_up_stops_on_sigterm_too(catdog_up):
    process, *_, log = catdog_up
    family = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log.read_text()[-4000:]
    assert not any_alive(family)


@pytest.mark.slow
def test_when_a_child_dies_up_stops_the_other_and_fails(catdog_up):
    process, *_, log = catdog_up
    wait_until_printed(log, "catdog is up")
    family = descendants(process.pid)
    api = next(pid for pid in family if _is_api(pid, process.pid))
    os.kill(api, signal.SIGKILL)
    assert process.wait(60) == 1
    assert "the API stopped unexpectedly" in log.read_text()
    assert not any_alive(family)


def _is_api(pid: int, parent: int) -> bool:
    """The direct child of ``catdog up`` that runs the API (``catdog serve`` execs gunicorn)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return False
    return ppid == parent and b"streamlit" not in cmdline


def test_a_busy_port_is_a_clear_error(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["up", "--api-port", str(port), "--ui-port", str(free_ports(1)[0])]) == 2
    message = capsys.readouterr().err
    assert f"Port {port} on 127.0.0.1 is already in use" in message and "--api-port" in message


def test_without_streamlit_up_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "streamlit" else real(name, *a),
    )
    assert main(["up"]) == 2
    assert "pip install 'catdog[ui]'" in capsys.readouterr().err


def test_commands_keep_the_network_off_and_use_this_python():
    ui = ui_command("127.0.0.1", 8501, max_upload_mb=2.5)
    assert ui[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert ui[4].endswith("catdog/ui/app.py") and Path(ui[4]).is_file()
    flags = dict(zip(ui[5::2], ui[6::2]))
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.headless"] == "true"
    assert flags["--server.maxUploadSize"] == "3"
    assert api_command("0.0.0.0", 9000, workers=3, model=Path("m.onnx")) == [
        sys.executable, "-m", "catdog", "serve", "--host", "0.0.0.0", "--port", "9000",
        "--workers", "3", "--model", "m.onnx",
    ]  # fmt: skip
