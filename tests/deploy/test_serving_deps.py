"""The API image's dependency set ([project].dependencies) is enough to serve, without torch.

The image installs only the serving dependencies; this venv has the training and UI extras
too. So a fresh interpreter is run with torch, timm and streamlit made unimportable, builds
the app, classifies a real photo, and reports which distributions it loaded; every one of
them must come from the serving dependencies (or be part of any venv).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import ROOT

# Not in the image: the training and UI extras, Beam (the bulk extra), and defusedxml, which
# Pillow < 13 (what Beam's pin allows) imports when it is installed (pip-audit brings it here).
BLOCKED = ("torch", "torchvision", "timm", "streamlit", "apache_beam", "defusedxml")
# Loaded here by setuptools' .pth hook (_distutils_hack); the image's venv has neither.
VENV_SEED = {"pip", "setuptools"}

SCRIPT = """
import json, sys
for name in sys.argv[2:]:
    sys.modules[name] = None  # `import name` now raises ImportError, as in the image

from importlib import metadata
from pathlib import Path

from catdog.api import create_app

photo = Path(sys.argv[1])
with photo.open("rb") as f:
    response = create_app().test_client().post("/predict", data={"image": (f, photo.name)})
found = metadata.packages_distributions()
tops = {m.partition(".")[0] for m, mod in list(sys.modules.items()) if mod is not None}
dists = sorted({d for top in tops for d in found.get(top, [])})
print(json.dumps({"status": response.status_code, "body": response.get_json(), "dists": dists}))
"""


def serving_closure() -> set[str]:
    """Canonical names of [project].dependencies and everything they require, transitively.

    Read from pyproject.toml, as the Dockerfile does (an editable install's metadata can lag).
    """
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    todo = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    env = default_environment() | {"extra": ""}
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate(env)):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(requirement.name) or []]
    return seen


def test_the_api_serves_with_only_the_serving_dependencies(cat_photo, tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(cat_photo), *BLOCKED],
                            check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, report["body"]
    assert report["body"]["label"] == "cat"

    loaded = {canonicalize_name(d) for d in report["dists"]} - {"catdog"}
    extra = loaded - serving_closure() - VENV_SEED
    assert not extra, f"imported but not a serving dependency: {sorted(extra)}"
    assert not loaded & {canonicalize_name(n) for n in BLOCKED}
