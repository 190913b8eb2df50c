"""Static security checks as tests: bandit over ``src/`` and pip-audit over the serving dependencies.

Bandit must report nothing: each accepted finding carries an inline ``# nosec BXXX`` with
the reason on the line above (a container binds every interface, ``catdog up`` starts its
own servers, a seeded data split is not a secret...).

pip-audit checks the exact installed versions of what the server needs at run time (the
``[project] dependencies`` of pyproject.toml and everything they pull in), not the
training or test tools. It asks a vulnerability service over the network (PyPI's JSON
API); when that service cannot answer, the test is skipped with the reason, never passed
silently. A vulnerability accepted after review goes in ``IGNORED_VULNERABILITIES`` with
its reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

#: Vulnerability id -> why it does not apply to catdog (none so far).
IGNORED_VULNERABILITIES: dict[str, str] = {}


def test_bandit_finds_nothing_in_src():
    result = subprocess.run([sys.executable, "-m", "bandit", "-r", "src", "-q", "-f", "json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(result.stdout)
    findings = [f"{r['filename']}:{r['line_number']}: {r['test_id']} {r['issue_text']}" for r in report["results"]]
    assert not findings, "\n".join(findings)
    assert not report["errors"], report["errors"]


def serving_requirements() -> list[str]:
    """``name==version`` for catdog's run-time dependencies and theirs, as installed here."""
    pinned: dict[str, str] = {}
    todo = [Requirement(text) for text in distribution("catdog").requires or []]
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue  # an optional extra (ui, train, test...) or another platform's dependency
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            continue
        name = dist.metadata["Name"].lower()
        if name in pinned:
            continue
        pinned[name] = dist.version
        todo += [Requirement(text) for text in dist.requires or []]
    return sorted(f"{name}=={version}" for name, version in pinned.items())


def test_serving_requirements_are_the_runtime_closure():
    names = {line.split("==")[0] for line in serving_requirements()}
    assert {"flask", "werkzeug", "onnxruntime", "pillow", "gunicorn", "numpy"} <= names
    assert not names & {"torch", "timm", "pytest", "streamlit", "bandit"}


@pytest.mark.slow
def test_pip_audit_finds_no_known_vulnerability(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(serving_requirements()) + "\n")
    ignores = [arg for vuln in IGNORED_VULNERABILITIES for arg in ("--ignore-vuln", vuln)]
    command = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip",
               "--progress-spinner", "off", "--format", "json", *ignores]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("pip-audit: the vulnerability service did not answer within 300 s")
    try:
        report = json.loads(result.stdout)
    except ValueError:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        if "Connection" in result.stderr or "resolve" in result.stderr:
            pytest.skip(f"pip-audit: the vulnerability service is unreachable ({last[:200]})")
        raise AssertionError(f"pip-audit failed: {result.stderr[-2000:]}") from None
    found = [f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v['fix_versions']) or 'no release'})"
             for d in report["dependencies"] for v in d.get("vulns", [])]
    assert not found, "known vulnerabilities:\n" + "\n".join(found)
    unaudited = [d for d in report["dependencies"] if d.get("skip_reason")]
    if unaudited:
        pytest.skip(f"pip-audit: {len(unaudited)} of {len(report['dependencies'])} packages could not be "
                    f"audited, the vulnerability service cannot answer here: {unaudited[0]['skip_reason']}")
