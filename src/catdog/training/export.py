"""PyTorch model to ONNX (dynamic batch), verified against PyTorch before it is trusted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def export_onnx(model: nn.Module, path: str | Path, *, image_size: int = 224, opset: int = 17) -> Path:
    """Write ``model`` as ONNX with input ``image`` (N, 3, S, S) and output ``logits`` (N, 2)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        torch.onnx.export(
            model, (dummy,), str(path),
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    return path


def max_abs_difference(model: nn.Module, onnx_path: str | Path, batch: np.ndarray) -> float:
    """Largest |PyTorch - ONNX Runtime| over the logits of ``batch``: the export's proof of fidelity."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(batch)).numpy()
    got = session.run(None, {session.get_inputs()[0].name: batch})[0]
    return float(np.abs(expected - got).max())


def torch_from_onnx(onnx_path: str | Path, arch: str | None = None) -> nn.Module:
    """Rebuild the PyTorch model from an exported catdog ONNX file (eval mode, same weights).

    The exporter folds each BatchNorm into the convolution before it, so every Conv
    node carries (weight, bias). Convolutions appear in the graph in the same order
    as timm's modules; each one gets the folded weight, and its BatchNorm becomes the
    identity plus the folded bias. The result computes the same function with the
    original layer structure: what PyTorch eager serving would run.
    """
    import onnx
    from onnx import numpy_helper

    from catdog.model.recipe import RECIPE_FILENAME, Recipe
    from catdog.training.backbone import BACKBONES, catdog_model

    onnx_path = Path(onnx_path)
    if arch is None:
        recipe_path = onnx_path.with_name(RECIPE_FILENAME)
        written = Recipe.read(recipe_path).architecture if recipe_path.is_file() else None
        arch = written if written in BACKBONES else "efficientnet_lite0"
    graph = onnx.load(str(onnx_path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = [[weights[name] for name in node.input[1:]] for node in graph.node if node.op_type == "Conv"]
    gemm = next(node for node in graph.node if node.op_type == "Gemm")
    model = catdog_model(arch, pretrained=False).eval()
    pairs = [(m, bn) for m, bn in _conv_bn_pairs(model)]
    if len(pairs) != len(convs):
        raise ValueError(f"{onnx_path} has {len(convs)} convolutions; {arch} has {len(pairs)}")
    with torch.no_grad():
        for (conv, bn), (weight, *bias) in zip(pairs, convs):
            conv.weight.copy_(torch.tensor(weight))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.tensor(bias[0]) if bias else torch.zeros_like(bn.bias))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        fc = model.get_classifier()
        w, b = (weights[name] for name in gemm.input[1:3])
        trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
        fc.weight.copy_(torch.tensor(w if trans_b else w.T))
        fc.bias.copy_(torch.tensor(b))
    return model


def _conv_bn_pairs(model: nn.Module):
    """(Conv2d, the BatchNorm right after it) in forward order, for timm's EfficientNet."""
    modules = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    for conv, bn in zip(modules[::2], modules[1::2]):
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
            raise TypeError("unexpected layer order: expected Conv2d followed by BatchNorm2d")
        yield conv, bn


class TorchBackend:
    """A PyTorch module behind the engine's backend interface (for baselines and benchmarks).

    ``Classifier(TorchBackend(torch_from_onnx(path)), recipe)`` serves the shipped weights
    through PyTorch eager with catdog's own decoding, preprocessing and calibration.
    """

    def __init__(self, model: nn.Module, threads: int | None = None):
        self.model = model.eval()
        self.threads = threads

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).numpy()
