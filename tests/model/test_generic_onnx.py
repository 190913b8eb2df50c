"""Any ONNX model that follows the documented contract (docs/models.md) serves without model.json."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from catdog.model.engine import Classifier
from tests.conftest import DATA

onnx = pytest.importorskip("onnx")


def test_a_bundled_graph_without_recipe_uses_the_generic_contract(tmp_path, cat_photo):
    path = tmp_path / "other.onnx"
    shutil.copy(DATA.parents[1] / "models" / "catdog-lite0" / "model.onnx", path)
    clf = Classifier.load(path, threads=1)
    spec = clf.recipe.input
    # the side comes from the graph (catdog-lite0 is exported at 256 px), the crop fraction is 0.875
    assert (spec.size, spec.resize, spec.layout, spec.crop) == (256, 293, "NCHW", True)
    assert clf.recipe.output == "logits" and clf.recipe.name == "other"
    assert clf.predict(cat_photo).label in ("cat", "dog")


def sigmoid_onnx(path, side: int) -> None:
    """A (N, 1) P(dog) model: sigmoid of the mean of the red channel minus the blue one."""
    from onnx import TensorProto, helper

    weights = helper.make_tensor("w", TensorProto.FLOAT, [3, 1], [40.0, 0.0, -40.0])
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], ["p_dog"])],
        "sigmoid_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, side, side])],
        [helper.make_tensor_value_info("p_dog", TensorProto.FLOAT, ["N", 1])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_sigmoid_output_is_read_as_p_dog(tmp_path):
    from PIL import Image

    path = tmp_path / "sigmoid.onnx"
    sigmoid_onnx(path, side=96)
    clf = Classifier.load(path, threads=1)
    assert clf.recipe.output == "sigmoid" and clf.recipe.input.size == 96
    red = np.zeros((100, 150, 3), np.uint8)
    red[..., 0] = 230
    blue = np.zeros((100, 150, 3), np.uint8)
    blue[..., 2] = 230
    reddish, bluish = clf.predict_batch([Image.fromarray(red), Image.fromarray(blue)])
    assert reddish.label == "dog" and reddish.confidence > 0.99
    assert bluish.label == "cat" and bluish.confidence > 0.99
