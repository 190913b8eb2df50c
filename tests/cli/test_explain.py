"""``catdog explain``: overlay PNGs the photo's shape, JSON maps, errors and exit codes."""

from __future__ import annotations

import json

from PIL import Image

from catdog.cli import main
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, encode
from tests.model.test_explain import without_class_maps


def test_overlays_for_a_folder_keep_each_photos_shape(capsys, tmp_path, images_dir, classifier):
    out = tmp_path / "overlays"
    assert main(["explain", str(images_dir), "--out", str(out), "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    photos = CAT_PHOTOS + DOG_PHOTOS
    assert len(lines) == len(photos)
    for photo in photos:
        overlay = Image.open(out / f"{photo.stem}.explain.png")
        assert overlay.format == "PNG" and overlay.size == Image.open(photo).size
        line = next(line for line in lines if line.startswith(str(photo)))
        assert line.split()[1] == photo.parent.name and line.endswith(f"{photo.stem}.explain.png")


def test_one_photo_to_a_file_name_and_json(capsys, tmp_path, cat_photo, classifier):
    target = tmp_path / "where.png"
    assert main(["explain", str(cat_photo), "--out", str(target), "--json", "--threads", "1"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["path"] == str(cat_photo) and row["overlay"] == str(target)
    assert row["label"] == "cat" and set(row["probabilities"]) == set(classifier.labels)
    heatmap = row["heatmap"]
    assert heatmap["label"] == "cat" and len(heatmap["values"]) == heatmap["rows"]
    assert Image.open(target).size == Image.open(cat_photo).size


def test_an_exif_rotated_photo_gets_an_upright_overlay(tmp_path, cat_photo):
    photo = Image.open(cat_photo).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = tmp_path / "turned.jpg"
    turned.write_bytes(encode(photo, "JPEG", exif=exif.tobytes()))
    assert main(["explain", str(turned), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    assert Image.open(tmp_path / "out" / "turned.explain.png").size == (photo.height, photo.width)


def test_bad_files_are_reported_and_the_rest_explained(capsys, tmp_path, dog_photo):
    fake = tmp_path / "dog.jpg"
    fake.write_bytes(b"%PDF-1.4 not really a photo")
    code = main(["explain", "--json", "--threads", "1", str(dog_photo), str(fake)])
    assert code == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert rows[0]["label"] == "dog" and "overlay" not in rows[0]
    assert rows[1]["error"]["code"] == "not_an_image"


def test_needs_an_output(capsys, cat_photo):
    assert main(["explain", str(cat_photo)]) == 2
    assert "--out" in capsys.readouterr().err


def test_several_photos_cannot_share_one_file(capsys, tmp_path, cat_photo, dog_photo):
    assert main(["explain", str(cat_photo), str(dog_photo), "--out", str(tmp_path / "a.png")]) == 2
    assert "folder" in capsys.readouterr().err


def test_a_model_without_class_maps_is_a_clear_error(capsys, tmp_path, cat_photo, classifier):
    model = without_class_maps(tmp_path / "m", classifier)
    assert main(["explain", str(cat_photo), "--json", "--model", str(model), "--threads", "1"]) == 2
    assert "cannot show where it looked" in capsys.readouterr().err
