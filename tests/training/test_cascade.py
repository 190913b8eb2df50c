"""Building a cascade: the fast model's input edit (export.resize_input) and the choice of the
hand-off on held-out photos (training.cascade.choose_handoff)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from catdog.model.preprocess import prepare
from catdog.model.recipe import Recipe
from catdog.training.cascade import answer_metrics, choose_handoff
from tests.cascades import ACCURATE, FAST, NOT_PETS
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS

PHOTOS = CAT_PHOTOS + DOG_PHOTOS + NOT_PETS


# -- resize_input ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resized(tmp_path_factory):
    """lite0 (256 px) made to take lite2-v1's 288 px input, with class maps added first."""
    pytest.importorskip("torch", reason="catdog.training.export needs the train extra")
    import shutil

    from catdog.training.export import enable_explain, resize_input

    folder = tmp_path_factory.mktemp("resize")
    shutil.copy(FAST / "model.onnx", folder / "model.onnx")
    shutil.copy(FAST / "model.json", folder / "model.json")
    enable_explain(folder)
    method = resize_input(folder / "model.onnx", folder / "resized.onnx", 288)
    return folder, method


def session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def pil_resize(batch: np.ndarray, side: int) -> np.ndarray:
    """Pillow's bicubic resize of each channel of normalised (N, 3, S, S) tensors."""
    return np.stack([np.stack([np.asarray(Image.fromarray(c).resize((side, side), Image.Resampling.BICUBIC))
                               for c in image]) for image in batch])


def test_the_resized_graph_takes_the_accurate_input_and_keeps_every_output(resized):
    import onnx

    folder, method = resized
    model = onnx.load(str(folder / "resized.onnx"))
    assert method == "cubic, antialias"  # lite0's operators allow opset 18
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == "image" and dims[1:] == [3, 288, 288]
    assert [o.name for o in model.graph.output] == ["logits", "class_maps"]
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in resize.attribute}
    assert attrs["antialias"] == 1 and attrs["cubic_coeff_a"] == -0.5 and attrs["mode"] == b"cubic"


def test_the_resize_is_pillows_and_the_outputs_match_the_fast_model_at_its_own_size(resized):
    """Tolerances, in logits (lite0's temperature is 0.54, so about twice that in calibrated
    log-odds), measured first on these photos:

    - against lite0 on the same 288 px tensors resized by Pillow (the resize alone): at most
      0.2 (measured 0.09; int8 rounding turns the resize's ~0.005 pixel differences into that);
    - against lite0 on tensors prepared at its own 256 px with the same crop fraction (resize
      288, as 288 of 324): at most 0.5 (measured 0.29: one resample of the photo vs two), and the
      same answer for every photo.
    """
    folder, _ = resized
    fast, accurate = Recipe.read(FAST / "model.json"), Recipe.read(ACCURATE / "model.json")
    big = np.stack([prepare(p, accurate.input) for p in PHOTOS])
    own = np.stack([prepare(p, fast.input.model_copy(update={"resize": 288})) for p in PHOTOS])
    edited = session(folder / "resized.onnx").run(["logits"], {"image": big})[0]
    original = session(FAST / "model.onnx")
    by_pillow = original.run(None, {"image": pil_resize(big, 256)})[0]
    at_own_size = original.run(None, {"image": own})[0]
    assert np.abs(edited - by_pillow).max() <= 0.2
    assert np.abs(edited - at_own_size).max() <= 0.5
    np.testing.assert_array_equal(edited.argmax(axis=1), at_own_size.argmax(axis=1))


def test_resize_input_refuses_a_uint8_model(tmp_path):
    pytest.importorskip("torch", reason="catdog.training.export needs the train extra")
    from catdog.training.export import embed_normalization, resize_input

    embed_normalization(FAST / "model.onnx", tmp_path / "u8.onnx", Recipe.read(FAST / "model.json").input)
    with pytest.raises(ValueError, match=r"float \(N, 3, S, S\) input"):
        resize_input(tmp_path / "u8.onnx", tmp_path / "out.onnx", 288)


# -- choose_handoff ---------------------------------------------------------------------------

def rows(*pairs) -> np.ndarray:
    """Two-label probability rows from P(second label)."""
    p = np.asarray(pairs, dtype=float)
    return np.stack([1 - p, p], axis=1)


def calibrated_pets(n: int = 200, seed: int = 0):
    """A well calibrated accurate model on n photos, and its labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    confidence = rng.uniform(0.9, 1.0, n)
    right = rng.uniform(size=n) < confidence
    p_second = np.where(right == (y == 1), confidence, 1 - confidence)
    return rows(*p_second), y


def test_a_fast_model_as_good_as_the_accurate_one_takes_every_photo():
    slow, y = calibrated_pets()
    handoff, report = choose_handoff(slow, slow, y)
    assert handoff == 0.5 and report["slow_share"] == 0.0
    cascade = dict(report["open_world"]["cascade"])
    assert cascade.pop("losses") == {"right_to_wrong": 0, "wrong_to_right": 0}
    assert cascade == report["open_world"]["accurate"]


def test_a_fast_model_wrong_but_sure_pushes_the_handoff_above_that_confidence():
    y = np.array([0, 1] * 50)
    slow = rows(*np.where(y == 1, 0.97, 0.03))  # right on every photo
    fast_p = np.where(y == 1, 0.97, 0.03)  # as sure as the accurate model...
    fast_p[0] = 0.95  # ...but it calls a cat a dog, 95% sure
    fast_p[1], fast_p[2] = 0.99, 0.01  # and is surer of two photos, rightly
    fast = rows(*fast_p)
    handoff, report = choose_handoff(fast, slow, y)
    assert 0.95 < handoff <= 0.97
    cascade = report["open_world"]["cascade"]
    assert cascade["errors"] == 0 and report["slow_share"] == pytest.approx(1 / 100)  # only that cat
    # One photo of slack lets the mistake through and everything takes the fast path.
    lenient, report = choose_handoff(fast, slow, y, tolerance=1)
    assert lenient == 0.5 and report["open_world"]["cascade"]["errors"] == 1


def test_an_overconfident_fast_model_is_held_back_by_calibration():
    """Same answers as the accurate model, but 99% sure where it is right 90% of the time:
    its summed log loss is 2.9 nats above the accurate model's, over the one nat of slack."""
    y = np.array([1] * 18 + [0] * 2)
    slow = rows(*[0.9] * 20)  # 18 of 20 right at 90%: calibrated
    fast = rows(*[0.99] * 20)
    handoff, report = choose_handoff(fast, slow, y)
    assert answer_metrics(fast, y)["errors"] == answer_metrics(slow, y)["errors"] == 2
    assert handoff > 0.99 and report["slow_share"] == 1.0
    # Half as overconfident (0.3 nat more) is within the slack.
    assert choose_handoff(rows(*[0.945] * 20), slow, y)[0] == 0.5


def test_a_lucky_win_does_not_pay_for_a_sure_mistake():
    """The fast model is right where the accurate one is wrong (70% sure) and wrong where it is
    right (80% sure): the same number of errors, but the hand-off must clear the mistake."""
    y = np.array([0, 1, 0, 1, 0, 1])
    slow = rows(0.1, 0.9, 0.1, 0.9, 0.1, 0.4)   # wrong on the last photo
    fast = rows(0.8, 0.9, 0.1, 0.9, 0.1, 0.7)   # wrong and 80% sure on the first, right on the last
    assert answer_metrics(fast, y)["errors"] == answer_metrics(slow, y)["errors"] == 1
    handoff, report = choose_handoff(fast, slow, y)
    assert handoff > 0.8
    assert report["open_world"]["cascade"]["losses"] == {"right_to_wrong": 0, "wrong_to_right": 0}


def test_open_world_counts_and_the_floor():
    """Labels cat, dog, other: losing a pet to "other" with confidence pushes the hand-off up,
    and the hand-off never goes under the floor (the recipes' other_threshold)."""
    y = np.array([0, 1, 2, 0, 1, 2])
    slow = np.array([[.9, .05, .05], [.05, .9, .05], [.05, .05, .9]] * 2)
    fast = slow.copy()
    fast[3] = [.1, .05, .85]  # a cat answered "other", 85% sure
    handoff, report = choose_handoff(fast, slow, y, other_index=2, other_threshold=0.7, floor=0.7)
    assert handoff > 0.85
    assert report["open_world"]["cascade"]["pets_answered_other"] == 0
    assert report["open_world"]["cascade"]["losses"]["pets_lost_to_other"] == 0
    assert set(report) >= {"open_world", "closed_world"}
    same, report = choose_handoff(slow, slow, y, other_index=2, other_threshold=0.7, floor=0.7)
    assert same == 0.7 and report["closed_world"]["slow_share"] == 0.0


def test_no_handoff_when_the_fast_model_is_certain_and_wrong():
    y = np.array([0, 1])
    handoff, report = choose_handoff(rows(1.0, 1.0), rows(0.1, 0.9), y)
    assert handoff is None and report["open_world"]["cascade"] is None


def test_a_fast_model_trained_on_another_split_is_warned_about(tmp_path, caplog):
    """Its held-out photos may not be the accurate model's: some may be ones it trained on."""
    pytest.importorskip("torch", reason="catdog cascade needs the train extra")
    import json
    import shutil

    from catdog.training.cascade import build_cascade
    from tests.conftest import IMAGES

    fast = tmp_path / "fast"
    shutil.copytree(FAST, fast)
    recipe = json.loads((fast / "model.json").read_text())
    recipe["training"]["seed"] = 1
    (fast / "model.json").write_text(json.dumps(recipe))
    with caplog.at_level("WARNING", logger="catdog.cascade"):
        report = build_cascade(fast, ACCURATE, tmp_path / "out", [IMAGES], holdout=0.5, threads=1)
    assert "another training split" in caplog.text
    assert report["n"] == 4 and Recipe.read(tmp_path / "out" / "model.json").cascade.handoff == report["handoff"]
