"""The request examples of the README and docs/ run against a live server, so they cannot go stale.

Every ``curl`` command in a ```` ```bash ```` block of ``README.md`` or ``docs/*.md`` that talks
to ``http://127.0.0.1:8000`` (or ``localhost:8000``) is run as written, with bash and the real
curl, against the app on a free loopback port, in a folder holding the files the examples
name (``cat.jpg``, ``dog.jpg``, ``a.jpg``, ``b.jpg``, ``notes.pdf`` and ``tests/data``). The
answer shown under a command (its ``# {...}`` comment lines, ``...`` for what is left out)
must match the real answer: every key shown exists, a ``probabilities`` object listing its
labels lists exactly the model's labels, the ``"shape"`` shown for a named output tensor is
the real one, and a model name or version shown is the served model's. A changed answer breaks this test, not
a reader.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CAT_PHOTOS, DATA, DOG_PHOTOS

ROOT = DATA.parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
HOSTS = ("http://127.0.0.1:8000", "http://localhost:8000")
FENCE = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Example:
    where: str  # file:line
    command: str
    shown: str  # the answer as the document shows it ("" when it shows none)


def examples() -> list[Example]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for block in FENCE.finditer(text):
            first_line = text.count("\n", 0, block.start(1)) + 1
            lines = block.group(1).splitlines()
            i = 0
            while i < len(lines):
                start = i
                command = lines[i]
                while command.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command + "\n" + lines[i]
                i += 1
                if not command.startswith("curl ") or not any(host in command for host in HOSTS):
                    continue
                shown = []
                code, _, comment = command.rpartition("  # ")
                if code and comment.lstrip().startswith("{"):
                    command, shown = code.rstrip(), [comment]
                while i < len(lines) and lines[i].startswith("#"):
                    shown.append(lines[i].lstrip("#").strip())
                    i += 1
                where = f"{document.relative_to(ROOT)}:{first_line + start}"
                found.append(Example(where, command, " ".join(shown)))
    return found


EXAMPLES = examples()


def test_the_documents_have_request_examples():
    where = {example.where.split(":")[0] for example in EXAMPLES}
    assert {"README.md", "docs/rest.md", "docs/v2.md"} <= where
    assert sum(bool(example.shown) for example in EXAMPLES) >= 5


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The files the examples name, and tests/data for those that use the repository's photos."""
    folder = tmp_path_factory.mktemp("examples")
    for name, source in (("cat.jpg", CAT_PHOTOS[0]), ("a.jpg", CAT_PHOTOS[1]),
                         ("dog.jpg", DOG_PHOTOS[0]), ("b.jpg", DOG_PHOTOS[1])):
        shutil.copyfile(source, folder / name)
    (folder / "notes.pdf").write_bytes(b"%PDF-1.4\n% meeting notes, not a photo\n")
    (folder / "tests").mkdir()
    (folder / "tests" / "data").symlink_to(DATA)
    return folder


def run(command: str, url: str, cwd: Path) -> str:
    for host in HOSTS:
        command = command.replace(host, url)
    # The command as written, with curl quiet and failing on an HTTP error status.
    script = 'set -o pipefail\ncurl() { command curl --silent --show-error --fail-with-body "$@"; }\n' + command
    result = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


def keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys(v) for v in value))
    return set()


def find(value: Any, key: str) -> list[Any]:
    """Every value of ``key`` in ``value``, depth first, in document order."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                out.append(v)
            out += find(v, key)
    elif isinstance(value, list):
        for v in value:
            out += find(v, key)
    return out


def check_answer(shown: str, answer: Any, model: dict) -> None:
    shown_keys = set(re.findall(r'"([A-Za-z_]+)"\s*:', shown))
    assert shown_keys <= keys(answer), f"shown keys not in the answer: {shown_keys - keys(answer)}"
    listed = re.search(r'"probabilities":\s*(\{[^{}]*\})', shown)
    if listed and "..." not in listed.group(1):
        shown_labels = set(re.findall(r'"([^"]+)"\s*:', listed.group(1)))
        assert shown_labels == set(model["labels"]), f"shown labels {shown_labels}, model's {model['labels']}"
    tensors = {t["name"]: t for t in find(answer, "outputs")[0]} if find(answer, "outputs") else {}
    for name, shape in re.findall(r'\{"name":\s*"(\w+)"[^{}]*?"shape":\s*(\[[^\]]*\])', shown):
        assert name in tensors, f"shown output {name!r} not in the answer"
        assert json.loads(shape) == tensors[name]["shape"], f"shown shape of {name!r} {shape}, real {tensors[name]['shape']}"
    for key, real in (("name", model["name"]), ("version", model["version"]),
                      ("model_name", model["name"]), ("model_version", model["version"])):
        for value in re.findall(rf'"{key}":\s*"([^"]*)"', shown):
            if key in ("name", "version") and value not in (model["name"], model["version"]):
                continue  # a tensor's or an output's name, not the model's
            assert value == real, f"shown {key} {value!r}, served {real!r}"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_the_example_runs_and_answers_as_shown(example, live_url, workdir):
    if "| jq" in example.command and shutil.which("jq") is None:
        pytest.skip("needs jq")
    out = run(example.command, live_url, workdir)
    if not example.shown:
        return
    model = json.loads(run(f"curl {live_url}/v1/model", live_url, workdir))
    check_answer(example.shown, json.loads(out), model)
