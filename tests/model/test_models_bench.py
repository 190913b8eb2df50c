"""``bench/models.py`` run for real with tiny settings: both bundled models, the fixture photos.

Checks the printed table (one row per model, the default marked, int8 vs fp32 told apart,
every photo scored, every time a positive number) and that ``--no-write`` writes nothing.
The full measurement is ``python bench/models.py``; its table is in docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from catdog.model.recipe import Recipe
from tests.conftest import IMAGES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "models.py"
LITE2, LITE2_FP32 = ROOT / "src" / "catdog" / "models" / "catdog-lite2", ROOT / "models" / "catdog-lite2-fp32"
WRITES = (ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "bench" / "models.json")
TIMES = ("ms/photo batch 1, 1 thread", "ms/photo batch 16, 1 thread", "ms/photo end to end, 1 thread")


def run(*args: str) -> str:
    before = {path: path.read_bytes() if path.exists() else None for path in WRITES}
    # --others: the fixture's flowers, not ../shared's 806 held-out non-pets (scored for every model,
    # the float Lite2 included, they took this test past its time limit on a busy machine).
    done = subprocess.run([sys.executable, str(SCRIPT), "--seconds", "0.05", "--rounds", "1", "--no-write",
                           "--others", str(IMAGES.parent / "not-pets"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    after = {path: path.read_bytes() if path.exists() else None for path in WRITES}
    assert after == before, "--no-write changed docs/"
    return done.stdout


def parse_table(output: str) -> list[dict[str, str]]:
    """The printed Markdown table as one dict per row, keyed by header."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, output
    headers, separator, *rows = ([cell.strip() for cell in line.strip("|").split("|")] for line in lines)
    assert set("".join(separator)) == {"-"}, lines[1]
    assert all(len(row) == len(headers) for row in rows), lines
    return [dict(zip(headers, row)) for row in rows]


def test_table_scores_and_times_each_model_and_marks_the_default():
    output = run("--models", str(LITE2), str(LITE2_FP32), "--val", str(IMAGES), "--limit", "2",
                 "--cold-repeats", "1")
    rows = parse_table(output)
    assert [row["model"] for row in rows] == ["**catdog-lite2** (default)", "catdog-lite2-fp32"], output
    assert [row["weights"] for row in rows] == ["int8", "fp32"]
    for row, folder in zip(rows, (LITE2, LITE2_FP32)):
        recipe = Recipe.read(folder / "model.json")
        assert row["version"] == recipe.version
        assert row["architecture"] == recipe.architecture
        assert row["input px"] == str(recipe.input.size)
        files = [folder / "model.onnx", *(folder / "fast").glob("model.onnx")]  # a cascade counts both networks
        assert float(row["file MB"]) == pytest.approx(sum(f.stat().st_size for f in files) / 2**20, abs=0.05)
        # --limit 2: two cats and two dogs, all of them easy photos every shipped model gets right.
        assert row["errors"] == "0 / 4", row
        assert row["val accuracy"] == "100.00%", row
        assert 0 <= float(row["ECE"]) < 0.5 and 0 <= float(row["log loss"]) < 0.7, row
        all_cores = next(key for key in row if key.startswith("ms/photo batch 1, ") and key not in TIMES)
        for key in (*TIMES, all_cores, "cold start s"):
            assert float(row[key]) > 0, (key, row)
    # fp32 weights are ~4x int8 ones (a few layers stay float): against the cascade's Lite2 file
    assert float(rows[1]["file MB"]) > 2 * (LITE2 / "model.onnx").stat().st_size / 2**20
    assert "At batch 1 on one thread, against the default, catdog-lite2: catdog-lite2-fp32 is " in output
    assert "as accurate (100.00% vs 100.00%)" in output


def test_without_validation_photos_it_measures_speed_only(tmp_path):
    output = run("--models", str(LITE2), "--val", str(tmp_path / "missing"), "--cold-repeats", "0")
    assert f"no validation folder at {tmp_path / 'missing'}" in output
    [row] = parse_table(output)
    assert row["model"] == "**catdog-lite2** (default)"
    assert [row[key] for key in ("val accuracy", "errors", "ECE", "log loss", "cold start s")] == ["n/a"] * 5
    assert all(float(row[key]) > 0 for key in TIMES), row
    assert "Only the default, catdog-lite2, was measured." in output


def test_a_cascade_is_timed_as_it_serves_and_shows_its_slow_path():
    """Its times go through Classifier.probabilities (fast model, hand-offs to the accurate
    one), not the accurate model's file alone; its row says which share took the slow path."""
    output = run("--models", str(ROOT / "models" / "catdog-lite2-single"), str(LITE2), "--val", str(IMAGES),
                 "--limit", "2", "--cold-repeats", "0")
    single, both = parse_table(output)
    assert both["model"] == "**catdog-lite2** (default)"
    assert single["slow path"] == "-"
    assert both["slow path"].endswith("%") and 0 <= float(both["slow path"].rstrip("%")) <= 100, both
    assert all(float(both[key]) > 0 for key in TIMES), both
    assert "timed on " in output
