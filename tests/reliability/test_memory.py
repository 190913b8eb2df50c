"""Memory: a finished request, good or bad, leaves nothing alive that only Python's cyclic
garbage collector could free (the soak run found error answers doing that)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections import Counter
from pathlib import Path

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


PAGE_FAULTS_SCRIPT = """
import resource, sys
from catdog.api.memory import tune_malloc
from catdog.model.engine import Classifier
if sys.argv[1] == "tuned":
    assert tune_malloc()
else:  # what issue 28 shipped: only the mmap threshold fixed (glibc then stops adjusting the trim one)
    import ctypes, ctypes.util
    ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-3, 1 << 20)
photo = open(sys.argv[2], "rb").read()
classifier = Classifier.load(threads=1)
for _ in range(20):
    classifier.predict(photo)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    classifier.predict(photo)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="glibc on Linux only")
def test_a_worker_reuses_its_heap_from_one_photo_to_the_next(tmp_path):
    """The worker's malloc settings (catdog.api.memory.tune_malloc) keep big blocks mmapped but
    the heap's top in place: a photo costs no page faults. With only the mmap threshold fixed,
    every photo shrank the heap and grew it again (about 500 faults, 0.6-1 ms of CPU, a photo)."""
    def faults_per_photo(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", PAGE_FAULTS_SCRIPT, mode, str(CAT_PHOTOS[0])],
                              capture_output=True, text=True, check=True, timeout=120)
        return float(done.stdout.split()[-1])

    assert faults_per_photo("tuned") < 20
    assert faults_per_photo("mmap-only") > 100  # the measurement sees the faults it guards against
