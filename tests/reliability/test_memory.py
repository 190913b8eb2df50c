"""Memory: a finished request, good or bad, leaves nothing alive that only Python's cyclic
garbage collector could free (the soak run found error answers doing that)."""

from __future__ import annotations

import gc
from collections import Counter

import pytest

from catdog.testing.hostile import PDF, Part, multipart
from tests.conftest import CAT_PHOTOS

PHOTO = CAT_PHOTOS[0].read_bytes()


@pytest.fixture
def cycles():
    """``cycles()``: the kinds of objects that only the cyclic collector found since the last call."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)

    def found() -> Counter:
        gc.collect()
        kinds = Counter(type(obj).__name__ for obj in gc.garbage)
        gc.garbage.clear()
        return kinds

    yield found
    gc.set_debug(0)
    gc.garbage.clear()
    gc.enable()


@pytest.mark.parametrize("name,data,content_type", [
    ("photo", PHOTO, "image/jpeg"),
    ("PDF", PDF, "image/jpeg"),
    ("missing field", *multipart(Part(b"file", PHOTO))),
    ("malformed form", *multipart(Part(b"image", PHOTO), boundary="other")[:1], "multipart/form-data; boundary=x"),
])
def test_no_frames_or_tracebacks_outlive_a_request(api, cycles, name, data, content_type):
    client = api.test_client()
    client.post("/v1/predict", data=data, content_type=content_type)  # warm: lazy imports, caches
    cycles()
    for _ in range(3):
        client.post("/v1/predict", data=data, content_type=content_type)
    kinds = cycles()
    # Werkzeug's own small per-request cycles (the request <-> its environ, the URL matcher's
    # recursive closure) hold no frames: what must never be left is a traceback, whose frames
    # keep the upload's bytes and every decoded image alive.
    assert not kinds["traceback"] and not kinds["frame"], kinds
