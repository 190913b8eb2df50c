"""The package works wherever it is installed: build the wheel, install it (not editable) into a
fresh virtual environment, and classify a photo from another folder with no CATDOG_* settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from catdog.model.engine import DEFAULT_MODEL_NAME
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS

ROOT = Path(__file__).resolve().parents[1]
#: The wheel carries the serving model only (a cascade: the Lite2 and its Lite0 fast model): under this.
MAX_WHEEL_MB = 14


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (so the checkout gets no build/ or egg-info)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--wheel-dir", str(out), str(source)], check=True, timeout=300)
    (built,) = out.glob("catdog-*.whl")
    return built


def test_the_wheel_carries_the_default_model_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    model = f"catdog/models/{DEFAULT_MODEL_NAME}"
    assert {f"{model}/model.onnx", f"{model}/model.json", f"{model}/MODEL_CARD.md",
            f"{model}/fast/model.onnx", f"{model}/fast/model.json"} <= set(names)
    assert any(name.startswith(f"{model}/evaluation/") for name in names)
    assert {name.split("/")[2] for name in names if name.startswith("catdog/models/")} == {DEFAULT_MODEL_NAME}
    assert "catdog/py.typed" in names
    assert wheel.stat().st_size < MAX_WHEEL_MB * 1e6


@pytest.mark.slow
def test_installed_wheel_classifies_from_another_folder_without_settings(wheel, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATDOG_") and k != "PYTHONPATH"}
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # no --system-site-packages: catdog can only come from the wheel
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(wheel)], check=True, timeout=300, env=env)
    # The dependencies (onnxruntime, flask, ...) are this environment's, appended after the fresh
    # venv's own site-packages: offline, and without this checkout's editable catdog (a plain path
    # line in a .pth file does not run the .pth files of the folder it adds).
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True, env=env).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for photo in (CAT_PHOTOS[0], DOG_PHOTOS[0]):
        shutil.copy(photo, elsewhere / photo.name)

    def run(*args: str) -> str:
        result = subprocess.run(args, check=False, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    where = run(str(python), "-c", "import catdog; print(catdog.__file__)")
    assert Path(where.strip()).is_relative_to(env_dir), where
    rows = [json.loads(line) for line in run(str(env_dir / "bin" / "catdog"), "predict", "--json", "--threads", "1",
                                             CAT_PHOTOS[0].name, DOG_PHOTOS[0].name).splitlines()]
    assert [(row["path"], row["label"]) for row in rows] == [(CAT_PHOTOS[0].name, "cat"), (DOG_PHOTOS[0].name, "dog")]
    info = json.loads(run(str(env_dir / "bin" / "catdog"), "info", "--threads", "1"))
    assert info["name"] == DEFAULT_MODEL_NAME and set(rows[0]["probabilities"]) == set(info["labels"])
