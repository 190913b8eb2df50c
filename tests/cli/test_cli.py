"""The ``catdog`` command: predict (table, JSON lines, errors, exit codes), evaluate, info, help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from catdog.cli import main
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("predict", "evaluate", "train", "info"):
        assert command in out


def test_predict_table(capsys, images_dir):
    assert main(["predict", str(images_dir), "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["path", "label", "confidence"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert len(rows) == len(CAT_PHOTOS) + len(DOG_PHOTOS)
    assert all(rows[str(p)] == "cat" for p in CAT_PHOTOS)
    assert all(rows[str(p)] == "dog" for p in DOG_PHOTOS)
    assert all(line.endswith("%") for line in lines[1:])


def test_predict_json_lines_with_a_bad_file(capsys, tmp_path, cat_photo):
    fake = tmp_path / "cat.jpg"
    fake.write_bytes(b"%PDF-1.4 not really a photo")
    code = main(["predict", "--json", "--threads", "1", str(cat_photo), str(fake), str(tmp_path / "missing.jpg")])
    assert code == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["path"] for r in rows] == [str(cat_photo), str(fake), str(tmp_path / "missing.jpg")]
    assert rows[0]["label"] == "cat" and set(rows[0]["probabilities"]) == {"cat", "dog", "other"}
    assert rows[0]["sure"] is True
    assert rows[1]["error"]["code"] == "not_an_image" and "PDF" in rows[1]["error"]["message"]
    assert rows[2]["error"]["code"] == "unreadable_file"


def test_a_folder_of_iphone_photos_is_classified(capsys, tmp_path, cat_photo):
    """HEIC (pillow-heif) and AVIF (Pillow) files are found in folders and decoded like any other."""
    from PIL import Image

    import catdog.model.decode  # noqa: F401  # registers the HEIF opener (and saver) with Pillow

    image = Image.open(cat_photo).convert("RGB")
    image.save(tmp_path / "IMG_0001.HEIC", "HEIF", quality=90)
    image.save(tmp_path / "IMG_0002.avif", "AVIF", quality=90)
    assert main(["predict", "--json", "--threads", "1", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert sorted(Path(r["path"]).name for r in rows) == ["IMG_0001.HEIC", "IMG_0002.avif"]
    assert all(r["label"] == "cat" for r in rows), rows


@pytest.fixture
def api_url(classifier, monkeypatch):
    """The real app around the session's model, served on a loopback port."""
    from catdog.api import create_app
    from catdog.config import Settings
    from tests.api.conftest import serving

    for name in ("CATDOG_API_KEYS", "CATDOG_RATE_LIMIT", "CATDOG_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with serving(create_app(Settings(max_batch=2), classifier=classifier)) as url:
        yield url


@pytest.mark.parametrize("output", [[], ["--json"]], ids=["table", "json"])
def test_predict_through_the_api_prints_what_local_prediction_prints(capsys, tmp_path, images_dir,
                                                                      api_url, output):
    fake = tmp_path / "cat.jpg"
    fake.write_bytes(b"%PDF-1.4 not really a photo")
    paths = [str(images_dir), str(fake), str(tmp_path / "missing.jpg")]
    assert main(["predict", *output, "--threads", "1", *paths]) == 1
    local = capsys.readouterr()
    assert main(["predict", *output, "--api", api_url, *paths]) == 1
    remote = capsys.readouterr()
    assert remote.err == local.err
    if not output:
        assert remote.out == local.out
        return
    local_rows = [json.loads(line) for line in local.out.splitlines()]
    remote_rows = [json.loads(line) for line in remote.out.splitlines()]
    assert [{k: v for k, v in r.items() if k != "probabilities" and k != "confidence"} for r in remote_rows] == \
        [{k: v for k, v in r.items() if k != "probabilities" and k != "confidence"} for r in local_rows]
    for here, there in zip(local_rows, remote_rows):
        if "probabilities" in here:
            assert there["probabilities"] == pytest.approx(here["probabilities"], abs=1e-5)


@pytest.mark.parametrize("flag", [["--model", "x"], ["--threads", "1"], ["--closed-world"]])
def test_predict_through_the_api_refuses_local_model_flags(capsys, cat_photo, flag):
    assert main(["predict", "--api", "http://127.0.0.1:9", *flag, str(cat_photo)]) == 2
    assert "do not apply" in capsys.readouterr().err


def test_predict_through_an_api_that_is_not_there(capsys, cat_photo, free_port):
    assert main(["predict", "--api", f"http://127.0.0.1:{free_port}", str(cat_photo)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catdog: error: The catdog API is not reachable") and err.count("\n") == 1


def test_predict_empty_folder(tmp_path, capsys):
    assert main(["predict", str(tmp_path)]) == 1
    assert "no image files" in capsys.readouterr().err


def test_missing_model_is_a_one_line_error(tmp_path, cat_photo, capsys):
    assert main(["predict", str(cat_photo), "--model", str(tmp_path / "none.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("catdog: error: No model file") and "\n" not in err


@pytest.mark.parametrize("command", ["evaluate", "quantize", "cascade"])
def test_a_data_folder_without_photos_is_a_one_line_error(tmp_path, capsys, command):
    """No traceback for a mistyped or empty data folder: one line saying which layout is expected."""
    from catdog.model.engine import bundled_model_dir

    models = Path(__file__).parents[2] / "models"
    float_model = models / (bundled_model_dir().name + "-fp32")
    args = {"evaluate": ["evaluate", str(tmp_path)],
            "quantize": ["quantize", str(float_model), str(tmp_path), "--out", str(tmp_path / "q")],
            "cascade": ["cascade", str(models / "catdog-lite0"), str(models / "catdog-lite2-v1"), str(tmp_path),
                        "--out", str(tmp_path / "c")]}[command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"catdog: error: No images in {tmp_path}/") and "ImageFolder" in err and "\n" not in err
    assert not (tmp_path / "c").exists()


def test_cascade_refuses_models_with_other_labels_in_one_line(tmp_path, images_dir, capsys):
    """lite0 answers cat or dog; the bundled model's Lite2 also answers other: no cascade, nothing written."""
    models = Path(__file__).parents[2] / "models"
    assert main(["cascade", str(models / "catdog-lite0"), str(models / "catdog-lite2-single"), str(images_dir),
                 "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("catdog: error: The cascade's fast model") and "same labels" in err and "\n" not in err
    assert not (tmp_path / "c").exists()


def test_info_prints_the_recipe(capsys):
    assert main(["info", "--threads", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["labels"] == ["cat", "dog", "other"] and info["other_label"] == "other"


def test_evaluate_writes_a_report(tmp_path, images_dir, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", str(images_dir), "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    assert "accuracy" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 6 and metrics["confusion_matrix"] == [[3, 0, 0], [0, 3, 0], [0, 0, 0]]
    for plot in ("confusion_matrix.png", "reliability.png"):
        assert (out / plot).stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "| accuracy | 100.00%" in report
    assert "| non-pet photos answered other | not measured (no `--others` folder) |" in report
    assert "nan" not in report


def test_evaluate_with_others_reports_the_open_world(tmp_path, images_dir, capsys):
    out = tmp_path / "report"
    others = images_dir.parent / "not-pets"
    assert main(["evaluate", str(images_dir), "--others", str(others), "--out", str(out), "--no-progress",
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    ow = metrics["open_world"]
    assert metrics["n"] == 8 and ow["others"] == 2 and ow["pets"] == 6
    assert f"{ow['others_answered_other']:.2%} of 2 non-pet photos answered other" in printed
    assert sum(metrics["confusion_matrix"][2]) == 2  # the third row: the non-pets
    report = (out / "report.md").read_text()
    assert "non-pet photos answered other" in report and "| **other** |" in report


def test_evaluate_reports_each_source_folder_of_others_on_its_own_line(tmp_path, images_dir, capsys):
    import shutil

    others = tmp_path / "not-pets"
    for source, photo in (("flowers", "tulips.jpg"), ("plants", "sunflower.jpg"), ("flowers", "sunflower.jpg")):
        (others / source).mkdir(parents=True, exist_ok=True)
        shutil.copy(images_dir.parent / "not-pets" / photo, others / source / photo)
    out = tmp_path / "report"
    assert main(["evaluate", str(images_dir), "--others", str(others), "--out", str(out), "--no-progress",
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    sources = json.loads((out / "metrics.json").read_text())["others_by_source"]
    assert {name: row["n"] for name, row in sources.items()} == {"flowers": 2, "plants": 1}
    for name, row in sources.items():
        assert sum(row["answered"].values()) == row["n"]
        assert row["answered_other"] == row["answered"].get("other", 0) / row["n"]
        assert f"{name + '/':<24} {row['answered_other']:7.2%} of {row['n']:>5} answered other" in printed
    assert "| non-pets from `flowers/` answered other |" in (out / "report.md").read_text()


def test_evaluate_a_two_label_model_with_others_counts_them_as_errors(tmp_path, images_dir, capsys):
    out = tmp_path / "report"
    lite0 = images_dir.parents[2] / "models" / "catdog-lite0"
    assert main(["evaluate", str(images_dir), "--others", str(images_dir.parent / "not-pets"), "--model",
                 str(lite0), "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["cat", "dog", "other"]
    assert metrics["open_world"]["others_answered_other"] == 0.0


def test_console_script_runs_as_a_module(cat_photo):
    done = subprocess.run([sys.executable, "-m", "catdog", "predict", "--json", str(cat_photo)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == "cat"
