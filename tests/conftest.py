"""Shared fixtures: real photos, the bundled model, free loopback ports, generated image variants."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from catdog import servers

DATA = Path(__file__).parent / "data"
IMAGES = DATA / "images"
CAT_PHOTOS = sorted((IMAGES / "cat").glob("*.jpg"))
DOG_PHOTOS = sorted((IMAGES / "dog").glob("*.jpg"))


@pytest.fixture(scope="session")
def images_dir() -> Path:
    """ImageFolder-style folder (cat/, dog/) of real photos."""
    return IMAGES


@pytest.fixture(scope="session")
def cat_photo() -> Path:
    return CAT_PHOTOS[0]


@pytest.fixture(scope="session")
def dog_photo() -> Path:
    return DOG_PHOTOS[0]


@pytest.fixture(scope="session")
def cat_bytes(cat_photo) -> bytes:
    return cat_photo.read_bytes()


@pytest.fixture(scope="session")
def dog_bytes(dog_photo) -> bytes:
    return dog_photo.read_bytes()


@pytest.fixture(scope="session")
def classifier():
    """The bundled model, loaded once for the whole session."""
    from catdog.model.engine import Classifier

    return Classifier.load(threads=1)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture
def free_port() -> int:
    """A free TCP port on the loopback interface."""
    return servers.free_port()


@pytest.fixture(scope="session")
def cascade_dir(tmp_path_factory) -> Path:
    """A cascade model built once by ``catdog cascade`` (lite0 in front of lite2-v1; tests/cascades.py)."""
    pytest.importorskip("torch", reason="catdog cascade needs the train extra (onnx, torch)")
    from tests.cascades import build

    return build(tmp_path_factory.mktemp("cascade") / "lite0-lite2")


@pytest.fixture(scope="session")
def mixed_cascade_dir(cascade_dir, tmp_path_factory) -> Path:
    """The cascade with its fast temperature at 2 and a hand-off that sends some of
    ``tests.cascades.PHOTOS`` down each path."""
    from tests.cascades import edit_json, mixed_handoff, variant

    out = variant(cascade_dir, tmp_path_factory.mktemp("cascade") / "mixed")
    edit_json(out / "model.json", cascade__handoff=mixed_handoff(out))
    return out
