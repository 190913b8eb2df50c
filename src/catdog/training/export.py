"""PyTorch model to ONNX (dynamic batch), verified against PyTorch before it is trusted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from catdog.model.recipe import InputSpec


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


def embed_normalization(src: str | Path, dst: str | Path, spec: InputSpec) -> InputSpec:
    """Rewrite ``src`` to take raw uint8 NHWC pixels and normalise them inside the graph.

    Serving then hands ONNX Runtime the resized photo's bytes as they come out of Pillow:
    no per-pixel float work in Python, and a 4x smaller batch to copy. The new first
    nodes compute exactly ``normalize``'s ``pixels * gain + offset`` (in float32), then
    the NCHW transpose the network expects. Returns the recipe's new input spec.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if spec.dtype == "uint8" or spec.layout != "NCHW":
        raise ValueError("embed_normalization takes a float NCHW model")
    model = onnx.load(str(src))
    graph = model.graph
    old = graph.input[0]
    raw = "pixels"
    std = np.asarray(spec.std, np.float32)
    gain = (1.0 / (spec.scale * std)).astype(np.float32).reshape(1, 1, 1, 3)
    offset = (-np.asarray(spec.mean, np.float32) / std).astype(np.float32).reshape(1, 1, 1, 3)
    graph.initializer.extend([numpy_helper.from_array(gain, "pixel_gain"),
                              numpy_helper.from_array(offset, "pixel_offset")])
    prefix = [
        helper.make_node("Cast", [raw], ["pixels_f32"], to=TensorProto.FLOAT, name="pixels_to_float"),
        helper.make_node("Mul", ["pixels_f32", "pixel_gain"], ["pixels_scaled"], name="pixels_scale"),
        helper.make_node("Add", ["pixels_scaled", "pixel_offset"], ["pixels_nhwc"], name="pixels_normalise"),
        helper.make_node("Transpose", ["pixels_nhwc"], [old.name], perm=[0, 3, 1, 2], name="pixels_to_nchw"),
    ]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(prefix + nodes)
    batch = old.type.tensor_type.shape.dim[0]
    new_input = helper.make_tensor_value_info(raw, TensorProto.UINT8, [None, spec.size, spec.size, 3])
    new_input.type.tensor_type.shape.dim[0].CopyFrom(batch)
    graph.input.remove(old)
    graph.input.insert(0, new_input)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return spec.model_copy(update={"dtype": "uint8", "layout": "NHWC"})


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
    w, b = (weights[name] for name in gemm.input[1:3])
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    w = w if trans_b else w.T
    if w.shape[0] != model.get_classifier().out_features:
        model.reset_classifier(w.shape[0])  # a head with as many rows as the model has labels
    with torch.no_grad():
        for (conv, bn), (weight, *bias) in zip(pairs, convs):
            conv.weight.copy_(torch.tensor(weight))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.tensor(bias[0]) if bias else torch.zeros_like(bn.bias))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        fc = model.get_classifier()
        fc.weight.copy_(torch.tensor(w))
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


#: Name of the class-activation-map output :func:`add_feature_output` adds to a model.
CLASS_MAPS_OUTPUT = "class_maps"

#: Nodes allowed between the global pool and the linear head: they reshape or (de)quantise
#: the pooled vector but do not change what it means.
_PASS_THROUGH = {"Flatten", "Reshape", "Squeeze", "QuantizeLinear", "DequantizeLinear", "Identity"}


def add_feature_output(src: str | Path, dst: str | Path, *, output: str = CLASS_MAPS_OUTPUT) -> str:
    """Give a pool-then-linear-head ONNX model a second output: its class activation maps.

    EfficientNet(-Lite) ends in ``F -> GlobalAveragePool -> (Flatten) -> Gemm(W, b)``, so
    ``logits_k = mean_hw(sum_c W[k, c] F[c, h, w]) + b_k``: the map for label ``k`` is the
    same 1x1 projection applied before the pool. This adds that projection as a 1x1 ``Conv``
    over ``F`` whose weight is the head's own ``W`` (reshaped in the graph, so the weights
    are shared, not copied) and exposes the result as ``output`` with shape (N, K, h, w).
    Serving then needs neither gradients nor the ``onnx`` package (ONNX Runtime does not
    expose initializers), and the added work is a K-channel 1x1 convolution on the last
    feature map (microseconds). Works for any K, a float or uint8 input and int8 (QDQ)
    bodies. A head whose rows are merged after it (kinds of "other" read as one logit by
    ``Slice``/``ReduceLogSumExp``/``Concat`` on axis 1, :class:`catdog.training.openworld.MergedOther`)
    has the same merge applied to its maps, so there is one map per answer.
    Returns ``output``; raises ``ValueError`` for a graph without that ending.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    if any(o.name == output for o in graph.output):
        raise ValueError(f"{src} already has an output named {output!r}")
    producer = {out: node for node in graph.node for out in node.output}
    head = producer.get(graph.output[0].name)
    tail: list = []
    if head is not None and head.op_type == "Concat":
        head, tail = _merged_tail(producer, head)
    head_logits = head.output[0] if head is not None else ""
    # A trailing Add after MatMul is the same linear head written in two nodes.
    if head is not None and head.op_type == "Add":
        head = next((producer[i] for i in head.input if i in producer and producer[i].op_type == "MatMul"), head)
    if head is None or head.op_type not in ("Gemm", "MatMul"):
        raise ValueError(f"{src}: the first output is not made by a linear head (Gemm or MatMul)")
    attrs = {a.name: helper.get_attribute_value(a) for a in head.attribute}
    if head.op_type == "Gemm" and attrs.get("transA", 0):
        raise ValueError(f"{src}: a Gemm head with transA is not supported")
    # Walk back from the head's input to the global pool; its input is the feature map F.
    node = producer.get(head.input[0])
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producer.get(node.input[0])
    if node is None or node.op_type not in ("GlobalAveragePool", "ReduceMean"):
        raise ValueError(f"{src}: no global average pool before the head, so no class activation maps")
    features = node.input[0]
    weight = head.input[1]
    # Conv wants (K, C, 1, 1); Gemm(transB=1) holds W as (K, C), MatMul and Gemm(transB=0) as (C, K).
    transposed = head.op_type == "MatMul" or not attrs.get("transB", 0)
    nodes = []
    if transposed:
        nodes.append(helper.make_node("Transpose", [weight], [f"{output}_w_kc"], perm=[1, 0],
                                      name=f"{output}_transpose"))
        weight = f"{output}_w_kc"
    graph.initializer.append(numpy_helper.from_array(np.asarray([0, 0, 1, 1], np.int64), f"{output}_w_shape"))
    maps = f"{output}_rows" if tail else output
    nodes += [
        helper.make_node("Reshape", [weight, f"{output}_w_shape"], [f"{output}_w"], name=f"{output}_reshape"),
        helper.make_node("Conv", [features, f"{output}_w"], [maps], kernel_shape=[1, 1], name=f"{output}_conv"),
    ]
    # The merge after the head, node for node, on the maps: its ops act on axis 1, the labels,
    # whatever the rank. Quantize/dequantize pairs on the logits are left out (their scale is the logits').
    renamed = {head_logits: maps}
    for i, node in enumerate(tail):
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            renamed[node.output[0]] = renamed.get(node.input[0], node.input[0])
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"{output}_merge_{i}"
        copy.input[:] = [renamed.get(name, name) for name in node.input]
        renamed[node.output[0]] = output if node is tail[-1] else f"{output}_merge_{i}_out"
        copy.output[:] = [renamed[node.output[0]]]
        nodes.append(copy)
    graph.node.extend(nodes)
    graph.output.append(helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, ["batch", "labels", "rows", "cols"]))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return output


def _merged_tail(producer: dict, concat) -> tuple:
    """(the linear head, the nodes from its output to ``concat``, in graph order) for a head whose
    rows are merged after it; ``ValueError`` when what feeds ``concat`` is not one linear head."""
    tail, heads, todo = [], [], [concat]
    while todo:
        node = todo.pop()
        if node.op_type in ("Gemm", "MatMul") or (node.op_type == "Add" and any(
                i in producer and producer[i].op_type == "MatMul" for i in node.input)):
            heads.append(node)
            continue
        if node in tail:
            continue
        tail.append(node)
        todo += [producer[i] for i in node.input if i in producer and producer[i].op_type != "Constant"]
    if len({id(h) for h in heads}) != 1 or not all(n.op_type in _MERGE_OPS for n in tail):
        raise ValueError("the first output is not made by one linear head, merged on axis 1")
    order = {id(n): i for i, n in enumerate(producer.values())}
    return heads[0], sorted(tail, key=lambda n: order[id(n)])


_MERGE_OPS = {"Concat", "Slice", "ReduceLogSumExp", "QuantizeLinear", "DequantizeLinear"}


def enable_explain(model_dir: str | Path) -> str:
    """Give a model folder (``model.onnx`` + ``model.json``) its heatmaps, in place.

    Runs :func:`add_feature_output` on its ``model.onnx`` (unless the output is already
    there) and records it in ``model.json`` -> ``explain``. Returns the output's name::

        python -c "from catdog.training.export import enable_explain as e; e('src/catdog/models/catdog-lite2')"
    """
    import onnx

    from catdog.model.recipe import RECIPE_FILENAME, ExplainSpec, Recipe

    folder = Path(model_dir)
    model_path, recipe_path = folder / "model.onnx", folder / RECIPE_FILENAME
    recipe = Recipe.read(recipe_path)
    outputs = [o.name for o in onnx.load(str(model_path), load_external_data=False).graph.output]
    name = CLASS_MAPS_OUTPUT if CLASS_MAPS_OUTPUT in outputs else add_feature_output(model_path, model_path)
    recipe.model_copy(update={"explain": ExplainSpec(output=name)}).write(recipe_path)
    return name


#: Opset whose ``Resize`` has ``antialias`` (ONNX 1.13+; ONNX Runtime runs it on the CPU).
_ANTIALIAS_OPSET = 18


def _default_opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _opset_raise_is_noop(model, target: int) -> bool:
    """True when every default-domain node of ``model`` means the same at opset ``target``
    as at its own opset (no operator it uses got a new version in between)."""
    from onnx import defs

    current = _default_opset(model)
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            before = defs.get_schema(node.op_type, current, "").since_version
            after = defs.get_schema(node.op_type, target, "").since_version
        except defs.SchemaError:
            return False
        if before != after:
            return False
    return True


def resize_input(src: str | Path, dst: str | Path, size: int) -> str:
    """Rewrite a float NCHW model to take (N, 3, ``size``, ``size``) and resize to its own side first.

    A cascade's two models read one tensor per photo (catdog.model.cascade); when the fast
    network was trained at another side, this edit lets it take the accurate model's. The
    new graph starts with an ONNX ``Resize`` to the network's side, its input keeps the
    old name, and every output (``class_maps`` too) is kept.

    The resize is bicubic with Pillow's kernel (``cubic_coeff_a=-0.5``) and, when the model
    can declare opset 18 (its own opset is >= 18, or none of its operators changed up to
    18), ``antialias=1``: Pillow's own resampling, which serving's preprocessing uses.
    Measured on tests/data photos against Pillow resizing the same 288 px tensors (ONNX
    Runtime 1.32, normalised units): antialiased cubic, max |difference| 0.005 (to 256 px),
    0.07 (to 160 px); cubic without antialias, 0.35 and 1.29; antialiased linear, 0.47 and
    0.54. Without opset 18 it falls back to cubic without antialias. Returns the method
    ("cubic, antialias" or "cubic"); the model's temperature must be refitted afterwards.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    first = graph.input[0]
    tensor = first.type.tensor_type
    dims = tensor.shape.dim
    if (tensor.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1].dim_value != 3
            or not dims[2].dim_value or dims[2].dim_value != dims[3].dim_value):
        raise ValueError(f"{src}: resize_input takes a model with a float (N, 3, S, S) input")
    own = dims[2].dim_value
    antialias = _default_opset(model) >= _ANTIALIAS_OPSET or _opset_raise_is_noop(model, _ANTIALIAS_OPSET)
    if antialias and _default_opset(model) < _ANTIALIAS_OPSET:
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = _ANTIALIAS_OPSET
        model.ir_version = max(model.ir_version, 8)  # opset 18 needs IR 8
    name, inner = first.name, f"{first.name}_resized"
    for node in graph.node:  # the network now reads the resized tensor
        node.input[:] = [inner if i == name else i for i in node.input]
    graph.initializer.extend([
        numpy_helper.from_array(np.asarray([0], np.int64), "resize_input_start"),
        numpy_helper.from_array(np.asarray([2], np.int64), "resize_input_stop"),
        numpy_helper.from_array(np.asarray([own, own], np.int64), "resize_input_side"),
    ])
    attributes: dict = {"mode": "cubic", "cubic_coeff_a": -0.5, "coordinate_transformation_mode": "half_pixel"}
    if antialias:
        attributes["antialias"] = 1
    prefix = [  # sizes = (N, 3) of the batch, then the network's side
        helper.make_node("Shape", [name], ["resize_input_shape"], name="resize_input_shape"),
        helper.make_node("Slice", ["resize_input_shape", "resize_input_start", "resize_input_stop"],
                         ["resize_input_nc"], name="resize_input_nc"),
        helper.make_node("Concat", ["resize_input_nc", "resize_input_side"], ["resize_input_sizes"], axis=0,
                         name="resize_input_sizes"),
        helper.make_node("Resize", [name, "", "", "resize_input_sizes"], [inner], name="resize_input", **attributes),
    ]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(prefix + nodes)
    dims[2].dim_value = size
    dims[3].dim_value = size
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return "cubic, antialias" if antialias else "cubic"
