"""API fixtures: apps built by the real factory around the session's loaded model, and bad inputs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from PIL import Image
from werkzeug.serving import make_server

from catdog.api import create_app
from catdog.config import Settings
from catdog.testing.hostile import png_claiming
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, encode

PHOTOS = [(path, "cat") for path in CAT_PHOTOS] + [(path, "dog") for path in DOG_PHOTOS]


@pytest.fixture
def make_app(classifier, monkeypatch, tmp_path):
    """``make_app(max_batch=2, ...)``: a fresh app with those settings, sharing the loaded model
    (its feedback database: a SQLite file in the test's own folder, unless told otherwise)."""
    for name in ("CATDOG_API_KEYS", "CATDOG_RATE_LIMIT", "CATDOG_CORS_ORIGINS", "CATDOG_MAX_UPLOAD_MB",
                 "CATDOG_FEEDBACK_URL", "CATDOG_FEEDBACK_PATH", "CATDOG_FEEDBACK_PHOTOS"):
        monkeypatch.delenv(name, raising=False)

    def build(**overrides):
        overrides.setdefault("feedback_path", tmp_path / "feedback.sqlite3")
        return create_app(Settings(**overrides), classifier=classifier)

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def bad_inputs(cat_bytes) -> dict[str, bytes]:
    """Generated bad uploads, by the error code each must produce."""
    return {
        "empty_file": b"",
        "not_an_image": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n",
        "truncated_image": cat_bytes[: len(cat_bytes) // 2],
        "unsupported_format": encode(Image.new("RGB", (32, 32), "gray"), "TIFF"),
        "too_many_pixels": png_claiming(50_000, 50_000),
    }


@contextmanager
def serving(app, port: int = 0) -> Iterator[str]:
    """Serve ``app`` on a loopback port (default: a free one) in a thread, a real HTTP server on
    real sockets, for the block; yields its base URL. For real client libraries against the app."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def live_url(app) -> Iterator[str]:
    """The default app, served on loopback."""
    with serving(app) as url:
        yield url
