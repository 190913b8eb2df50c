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
from catdog.training.data import Sample
from catdog.training.export import embed_normalization, enable_explain


def quantize_model(model_dir: str | Path, out_dir: str | Path, calibration_images: Sequence[Path],
                   *, per_channel: bool = True, float_convs: int = 8, name: str | None = None,
                   uint8_input: bool = False) -> Path:
    """Write ``out_dir/model.onnx`` (int8 weights and activations) and a copy of the recipe.

    The first ``float_convs`` convolutions, the last one and the head stay in float. The
    recipe's name becomes ``name`` (default: the float model's name + ``-int8``). With
    ``uint8_input`` the model takes raw pixels and normalises them in its graph.
    """
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

    # Decoded once: the same inputs fix the activation ranges and measure the int8 shift.
    inputs = np.stack([prepare(path, recipe.input) for path in calibration_images])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(inputs)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {"image": x[None]}

    # The early convolutions see (nearly) raw pixels, whose fine differences int8 rounds
    # away, and the last convolution and head make the decision; all are cheap. Measured
    # on catdog-lite2's held-out split: float stem + head alone flipped 1 of 399 answers
    # of the fp32 model (mean |logit change| 0.25, 9.4 ms); also the first 8 and the last
    # convolution in float, 0 flips (0.17, 10.5 ms; fp32 21.3 ms).
    import onnx

    nodes = onnx.load(str(pre)).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    # (no head at all: nothing excluded here, and correct_head_bias says what is missing)
    first_head = next((i for i, n in enumerate(nodes) if n.op_type in ("Gemm", "MatMul")), len(nodes))
    # The head always stays float: correct_head_bias edits its bias. So does whatever follows
    # it (the merge of kinds of "other", catdog train --other-kinds): the logits are never rounded.
    head = [n.name for n in list(nodes)[first_head:]]
    exclude = convs[:float_convs] + convs[-1:] + head
    quantize_static(str(pre), str(out_dir / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude)
    pre.unlink()
    shift = correct_head_bias(model_dir / "model.onnx", out_dir / "model.onnx", inputs)
    if uint8_input:
        recipe = recipe.model_copy(update={"input": embed_normalization(out_dir / "model.onnx",
                                                                        out_dir / "model.onnx", recipe.input)})
    recipe = recipe.model_copy(update={"name": name or recipe.name.removesuffix("-fp32") + "-int8", "training": recipe.training | {
        "quantized": f"int8 static QDQ (ONNX Runtime), {len(calibration_images)} calibration photos from train"
                     + (f", first {float_convs} and last convolutions" if float_convs else ", last convolution")
                     + " and head kept float"
                     + f"; head bias corrected by {[round(float(v), 4) for v in -shift]}"
                     + ("; takes uint8 pixels and normalises them in its graph" if uint8_input else "")}})
    recipe.write(out_dir / RECIPE_FILENAME)
    enable_explain(out_dir)  # the heatmaps' extra output (catdog explain, /v1/explain)
    return out_dir / "model.onnx"


def correct_head_bias(float_model: Path, int8_model: Path, inputs: np.ndarray) -> np.ndarray:
    """Remove the int8 model's average logit shift, measured against the float model.

    Rounding errors do not cancel out on average: on catdog-lite2 the int8 logits leaned
    towards *cat* by 0.09-0.14 on the training photos. Subtracting the mean shift from the
    (float) head's bias is the empirical bias correction of Nagel et al. (2019). ``inputs``
    are training photos, never validation ones. Returns the shift that was removed.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    def logits(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: inputs[i:i + 32]})[0] for i in range(0, len(inputs), 32)])

    shift = (logits(int8_model) - logits(float_model)).mean(axis=0)
    model = onnx.load(str(int8_model))
    gemm = [n for n in model.graph.node if n.op_type == "Gemm"]
    if len(gemm) != 1 or len(gemm[0].input) < 3:
        raise ValueError(f"{int8_model}: expected one float Gemm head with a bias to correct")
    bias = next(t for t in model.graph.initializer if t.name == gemm[0].input[2])
    rows = numpy_helper.to_array(bias)
    # A head with kinds of "other" (rows merged by log-sum-exp after it) has more rows than answers:
    # moving every kind's row by "other"'s shift moves the merged logit by exactly that shift.
    per_row = np.concatenate([shift[:-1], np.repeat(shift[-1:], len(rows) - len(shift) + 1)])
    corrected = rows - per_row.astype(np.float32)
    bias.CopyFrom(numpy_helper.from_array(corrected.astype(np.float32), bias.name))
    onnx.save(model, str(int8_model))
    return shift


def calibration_sample(samples: Sequence[Sample], per_class: int = 128, seed: int = 0) -> list[Path]:
    """A reproducible, class-balanced sample of training photos to fix activation ranges."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted({s.label for s in samples}):
        paths = [s.path for s in samples if s.label == label]
        chosen += [paths[i] for i in rng.choice(len(paths), size=min(per_class, len(paths)), replace=False)]
    return chosen


def refit_temperature(model_dir: str | Path, holdout: Sequence[Sample], other_cap: float | None = None, *,
                      inputs: tuple[np.ndarray, np.ndarray] | None = None, threads: int | None = None) -> dict:
    """Fit the temperature (and an open-world model's "other" threshold) on the held-out photos
    through ``model_dir``'s own model, and save them.

    Quantisation moves the logits a little; the confidence must be calibrated for the
    model that is served, through the serving preprocessing, not for the float one.
    ``inputs`` are the held-out photos already through ``serving_inputs`` with this model's
    input spec (then ``holdout`` is not decoded again). Returns the calibrated held-out report.
    """
    from catdog.model.engine import Classifier
    from catdog.training.data import serving_inputs
    from catdog.training.metrics import calibrated_report
    from catdog.training.openworld import summarize

    model_dir = Path(model_dir)
    clf = Classifier.load(model_dir, warmup=False, threads=threads)
    recipe = clf.recipe
    x, y = inputs if inputs is not None else serving_inputs(holdout, recipe.input)
    logits = np.concatenate([clf.backend.run(x[i:i + 32]) for i in range(0, len(x), 32)])
    cap = other_cap if other_cap is not None else recipe.training.get("other_cap", 0.003)
    temperature, report = calibrated_report(logits, y, recipe.labels, recipe.other_label, cap, recipe.threshold)
    update: dict = {"temperature": temperature}
    if recipe.other_label:
        update["other_threshold"] = report["other_threshold"]
    held_out = summarize(report)
    recipe.model_copy(update=update | {"metrics": recipe.metrics | {"holdout": held_out}}
                      ).write(model_dir / RECIPE_FILENAME)
    return update | held_out


def quantize_and_recalibrate(model_dir: str | Path, out_dir: str | Path, data: Sequence[Path], *,
                             others: Sequence[Path] = (), holdout_fraction: float = 0.1, seed: int = 0,
                             per_class: int = 128, float_convs: int = 8, name: str | None = None,
                             uint8_input: bool = False) -> dict:
    """The whole int8 recipe: the training split of ``data`` (and ``others``) fixes the activation
    ranges, the held-out split (the same stratified split training used) refits the temperature
    and, for an open-world model, the "other" threshold."""
    from catdog.training.data import find_samples, stratified_split
    from catdog.training.openworld import recorded_split

    if others:  # the split `catdog train --init ... --others ...` used, read from the recipe
        train, holdout = recorded_split(Recipe.read(Path(model_dir) / RECIPE_FILENAME), data, others,
                                        holdout=holdout_fraction, seed=seed)
    else:
        labels = Recipe.read(Path(model_dir) / RECIPE_FILENAME).labels
        train, holdout = stratified_split(find_samples(data, labels), holdout_fraction, seed)
    quantize_model(model_dir, out_dir, calibration_sample(train, per_class, seed), float_convs=float_convs, name=name,
                   uint8_input=uint8_input)
    return refit_temperature(out_dir, holdout)
