"""Fixtures for the deployment files: the parsed Dockerfile, .dockerignore and YAML manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.dockerfile import Dockerfile
from tests.deploy.dockerignore import DockerIgnore

ROOT = Path(__file__).resolve().parents[2]
CLOUDRUN = ROOT / "deploy" / "cloudrun"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return Dockerfile(ROOT / "Dockerfile")


@pytest.fixture(scope="session")
def dockerignore() -> DockerIgnore:
    return DockerIgnore(ROOT / ".dockerignore")


@pytest.fixture(scope="session")
def api_service() -> dict:
    return load_yaml(CLOUDRUN / "service.yaml")


@pytest.fixture(scope="session")
def ui_service() -> dict:
    return load_yaml(CLOUDRUN / "service-ui.yaml")


@pytest.fixture(scope="session")
def cloudbuild() -> dict:
    return load_yaml(ROOT / "cloudbuild.yaml")


@pytest.fixture(scope="session")
def compose() -> dict:
    return load_yaml(ROOT / "compose.yaml")
