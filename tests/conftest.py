"""Shared fixtures: real photos, the bundled model, free loopback ports, generated image variants."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
from PIL import Image

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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
