"""The pure parts of ``bench/speed.py``'s wrk harness (``bench/_wrk.py``), no timed assertions.

The Lua script is checked by running it in real wrk against a small loopback server that
keeps every body it gets: each must parse (Werkzeug's form parser, as catdog's API uses) to
one of the photos, byte for byte, in the multipart field ``image``, and every photo must be
sent. The output parser is checked on wrk's real output and on a recorded line.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import ClassVar

import pytest
from werkzeug.wrappers import Request

from tests.conftest import IMAGES

ROOT = Path(__file__).resolve().parents[2]


def load_wrk_module():
    # By file path: bench/ is not a package, and putting it on sys.path could let a bench module
    # shadow the standard library for the rest of the test session.
    spec = importlib.util.spec_from_file_location("catdog_bench_wrk", ROOT / "bench" / "_wrk.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


wrk = load_wrk_module()
PHOTOS = sorted(IMAGES.glob("*/*.jpg"))


def test_manifest_lists_a_boundary_then_every_photo(tmp_path):
    manifest = wrk.write_manifest(PHOTOS, tmp_path)
    boundary, *paths = manifest.read_text().splitlines()
    assert [Path(p) for p in paths] == [p.resolve() for p in PHOTOS]
    assert len(boundary) == 32 and all(boundary.encode() not in p.read_bytes() for p in PHOTOS)
    assert (tmp_path / "catdog.lua").read_text() == wrk.LUA_SCRIPT


def test_manifest_refuses_no_photos(tmp_path):
    with pytest.raises(ValueError):
        wrk.write_manifest([], tmp_path)


def test_command_caps_client_threads_and_passes_the_manifest(tmp_path):
    manifest = tmp_path / "photos.txt"
    cmd = wrk.command("http://127.0.0.1:9/predict", manifest, connections=1, seconds=3)
    assert cmd[:7] == ["wrk", "-t", "1", "-c", "1", "-d", "3s"]
    assert cmd[-3:] == ["--", str(manifest), "/predict"]
    assert wrk.command("http://x/", manifest, connections=256, seconds=1)[2] == "2"


RECORDED = ('Running 1s test @ http://127.0.0.1:1/predict\n  1 threads and 1 connections\n'
            'CATDOG_WRK {"requests": 120, "duration_us": 2000000, "bytes": 9, "non_2xx": 20, "connect": 1, '
            '"read": 2, "write": 3, "timeout": 4, "status_4xx_5xx": 20, "p50_us": 12500.0, "p90_us": 20000.0, '
            '"p99_us": 31000.0, "mean_us": 13000.0, "max_us": 40000.0}\n')


def test_parse_output_reads_the_result_line():
    result = wrk.parse_output(RECORDED, connections=1)
    assert (result.requests, result.non_2xx, result.socket_errors) == (120, 20, 10)
    assert result.seconds == 2.0 and result.rps == 50.0  # only 2xx answers are throughput
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (12.5, 31.0, 40.0)
    assert result.to_dict()["rps"] == 50.0


def test_parse_output_without_a_result_line_says_so():
    with pytest.raises(RuntimeError, match="no result line"):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n", connections=1)


class Recorder(BaseHTTPRequestHandler):
    """Keeps each body; answers 503 to every fifth request (so non-2xx counting is exercised)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    bodies: ClassVar[list[tuple[str, bytes]]] = []
    failures = 0
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            Recorder.bodies.append((self.headers["Content-Type"], body))
            fail = len(Recorder.bodies) % 5 == 0
            Recorder.failures += fail
        answer = b'{"ok": true}'
        self.send_response(503 if fail else 200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)")
def test_lua_script_sends_every_photo_as_multipart_image(tmp_path):
    Recorder.bodies, Recorder.failures = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        manifest = wrk.write_manifest(PHOTOS, tmp_path)
        result = wrk.run_wrk(f"http://127.0.0.1:{server.server_port}/predict", manifest,
                             connections=2, seconds=1, timeout_s=5)
    finally:
        server.shutdown()
        server.server_close()
    photos = {p.name: p.read_bytes() for p in PHOTOS}
    sent = set()
    for content_type, body in Recorder.bodies:
        request = Request.from_values(method="POST", input_stream=BytesIO(body), content_type=content_type,
                                      content_length=len(body))
        upload = request.files["image"]
        assert list(request.files) == ["image"] and upload.mimetype == "image/jpeg"
        assert upload.read() == photos[upload.filename]
        sent.add(upload.filename)
    assert sent == set(photos), "every photo of the manifest is sent"
    assert 0 < result.requests <= len(Recorder.bodies)
    assert 0 < result.non_2xx <= Recorder.failures
    assert result.rps > 0 and result.p50_ms > 0 and result.socket_errors == 0
