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
