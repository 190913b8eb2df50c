"""add_feature_output / enable_explain: class activation maps as a second ONNX output."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from catdog.model.engine import Classifier
from catdog.model.recipe import Recipe
from catdog.training.export import CLASS_MAPS_OUTPUT, add_feature_output, enable_explain
from tests.conftest import CAT_PHOTOS, DATA

ROOT_MODELS = DATA.parents[1] / "models"

rng = np.random.default_rng(0)


def tiny_model(path, *, labels: int, head: str, uint8: bool) -> None:
    """uint8/float NHWC or NCHW image -> Conv -> Relu -> GlobalAveragePool -> Flatten -> head."""
    channels = 6
    conv_w = rng.normal(size=(channels, 3, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(conv_w, "conv_w")]
    nodes = []
    image = "image"
    if uint8:
        nodes.append(helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Transpose", ["as_float"], [image], perm=[0, 3, 1, 2]))
        graph_input = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["n", 16, 16, 3])
    else:
        graph_input = helper.make_tensor_value_info(image, TensorProto.FLOAT, ["n", 3, 16, 16])
    nodes += [
        helper.make_node("Conv", [image, "conv_w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
    ]
    bias = rng.normal(size=(labels,)).astype(np.float32)
    inits.append(numpy_helper.from_array(bias, "head_b"))
    if head == "gemm":
        inits.append(numpy_helper.from_array(rng.normal(size=(labels, channels)).astype(np.float32), "head_w"))
        nodes.append(helper.make_node("Gemm", ["flat", "head_w", "head_b"], ["logits"], transB=1))
    else:  # MatMul + Add, weights (C, K)
        inits.append(numpy_helper.from_array(rng.normal(size=(channels, labels)).astype(np.float32), "head_w"))
        nodes += [helper.make_node("MatMul", ["flat", "head_w"], ["mm"]),
                  helper.make_node("Add", ["mm", "head_b"], ["logits"])]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", labels])
    graph = helper.make_graph(nodes, "tiny", [graph_input], [out], inits)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("labels,head,uint8", [(2, "gemm", False), (3, "gemm", True), (4, "matmul", False)])
def test_the_maps_average_to_the_logits_for_any_head(tmp_path, labels, head, uint8):
    src, dst = tmp_path / "tiny.onnx", tmp_path / "tiny-cam.onnx"
    tiny_model(src, labels=labels, head=head, uint8=uint8)
    assert add_feature_output(src, dst) == CLASS_MAPS_OUTPUT
    before, after = ort.InferenceSession(str(src)), ort.InferenceSession(str(dst))
    name = after.get_inputs()[0].name
    x = (rng.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8) if uint8
         else rng.normal(size=(2, 3, 16, 16)).astype(np.float32))
    logits, maps = after.run(None, {name: x})
    np.testing.assert_array_equal(logits, before.run(None, {name: x})[0])  # the answer is untouched
    assert maps.shape == (2, labels, 16, 16)
    # CAM: the pool of each label's map is that label's logit minus its bias.
    bias = logits - maps.mean(axis=(2, 3))
    np.testing.assert_allclose(bias, np.broadcast_to(bias[0], bias.shape), atol=1e-4)


def test_a_model_without_a_pool_and_head_is_refused(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "no-head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="linear head"):
        add_feature_output(tmp_path / "m.onnx", tmp_path / "out.onnx")


def test_enable_explain_on_an_int8_model_folder(tmp_path):
    """catdog-lite0 (int8 QDQ body, float head) gains heatmaps; its answers do not change."""
    folder = tmp_path / "lite0"
    shutil.copytree(ROOT_MODELS / "catdog-lite0", folder)
    before = Classifier.load(folder, threads=1).predict(CAT_PHOTOS[0])
    assert enable_explain(folder) == CLASS_MAPS_OUTPUT
    assert enable_explain(folder) == CLASS_MAPS_OUTPUT  # again: nothing to add
    assert Recipe.read(folder / "model.json").explain.output == CLASS_MAPS_OUTPUT
    clf = Classifier.load(folder, threads=1)
    explanation = clf.explain(CAT_PHOTOS[0])
    assert explanation.prediction == before == clf.predict(CAT_PHOTOS[0])
    side = clf.recipe.input.size // 32  # EfficientNet downsamples by 32
    assert explanation.cam.shape == (side, side) and explanation.cam.max() == pytest.approx(1.0)


def test_a_head_with_kinds_of_other_merged_gets_one_map_per_answer(tmp_path):
    """Kinds of "other" taught as rows and merged after the head (catdog train --other-kinds):
    the maps are merged the same way, so there are as many maps as answers, cat's and dog's
    still average to their logits, and the graph stays servable with its heatmaps."""
    import onnx
    import torch

    pytest.importorskip("timm")
    import timm

    from catdog.training.export import export_onnx
    from catdog.training.openworld import MergedOther, OtherKinds

    torch.manual_seed(0)
    net = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=5).eval()
    src, dst = tmp_path / "merged.onnx", tmp_path / "merged-cam.onnx"
    export_onnx(MergedOther(net, OtherKinds({"animal": ["a"], "person": ["p"]}, 2)), src, image_size=64)
    assert add_feature_output(src, dst) == CLASS_MAPS_OUTPUT
    x = rng.normal(size=(2, 3, 64, 64)).astype(np.float32)
    logits, maps = ort.InferenceSession(str(dst)).run(None, {"image": x})
    assert logits.shape == (2, 3) and maps.shape[:2] == (2, 3)
    bias = onnx.numpy_helper.to_array(next(i for i in onnx.load(str(src)).graph.initializer
                                           if i.name.endswith("classifier.bias")))
    np.testing.assert_allclose(maps[:, :2].mean(axis=(2, 3)) + bias[:2], logits[:, :2], rtol=1e-4, atol=1e-4)
    # "other"'s map is the log-sum-exp, pixel by pixel, of its kinds' maps
    with torch.no_grad():
        features = net.forward_features(torch.from_numpy(x))
        rows = torch.einsum("nchw,kc->nkhw", features, net.classifier.weight)
    np.testing.assert_allclose(maps[:, 2], torch.logsumexp(rows[:, 2:], 1).numpy(), rtol=1e-4, atol=1e-4)
