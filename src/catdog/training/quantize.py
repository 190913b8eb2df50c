"""Post-training int8 quantisation of an exported model (ONNX Runtime static QDQ).

Static quantisation needs calibration images to fix each activation's range; it
uses photos from the training folders (never the validation set), preprocessed by
the serving path. Whether the result ships is decided by measurement: it must keep
val accuracy within 0.3 points of fp32 and be faster (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from catdog.model.preprocess import prepare
from catdog.model.recipe import RECIPE_FILENAME, Recipe


def quantize_model(model_dir: str | Path, out_dir: str | Path, calibration_images: Sequence[Path],
                   *, per_channel: bool = True, keep_ends_float: bool = True) -> Path:
    """Write ``out_dir/model.onnx`` (int8 weights and activations) and a copy of the recipe."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = Recipe.read(model_dir / RECIPE_FILENAME)
    pre = out_dir / "model.pre.onnx"
    quant_pre_process(str(model_dir / "model.onnx"), str(pre))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration_images)

        def get_next(self):
            path = next(self.items, None)
            return None if path is None else {"image": prepare(path, recipe.input)[None]}

    # The stem sees raw pixels and the head makes the decision: both are cheap, and keeping
    # them in float is the usual way to hold accuracy.
    import onnx

    nodes = onnx.load(str(pre)).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    head = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    exclude = (convs[:1] + head) if keep_ends_float else []
    quantize_static(str(pre), str(out_dir / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude)
    pre.unlink()
    recipe = recipe.model_copy(update={"name": recipe.name + "-int8", "training": recipe.training | {"quantized": "int8 static QDQ"}})
    recipe.write(out_dir / RECIPE_FILENAME)
    return out_dir / "model.onnx"


def calibration_sample(roots: Sequence[Path], per_class: int = 100, seed: int = 0) -> list[Path]:
    """A reproducible, class-balanced sample of training photos for calibration."""
    from catdog.training.data import find_samples

    samples = find_samples(roots)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in (0, 1):
        paths = [s.path for s in samples if s.label == label]
        chosen += [paths[i] for i in rng.choice(len(paths), size=min(per_class, len(paths)), replace=False)]
    return chosen
