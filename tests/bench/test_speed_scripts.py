"""``bench/speed.py`` and ``bench/request_path.py`` run for real with tiny settings on the fixture photos.

One real catdog server under the production gunicorn command, driven by real wrk; the request
path timed through the real app. The checks are on shape, not speed (no timed assertions):
every row there, every number positive, no errors under 256 connections, docs/ untouched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)")]

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "bench" / "speed.json",
        ROOT / "docs" / "bench" / "request_path.json")


def run(script: str, *args: str, tmp_path: Path) -> str:
    before = {p: p.read_bytes() if p.exists() else None for p in DOCS}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--val", str(tmp_path / "no-photos-here"),
                           "--no-write", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert {p: p.read_bytes() if p.exists() else None for p in DOCS} == before, "--no-write changed docs/"
    return done.stdout


def tables(output: str) -> dict[str, list[list[str]]]:
    """Every Markdown table printed, keyed by its first header cell (the last of equal keys wins,
    so a key collision shows up as a failing check rather than a silent merge)."""
    found: dict[str, list[list[str]]] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            rows = []
            for body in lines[i + 2:]:
                if not body.startswith("|"):
                    break
                rows.append([cell.strip() for cell in body.strip("|").split("|")])
            found[line.strip("|").split("|")[0].strip()] = rows
    return found


def test_http_harness_drives_catdog_with_wrk_and_reports_overload(tmp_path):
    out = run("speed.py", "--only", "catdog", "--no-limit", "--previous", "", "--keras-backends", "", "--seconds", "2",
              "--rounds", "1", "--warmup", "0", "--overload-seconds", "2", tmp_path=tmp_path)
    assert "using the fixture photos" in out
    [speed] = tables(out.split("Issue 12 goals")[0])["server"]
    assert speed[0].startswith("catdog:")
    assert float(speed[1]) > 0 and float(speed[2]) > 0  # req/s at 16, p50 at 1
    [overload] = tables(out.split("Issue 12 goals")[1])["server"]
    assert overload[0] == "catdog" and int(overload[1].replace(",", "")) > 0
    # Under 256 connections the excess may be answered 503 overloaded (issue 24), never dropped.
    assert overload[6] == "0", "under 256 connections: no socket errors"
    assert overload[8] == "yes"
    raw = json.loads(Path(out.rsplit("raw results: ", 1)[1].split()[0]).read_text())
    assert len(raw["photos"]) == 6 and set(raw["results"]["catdog"]["http"]) == {"1", "16", "256"}
    # Issue 24's table: the CPU each answer cost every process of the server, and the cold start.
    [peers] = [rows for header, rows in tables(out).items() if header.startswith("server (same Classifier")]
    assert peers[0][0].startswith("catdog:") and float(peers[0][4]) > 0 and float(peers[0][6]) > 0
    catdog = raw["results"]["catdog"]
    assert 0 < catdog["ready_s"] < catdog["cold_start_s"] and catdog["first_answer_ms"] > 0
    assert "cold start: ready (/readyz 200)" in out and "at 256 connections p99" in out


def test_request_path_budget_has_every_stage(tmp_path):
    out = run("request_path.py", "--rounds", "1", "--seconds", "0.3", "--http-seconds", "1", tmp_path=tmp_path)
    printed = tables(out)
    rows = {row[0]: row for row in printed["stage"]}
    for stage in ("multipart parsing", "decode: JPEG pixels", "resize + centre crop", "normalise", "model (ONNX",
                  "decide", "response body + JSON", "access log line", "metrics (Prometheus"):
        [row] = [r for name, r in rows.items() if name.startswith(stage)]
        assert float(row[1]) > 0, row
    assert any(name.startswith("**whole request over HTTP**") for name in rows)
    normalise = printed["normalise a 288 px crop (float32 model input)"]
    assert [r[2] for r in normalise] == ["yes", "yes"]
