"""The Dockerfile and .dockerignore: what goes into the images, and how they run."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest

from tests.deploy.conftest import ROOT

#: The production command of the API contract (issue 3).
API_COMMAND = ["gunicorn", "--config", "python:catdog.api.gunicorn_conf", "catdog.api:create_app()"]
TARGETS = ("api", "ui")


def test_the_default_target_is_the_api(dockerfile):
    """``docker build -t cat_dog_classifier .`` builds the last stage."""
    assert dockerfile.stages[-1].name == "api"
    assert {s.name for s in dockerfile.stages} >= set(TARGETS)


def test_images_start_from_slim_python_pinned_by_tag(dockerfile):
    stage_names = {s.name for s in dockerfile.stages}
    external = {s.base for s in dockerfile.stages if s.base not in stage_names}
    assert external, "no base image"
    for image in external:
        assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image


def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile, dockerignore):
    from_context = [c for c in dockerfile.copies() if c.from_stage is None]
    assert from_context
    for copy in from_context:
        for source in copy.sources:
            assert "$" not in source and "*" not in source, f"check {source} by hand"
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert not dockerignore.excludes(source), f"COPY {source}: excluded by .dockerignore"


def _shipped_files(dockerfile, dockerignore) -> set[PurePosixPath]:
    """Every repository file a context COPY puts into an image."""
    shipped = set()
    for copy in (c for c in dockerfile.copies() if c.from_stage is None):
        for source in copy.sources:
            root = ROOT / source
            files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
            shipped |= {PurePosixPath(p.relative_to(ROOT).as_posix()) for p in files}
    return {p for p in shipped if not dockerignore.excludes(p)}


def test_the_package_its_data_and_the_model_reach_the_image(dockerfile, dockerignore):
    shipped = _shipped_files(dockerfile, dockerignore)
    package = ROOT / "src" / "catdog"
    needed = {p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    missing = {PurePosixPath(p.relative_to(ROOT).as_posix()) for p in needed} - shipped
    assert not missing, f"left out of the image: {sorted(map(str, missing))}"
    # The default model travels inside the package (the wheel), so src/ carries it.
    assert PurePosixPath("src/catdog/models/catdog-lite2/model.onnx") in shipped


@pytest.mark.parametrize("path", [
    ".git/HEAD", ".venv/bin/python", "runs/lite0-v1/best.pt", "data/train/cat/1.jpg",
    "tests/conftest.py", "tests/data/images/cat/1.jpg", "docs/images/ui.png", "bench/engine.py",
    "src/catdog/__pycache__/cli.cpython-311.pyc", "src/catdog.egg-info/PKG-INFO",
    ".pytest_cache/v/cache/lastfailed", ".ruff_cache/CACHEDIR.TAG", "models/catdog-lite0/last.ckpt",
])
def test_the_build_context_leaves_out(dockerignore, path):
    assert dockerignore.excludes(path)


def test_the_api_runs_the_production_command(dockerfile):
    assert dockerfile.cmd("api") == API_COMMAND


@pytest.mark.parametrize("target", TARGETS)
def test_images_run_as_an_unprivileged_numeric_user(dockerfile, target):
    user = dockerfile.user(target)
    assert user and re.fullmatch(r"\d+(:\d+)?", user), user
    assert user.split(":")[0] != "0"


@pytest.mark.parametrize("target", TARGETS)
def test_images_listen_on_port_8080(dockerfile, target):
    env = dockerfile.env(target)
    assert env["PORT"] == "8080"
    assert dockerfile.exposed_ports(target) == {8080}
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"


@pytest.mark.parametrize(("target", "path"), [("api", "/healthz"), ("ui", "/_stcore/health")])
def test_healthchecks_use_python_on_the_health_endpoint(dockerfile, target, path):
    command = dockerfile.healthcheck(target)
    assert command[0] == "python"  # the slim base has no curl or wget
    assert path in command[-1] and "PORT" in command[-1]


def test_onnx_runtime_telemetry_is_off(dockerfile):
    assert dockerfile.env("api")["ORT_DISABLE_TELEMETRY"] == "1"


def test_the_api_image_loads_the_model_inside_its_wheel(dockerfile):
    """No CATDOG_MODEL: the installed package finds its own model; other models are copied whole."""
    assert "CATDOG_MODEL" not in dockerfile.env("api")
    for copy in (c for c in dockerfile.copies("api") if c.from_stage is None):
        (source,) = copy.sources
        assert (ROOT / source / "model.onnx").is_file() and copy.destination == f"/app/{source}"


def test_the_ui_runs_streamlit_on_port_and_all_interfaces(dockerfile):
    env = dockerfile.env("ui")
    command = dockerfile.cmd("ui")
    assert command[:2] == ["sh", "-c"] and command[2].startswith("exec streamlit run ")
    for flag in ('--server.port="$PORT"', "--server.address=0.0.0.0", "--server.headless=true",
                 "--browser.gatherUsageStats=false"):
        assert flag in command[2]
    assert "$CATDOG_UI_SCRIPT" in command[2]
    assert env["CATDOG_UI_SCRIPT"].endswith("/site-packages/catdog/ui/app.py")
    assert "CATDOG_API_URL" in env
    assert env["STREAMLIT_LOGGER_HIDE_WELCOME_MESSAGE"] == "true"  # no external-IP lookup


def test_the_ui_script_path_follows_the_base_python(dockerfile):
    version = re.match(r"python:(3\.\d+)", dockerfile.base_image("ui")).group(1)
    assert f"/lib/python{version}/site-packages/" in dockerfile.env("ui")["CATDOG_UI_SCRIPT"]


def test_no_training_dependencies_are_installed(dockerfile):
    text = dockerfile.path.read_text().lower()
    for word in ("torch", "timm", "[train]", "[test]"):
        assert not re.search(rf"(pip install|requirements).*{re.escape(word)}", text), word
