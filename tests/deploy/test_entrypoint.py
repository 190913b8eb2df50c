"""The images' exact commands, run outside Docker with the images' environment.

The command and the environment are read from the Dockerfile, and container paths are
mapped to where the same files are here (/opt/venv -> this venv, /app/models/... ->
models/...). Then: wait for health, use the server, SIGTERM it, expect a clean exit.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import catdog
from catdog import servers
from tests.deploy.conftest import ROOT

pytestmark = pytest.mark.slow
START_TIMEOUT = 90.0
STOP_TIMEOUT = 40.0  # gunicorn's graceful_timeout is 30 s


def path_map(dockerfile, target: str) -> dict[str, str]:
    """Container path -> local path, for everything the image's environment refers to."""
    env = dockerfile.env(target)
    venv = env["VIRTUAL_ENV"]
    table = {venv: sys.prefix}
    # catdog is installed editable here: the image's site-packages/catdog is the source tree.
    for value in env.values():
        match = re.search(rf"{re.escape(venv)}/lib/python[\d.]+/site-packages/catdog", value)
        if match:
            table[match.group(0)] = str(Path(catdog.__file__).parent)
    for copy in dockerfile.copies(target):
        if copy.from_stage is None:
            (source,) = copy.sources
            table[copy.destination] = str(ROOT / source)
    return table


def localize(value: str, table: dict[str, str]) -> str:
    """Rewrite container paths (also inside PATH-like lists) by their longest matching prefix."""
    for prefix in sorted(table, key=len, reverse=True):
        pattern = rf"(^|:){re.escape(prefix)}(?=/|:|$)"
        value = re.sub(pattern, lambda m, local=table[prefix]: m.group(1) + local, value)
    return value


def image_environment(dockerfile, target: str, port: int) -> dict[str, str]:
    """This machine's environment minus CATDOG_* settings, plus the image's ENV, plus PORT."""
    host = {k: v for k, v in os.environ.items() if not k.startswith("CATDOG_")}
    table = path_map(dockerfile, target)
    image = {k: localize(v, table) for k, v in dockerfile.env(target, host).items()}
    return host | image | {"PORT": str(port)}


class Server:
    """The image's CMD as a child process (catdog.servers), its output in a log file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, cwd: Path):
        self.log = log
        self.process = servers.start(command, log=log, env=env, cwd=cwd, inherit_env=False)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_until_healthy(self, url: str) -> None:
        servers.wait_until_answering(url, self.process, name="image's command", log=self.log,
                                     timeout=START_TIMEOUT)

    def terminate(self) -> int:
        """SIGTERM to the command alone, as Docker and Cloud Run send it; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            servers.stop(self.process, timeout=0)
            pytest.fail(f"still running {STOP_TIMEOUT:.0f} s after SIGTERM:\n{self.output()}")

    def kill(self) -> None:
        servers.stop(self.process, timeout=0)


@pytest.fixture
def run_image(dockerfile, free_port, tmp_path):
    """Start a target's CMD with its environment; returns (server, base URL)."""
    started: list[Server] = []

    def start(target: str) -> tuple[Server, str]:
        env = image_environment(dockerfile, target, free_port)
        server = Server(dockerfile.cmd(target), env, tmp_path / f"{target}.log", cwd=tmp_path)
        started.append(server)
        return server, f"http://127.0.0.1:{free_port}"

    yield start
    for server in started:
        server.kill()


def test_the_api_image_command_serves_and_stops_cleanly(run_image, dockerfile, cat_photo):
    assert "CATDOG_MODEL" not in dockerfile.env("api")  # the package's own model is served
    server, url = run_image("api")
    server.wait_until_healthy(f"{url}/healthz")
    assert requests.get(f"{url}/readyz", timeout=10).status_code == 200

    with cat_photo.open("rb") as photo:
        response = requests.post(f"{url}/predict", files={"image": (cat_photo.name, photo, "image/jpeg")},
                                 timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "cat"

    assert server.terminate() == 0, server.output()


def test_the_ui_image_command_serves_and_stops_cleanly(run_image):
    server, url = run_image("ui")
    server.wait_until_healthy(f"{url}/_stcore/health")
    assert server.terminate() == 0, server.output()
    assert "external IP" not in server.output(), "Streamlit looked up its public IP at start-up"
