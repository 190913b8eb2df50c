"""``catdog up``: both servers start, answer, and stop cleanly; a dead child is restarted."""

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
from catdog.commands import up
from catdog.commands.up import api_command, ui_command
from catdog.servers import answers, free_ports, stop, wait_until_answering

ROOT = Path(__file__).resolve().parents[2]


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
        wait_until_answering(api_url + "/readyz", process, name="catdog up", log=log)
        wait_until_answering(ui_url + "/_stcore/health", process, name="catdog up", log=log)
        yield process, api_url, ui_url, log
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
def test_when_the_api_dies_it_is_restarted_and_the_ui_stays_up(catdog_up):
    process, api_url, ui_url, log = catdog_up
    wait_until_printed(log, "catdog is up")
    api = api_process(process.pid)
    ui_pids = {pid for pid in descendants(process.pid) if pid != api} - descendants(api)
    os.kill(api, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    wait_until_printed(log, "the API stopped unexpectedly (exit code -9); restarting it in 1 s")
    assert process.poll() is None  # the supervisor carries on
    assert answers(ui_url + "/_stcore/health")  # and so does the page
    wait_until_printed(log, "the API is back", timeout=120)
    assert requests.get(api_url + "/readyz", timeout=5).ok
    assert api_process(process.pid) != api
    assert all(alive(pid) for pid in ui_pids)  # the web UI was never restarted

    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0, log.read_text()[-4000:]


def test_back_off_doubles_with_each_quick_failure_up_to_a_ceiling():
    assert [up.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert up.backoff(20) == up.BACKOFF_MAX


def test_supervision_restarts_a_dead_child_after_its_back_off(capsys):
    """One child, really started and really killed; the clock is passed in, so nothing sleeps."""
    child = up.Child("toy", [sys.executable, "-c", "import time; time.sleep(60)"], "http://x", {})
    child.start()
    first = child.process
    try:
        first.kill()
        first.wait()
        now = child.started + 1  # died a second after its start: a quick failure
        up._check(child, now)
        assert child.failures == 1 and child.restart_at == now + up.BACKOFF_FIRST
        up._check(child, now + 0.5)  # still backing off
        assert child.process is first
        up._check(child, now + up.BACKOFF_FIRST)
        assert child.process is not first and child.process.poll() is None
        assert child.restarts == 1
        child.process.kill()
        child.process.wait()
        up._check(child, child.started + 2)  # a second quick failure: twice as long
        assert child.failures == 2 and child.restart_at == child.started + 2 + 2 * up.BACKOFF_FIRST
        child.restart_at = None
        child.started -= up.STABLE_SECONDS  # ran for a long while before dying: start over
        up._check(child, child.started + up.STABLE_SECONDS + 1)
        assert child.failures == 1
    finally:
        stop(child.process)
    err = capsys.readouterr().err
    assert "the toy stopped unexpectedly (exit code -9); restarting it in 1 s" in err
    assert "restarting the toy (restart 1)" in err


def api_process(up_pid: int) -> int:
    return next(pid for pid in descendants(up_pid) if _is_api(pid, up_pid))


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
