"""The whole ``catdog bulk`` pipeline on Beam's local runner, over real photos and broken files.

Every row is checked: each photo's prediction against the engine's own answer for that
file, each broken file's error code against the code the API gives the same bytes.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("apache_beam", reason="needs the bulk extra: pip install -e '.[bulk]' (scripts/test.sh does)")

from catdog.bulk.handler import ModelSpec, shared_classifier
from catdog.cli import main
from catdog.testing.hostile import png_claiming, zip_archive
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, encode

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def broken_files(photo: bytes) -> dict[str, tuple[bytes | None, str]]:
    """File name -> (content, the error code the API answers for it); None content: made below."""
    return {
        "empty.jpg": (b"", "empty_file"),
        "half.jpg": (photo[: len(photo) // 2], "truncated_image"),
        "report.jpg": (b"%PDF-1.4\n% not a photo at all\n", "not_an_image"),
        "archive.png": (zip_archive(), "not_an_image"),
        "scan.bmp": (b"II*\x00" + bytes(64), "unsupported_format"),
        "bomb.png": (png_claiming(20_000, 20_000), "too_many_pixels"),
        "huge.jpg": (None, "file_too_large"),  # a sparse file over --max-file-mb, never read
        "pipe.jpg": (None, "unreadable_file"),  # a named pipe: reading it would block for ever
    }


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> tuple[Path, dict[Path, str], dict[Path, str]]:
    """Photos in nested folders (some renamed .JPG, one re-encoded as PNG), broken files
    among them, and non-image files a folder scan must skip.

    Returns the folder, {photo: its true label} and {broken file: expected error code}.
    """
    root = tmp_path_factory.mktemp("bucket")
    photos: dict[Path, str] = {}
    for i, src in enumerate(CAT_PHOTOS + DOG_PHOTOS):
        label = src.parent.name
        dest = root / label / ("deep/er" if i % 2 else "") / (src.stem + (".JPG" if i == 1 else ".jpg"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        photos[dest] = label
    png = root / "dog" / "as-png.png"
    png.write_bytes(encode(Image.open(DOG_PHOTOS[0]), "PNG"))
    photos[png] = "dog"

    broken: dict[Path, str] = {}
    for name, (content, code) in broken_files(CAT_PHOTOS[0].read_bytes()).items():
        path = root / "broken" / name
        path.parent.mkdir(exist_ok=True)
        if name == "huge.jpg":
            with path.open("wb") as f:
                f.truncate(3_000_000)  # over the 2 MB limit the tests pass
        elif name == "pipe.jpg":
            os.mkfifo(path)
        else:
            path.write_bytes(content)
        broken[path] = code
    (root / "notes.txt").write_text("not a photo; a folder scan skips it")
    (root / "cat" / "labels.json").write_text("{}")
    return root, photos, broken


def read_rows(out: Path, kind: str) -> list[dict]:
    files = sorted(out.glob(f"{kind}-*.jsonl"))
    assert files, f"no {kind}-*.jsonl in {out}"
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def run_bulk(*args: str) -> int:
    return main(["bulk", *args, "--threads", "1", "--max-file-mb", "2"])


def test_every_photo_gets_the_engines_answer_and_every_broken_file_the_apis_code(
        photo_folder, tmp_path, capsys):
    folder, photos, broken = photo_folder
    out = tmp_path / "out"
    assert run_bulk(str(folder), "--out", str(out), "--batch-size", "3", "--csv", "--parquet") == 0
    clf = shared_classifier(ModelSpec(threads=1))
    labels = list(clf.labels)

    rows = read_rows(out, "predictions")
    assert sorted(r["path"] for r in rows) == sorted(map(str, photos))
    for row in rows:
        path = Path(row["path"])
        expected = clf.predict(path.read_bytes()).to_dict()
        assert row["label"] == expected["label"] == photos[path], path
        assert list(row["probabilities"]) == labels
        assert row["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
        assert row["confidence"] == pytest.approx(expected["confidence"], abs=1e-5)
        assert row["sure"] == expected["sure"]
        assert row["model"] == {"name": clf.recipe.name, "version": clf.recipe.version}

    errors = read_rows(out, "errors")
    assert {r["path"]: r["error"]["code"] for r in errors} == {str(p): code for p, code in broken.items()}
    assert all(r["error"]["message"] for r in errors)
    # The same bytes uploaded to the API get the same code.
    from catdog.api import create_app

    api = create_app().test_client()
    for row in errors:
        path = Path(row["path"])
        if path.is_file() and path.stat().st_size < 1_000_000:
            with path.open("rb") as f:
                answer = api.post("/v1/predict", data={"image": (f, path.name)}).get_json()
            assert answer["error"]["code"] == row["error"]["code"], path.name

    summary = json.loads((out / "summary.json").read_text())
    assert summary["photos"] == len(photos) and summary["errors"] == len(broken)
    assert summary["labels"] == {label: sum(1 for t in photos.values() if t == label) for label in labels}
    assert sum(summary["error_codes"].values()) == len(broken)
    assert summary["photos_per_second"] > 0
    assert not (out / "_counts.jsonl").exists()
    printed = capsys.readouterr().out
    assert f"{len(photos)} photos classified" in printed and f"{len(broken)} errors" in printed

    by_path = {r["path"]: r for r in rows}
    with open(next(out.glob("predictions-*.csv")), newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    for line in table:
        row = by_path[line["path"]]
        assert line["label"] == row["label"]
        assert [float(line[f"p_{label}"]) for label in labels] == [row["probabilities"][lb] for lb in labels]

    import pyarrow.parquet as pq

    parquet = pq.read_table(sorted(out.glob("predictions-*.parquet"))).to_pylist()
    assert sorted(parquet, key=lambda r: r["path"]) == sorted(rows, key=lambda r: r["path"])


def test_globs_and_files_are_taken_as_given_and_outputs_are_not_overwritten(photo_folder, tmp_path, capsys):
    folder, _, _ = photo_folder
    out = tmp_path / "out"
    # A glob matches notes.txt too: named explicitly, it is reported, not skipped.
    assert run_bulk(str(folder / "*.txt"), str(CAT_PHOTOS[0]), "--out", str(out)) == 0
    assert [r["path"] for r in read_rows(out, "predictions")] == [str(CAT_PHOTOS[0])]
    [error] = read_rows(out, "errors")
    assert error["path"] == str(folder / "notes.txt") and error["error"]["code"] == "not_an_image"

    capsys.readouterr()
    assert run_bulk(str(CAT_PHOTOS[1]), "--out", str(out)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run_bulk(str(CAT_PHOTOS[1]), "--out", str(out), "--overwrite") == 0
    assert [r["path"] for r in read_rows(out, "predictions")] == [str(CAT_PHOTOS[1])]


def test_any_model_the_settings_name_is_used(tmp_path, monkeypatch):
    """CATDOG_MODEL picks the model on the workers; rows name it."""
    lite0 = ROOT / "models" / "catdog-lite0"
    monkeypatch.setenv("CATDOG_MODEL", str(lite0))
    out = tmp_path / "out"
    assert run_bulk(str(DOG_PHOTOS[0]), "--out", str(out)) == 0
    [row] = read_rows(out, "predictions")
    clf = shared_classifier(ModelSpec(threads=1))
    assert clf.path.parent == lite0
    assert row["model"]["name"] == clf.recipe.name
    assert row["probabilities"] == pytest.approx(clf.predict(DOG_PHOTOS[0]).to_dict()["probabilities"], abs=1e-5)


def test_an_empty_folder_writes_empty_outputs_and_exits_1(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    out = tmp_path / "out"
    assert run_bulk(str(folder), "--out", str(out)) == 1
    assert read_rows(out, "predictions") == [] and read_rows(out, "errors") == []
    assert "no files found" in capsys.readouterr().err


def test_beam_options_pass_through_two_local_workers_same_rows(photo_folder, tmp_path):
    """Options catdog does not know go to Beam: two worker threads give the same rows as one."""
    folder, photos, broken = photo_folder
    out = tmp_path / "out"
    assert run_bulk(str(folder), "--out", str(out), "--direct_num_workers=2",
                    "--direct_running_mode=multi_threading") == 0
    assert sorted(r["path"] for r in read_rows(out, "predictions")) == sorted(map(str, photos))
    assert sorted(r["path"] for r in read_rows(out, "errors")) == sorted(map(str, broken))


def test_a_three_label_open_world_model_and_its_closed_world_setting(tmp_path):
    """The labels are the model's: a crafted cat/dog/other model (tests/model/test_labels.py)
    answers by colour, and every output (rows, CSV, Parquet, summary) carries all three."""
    pytest.importorskip("onnx", reason="builds the three-label model")
    from tests.model.test_labels import BLUE, GREEN, RED, colour_model, photo

    model = tmp_path / "model"
    colour_model(model, other_label="other", other_threshold=0.5)
    folder = tmp_path / "photos"
    folder.mkdir()
    truth = {}
    for name, colour, label in [("b1", BLUE, "cat"), ("b2", BLUE, "cat"), ("r1", RED, "dog"), ("g1", GREEN, "other"),
                                ("g2", GREEN, "other"), ("g3", GREEN, "other")]:
        path = folder / f"{name}.png"
        photo(colour).save(path)
        truth[str(path)] = label
    (folder / "broken.png").write_bytes(b"")

    out = tmp_path / "open"
    assert run_bulk(str(folder), "--out", str(out), "--model", str(model), "--csv", "--parquet") == 0
    rows = read_rows(out, "predictions")
    assert {r["path"]: r["label"] for r in rows} == truth
    assert all(list(r["probabilities"]) == ["cat", "dog", "other"] for r in rows)
    assert all(r["model"]["name"] == "colours" for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == {"cat": 2, "dog": 1, "other": 3} and summary["error_codes"] == {"empty_file": 1}
    with open(next(out.glob("predictions-*.csv")), newline="") as f:
        table = list(csv.DictReader(f))
    assert {"p_cat", "p_dog", "p_other"} <= set(table[0])
    import pyarrow.parquet as pq

    parquet = pq.read_table(sorted(out.glob("predictions-*.parquet"))).to_pylist()
    assert all(set(r["probabilities"]) == {"cat", "dog", "other"} for r in parquet)

    closed = tmp_path / "closed"
    assert run_bulk(str(folder), "--out", str(closed), "--model", str(model), "--closed-world") == 0
    rows = read_rows(closed, "predictions")
    assert all(list(r["probabilities"]) == ["cat", "dog"] for r in rows)
    assert all(r["label"] == truth[r["path"]] for r in rows if truth[r["path"]] != "other")
    assert "other" not in {r["label"] for r in rows}
    assert set(json.loads((closed / "summary.json").read_text())["labels"]) == {"cat", "dog"}
