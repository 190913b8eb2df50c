"""deploy/dataflow/Dockerfile: the worker image ``catdog bulk`` runs on Dataflow.

No Docker here: the file itself is read (hadolint lints it in test_hadolint.py), and every
fact the walkthrough in docs/bulk.md relies on is checked against the repository.
"""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement

from tests.deploy.conftest import ROOT
from tests.deploy.dockerfile import Dockerfile, expand

PATH = ROOT / "deploy" / "dataflow" / "Dockerfile"


@pytest.fixture(scope="module")
def worker() -> Dockerfile:
    return Dockerfile(PATH)


@pytest.fixture(scope="module")
def beam_version() -> str:
    match = re.search(r"^ARG BEAM_VERSION=(\S+)$", PATH.read_text(), re.MULTILINE)
    assert match, "the Beam version must be one ARG, so a build can override it"
    return match.group(1)


def test_beam_matches_the_bulk_extra_and_python_matches_the_api_image(worker, dockerfile, beam_version):
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    beam = next(Requirement(r) for r in extras["bulk"] if Requirement(r).name == "apache-beam")
    assert beam.specifier.contains(beam_version), (beam_version, str(beam.specifier))

    api_python = dockerfile.base_image("api").split(":")[1].split("-")[0]  # "3.11"
    assert worker.base_image("worker") == f"python:{api_python}-slim"
    harness = expand(worker.stage("beam").base, {"BEAM_VERSION": beam_version})
    assert harness == f"apache/beam_python{api_python}_sdk:{beam_version}"


def test_the_worker_starts_beams_harness_from_the_sdk_image(worker):
    [entrypoint] = worker.instructions("worker", "ENTRYPOINT")
    assert entrypoint.args == '["/opt/apache/beam/boot"]'
    assert any(c.from_stage == "beam" and c.sources == ("/opt/apache/beam",) and c.destination == "/opt/apache/beam"
               for c in worker.copies("worker"))


def test_the_model_it_loads_is_the_wheels_and_one_thread_per_sdk_process(worker):
    env = worker.env("worker")
    assert env["CATDOG_THREADS"] == "1"
    # No CATDOG_MODEL: the installed wheel carries the default model (tests/test_packaging.py).
    assert "CATDOG_MODEL" not in env
    for copy in (c for c in worker.copies("worker") if c.from_stage is None):
        (source,) = copy.sources
        assert (ROOT / source / "model.onnx").is_file() and (ROOT / source / "model.json").is_file()
    assert env["ORT_DISABLE_TELEMETRY"] == "1"


def test_every_copied_path_exists_and_is_in_the_build_context(worker, dockerignore):
    from_context = [c for c in worker.copies() if c.from_stage is None]
    assert from_context
    for copy in from_context:
        for source in copy.sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert not dockerignore.excludes(source), f"COPY {source}: excluded by .dockerignore"


def test_it_installs_the_bulk_extra_with_beam_pinned_for_gcs(worker):
    run = " ".join(i.args for i in worker.instructions("worker", "RUN"))
    assert '"$1[bulk]"' in run
    assert '"apache-beam[gcp]==${BEAM_VERSION}"' in run
