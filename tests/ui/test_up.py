"""``catdog up``: both servers start, answer, and stop cleanly; a dead child is restarted."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest
import requests

from catdog.cli import main
from catdog.commands import up
from catdog.commands.up import api_command, ui_command
from catdog.servers import answers, free_ports, stop
from tests.ui.processes import alive, any_alive, catdog_up, descendants


@pytest.fixture
def running(tmp_path):
    with catdog_up(tmp_path / "up.log") as app:
        yield app


@pytest.mark.slow
def test_up_serves_both_and_ctrl_c_stops_both(running):
    assert f"open {running.ui_url}" in running.output()
    assert requests.get(running.ui_url, timeout=5).ok
    assert requests.get(running.api_url + "/v1/model", timeout=5).json()["name"]
    family = descendants(running.process.pid)
    assert len(family) >= 2  # the API (and its worker) and Streamlit

    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(60) == 0, running.output()[-4000:]
    assert not any_alive(family)
    for url in (running.api_url + "/healthz", running.ui_url):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)


@pytest.mark.slow
def test_up_stops_on_sigterm_too(running):
    family = descendants(running.process.pid)
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(60) == 0, running.output()[-4000:]
    assert not any_alive(family)


@pytest.mark.slow
def test_when_the_api_dies_it_is_restarted_and_the_ui_stays_up(running):
    api = running.api_pid()
    ui = descendants(running.process.pid) - {api} - descendants(api)
    os.kill(api, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    running.wait_until_printed("the API stopped unexpectedly (exit code -9); restarting it in 1 s")
    assert running.process.poll() is None  # the supervisor carries on
    assert answers(running.ui_url + "/_stcore/health")  # and so does the page
    running.wait_until_printed("the API is back", timeout=120)
    assert requests.get(running.api_url + "/readyz", timeout=5).ok
    assert running.api_pid() != api
    assert ui and all(alive(pid) for pid in ui)  # the web UI was never restarted

    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(60) == 0, running.output()[-4000:]


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


def test_commands_keep_the_network_off_and_use_this_python(monkeypatch):
    ui = ui_command("127.0.0.1", 8501, max_upload_mb=2.5)
    assert ui[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert ui[4].endswith("catdog/ui/app.py") and Path(ui[4]).is_file()
    flags = dict(zip(ui[5::2], ui[6::2]))
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.headless"] == "true"
    assert flags["--server.maxUploadSize"] == "3"
    monkeypatch.setenv("CATDOG_UI_MAX_UPLOAD_MB", "40")  # the page's limit, not the API's
    monkeypatch.setenv("CATDOG_MAX_UPLOAD_MB", "5")
    assert (
        dict(zip(*[iter(ui_command("127.0.0.1", 8501)[5:])] * 2))["--server.maxUploadSize"] == "40"
    )
    assert api_command("0.0.0.0", 9000, workers=3, model=Path("m.onnx")) == [
        sys.executable, "-m", "catdog", "serve", "--host", "0.0.0.0", "--port", "9000",
        "--workers", "3", "--model", "m.onnx",
    ]  # fmt: skip
