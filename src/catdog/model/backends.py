"""Inference backends, chosen by the model file's suffix through a registry (no if-chains).

A backend turns a float32 batch into the model's raw output. Everything around it
(decoding, preprocessing, calibration, labels) is shared in :mod:`catdog.model.engine`.

A model file without a ``model.json`` beside it is fed by the backend's
``default_recipe(path)`` (optional hook): ONNX assumes the documented generic contract
(docs/models.md), Keras reads the input size from the model itself.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from catdog.model.errors import ExplainUnavailable, ModelError
from catdog.model.recipe import InputSpec, Recipe

#: Keras 3 backends in the order catdog tries them when ``KERAS_BACKEND`` is unset
#: (TensorFlow first because it is Keras' own default).
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
KERAS_INSTALL_HINT = "pip install 'catdog[keras]'"


class Backend(Protocol):
    """What the engine needs from a model runtime, and what the runtime declares it can do.

    Backends may also define ``default_recipe(path) -> Recipe``, used when the model
    file has no ``model.json`` beside it.
    """

    #: The Open Inference Protocol's platform name (v2 model metadata), e.g. ``onnxruntime_onnx``.
    platform: str
    #: Can return a second, named output from the same call (the class activation maps that
    #: ``/v1/explain`` draws); the engine asks this, it never probes for methods.
    explains: bool

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) or (N, H, W, C) float32 (or uint8, per the recipe) in, (N, K) or (N, 1) float32 out."""

    def run_with(self, batch: np.ndarray, output: str) -> tuple[np.ndarray, np.ndarray]:
        """Like ``run``, plus the named output from the same call; ``ExplainUnavailable`` when
        the backend does not explain (``explains`` is False)."""


BACKENDS: dict[str, Callable[[Path, int], Backend]] = {}


def register(*suffixes: str):
    def wrap(factory):
        for suffix in suffixes:
            BACKENDS[suffix] = factory
        return factory

    return wrap


def open_backend(path: Path, threads: int) -> Backend:
    factory = BACKENDS.get(path.suffix.lower())
    if factory is None:
        known = ", ".join(sorted(BACKENDS))
        raise ModelError(f"Cannot serve {path.name}: catdog reads model files ending in {known}.")
    return factory(path, threads)


def default_recipe(backend: Backend, path: Path) -> Recipe:
    """The backend's guess of a recipe for a model without ``model.json``, else the defaults."""
    hook = getattr(backend, "default_recipe", None)
    return hook(path) if hook else Recipe(name=path.stem)


def _layout_and_size(shape: Sequence, name: str, default_size: int) -> tuple[str, int]:
    """("NCHW" | "NHWC", side) from an image-batch shape whose unknown dims are None or names."""
    dims = list(shape)
    if len(dims) != 4:
        raise ModelError(f"{name} takes input of shape {tuple(dims)}; catdog feeds (N, 3, H, W) "
                         "or (N, H, W, 3) image batches.")
    layout, (height, width) = ("NHWC", dims[1:3]) if dims[3] == 3 else ("NCHW", dims[2:4])
    if layout == "NCHW" and dims[1] not in (3, None) and not isinstance(dims[1], str):
        raise ModelError(f"{name} takes {dims[1]} channels; catdog feeds 3-channel RGB batches.")
    sides = {d for d in (height, width) if isinstance(d, int) and d > 0}
    if len(sides) > 1:
        raise ModelError(f"{name} takes {height}x{width} inputs; catdog feeds square images. "
                         "Write a model.json or export a square-input model.")
    return layout, sides.pop() if sides else default_size


def _output_kind(shape: Sequence, name: str, two_way: str) -> str:
    """"sigmoid" for a (N, 1) output, ``two_way`` for (N, 2); anything else cannot be read."""
    last = list(shape)[-1] if len(shape) else None
    if last == 1:
        return "sigmoid"
    if last == 2 or not isinstance(last, int):
        return two_way
    raise ModelError(f"{name} returns shape {tuple(shape)}; without a model.json catdog reads (N, 2) scores "
                     "for [cat, dog] or (N, 1) P(dog): list the model's labels in model.json.")


def _cgroup_cpu_limit(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """Whole CPUs allowed by a cgroup v2 quota (``docker run --cpus``, Kubernetes limits), if any."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, int(int(quota) // int(period)))


def default_threads() -> int:
    """CPUs this process may use: affinity mask, capped by a container's CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_cpu_limit()
    return max(1, min(cpus, quota) if quota else cpus)


@register(".onnx")
class OnnxBackend:
    """ONNX Runtime on the CPU, one session per process, ``threads`` intra-op threads."""

    platform = "onnxruntime_onnx"
    explains = True

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        # Recent ORT builds emit usage telemetry; a server handling user photos should not.
        if hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning pool threads burn the CPU the other workers need (docs/benchmarks.md, workers).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises untyped errors for corrupt files
            raise ModelError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path.name} has {len(inputs)} inputs; catdog models take exactly one image batch.")
        self.input_name = inputs[0].name
        self.input_shape = inputs[0].shape
        self.output_name = self.session.get_outputs()[0].name
        self.output_shape = self.session.get_outputs()[0].shape
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def run_with(self, batch: np.ndarray, output: str) -> tuple[np.ndarray, np.ndarray]:
        if output not in self.output_names:
            raise ExplainUnavailable(f"The model has no output named {output!r} (its outputs are "
                                     f"{', '.join(self.output_names)}); its model.json does not match its file.")
        main, extra = self.session.run([self.output_name, output], {self.input_name: batch})
        return main, extra

    def default_recipe(self, path: Path) -> Recipe:
        """The generic ONNX contract: ImageNet-normalised crops, (N, 2) logits or (N, 1) P(dog).

        The side is read from the graph when it is fixed (224 otherwise), the layout from
        where the 3 channels sit, and the resize keeps the usual 0.875 crop fraction.
        """
        layout, size = _layout_and_size(self.input_shape, path.name, default_size=224)
        dtype = "uint8" if self.session.get_inputs()[0].type == "tensor(uint8)" else "float32"
        return Recipe(
            name=path.stem, architecture="onnx",
            input=InputSpec(size=size, resize=round(size / 0.875), layout=layout, dtype=dtype),
            output=_output_kind(self.output_shape, path.name, two_way="logits"),
        )


def _limit_jax_threads(threads: int) -> None:
    # XLA reads its flags once, when jax is first imported.
    if threads == 1 and "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()


def _limit_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _limit_tensorflow_threads(threads: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised in this process: keep its pools
        pass


_KERAS_THREAD_LIMITS: dict[str, Callable[[int], None]] = {
    "jax": _limit_jax_threads,
    "torch": _limit_torch_threads,
    "tensorflow": _limit_tensorflow_threads,
}


def _keras_backend_name() -> str:
    """``$KERAS_BACKEND``, else the first installed of :data:`KERAS_BACKENDS` (exported for Keras)."""
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        return chosen
    for name in KERAS_BACKENDS:
        if importlib.util.find_spec(name) is not None:
            os.environ["KERAS_BACKEND"] = name  # Keras reads it once, at its first import
            return name
    raise ModelError("Serving a Keras model needs Keras 3 and one of its backends "
                     f"({', '.join(KERAS_BACKENDS)}): {KERAS_INSTALL_HINT}")


@register(".h5", ".keras")
class KerasBackend:
    """A Keras 3 model (the original design's ``cat_dog.h5``), through the optional extra.

    The model is called directly rather than through ``model.predict``, which builds a
    dataset pipeline per call and costs milliseconds a request.
    """

    platform = "keras"
    explains = False

    def __init__(self, path: Path, threads: int):
        if importlib.util.find_spec("keras") is None:
            raise ModelError(f"Serving {path.name} needs Keras: {KERAS_INSTALL_HINT}")
        backend = _keras_backend_name()
        _KERAS_THREAD_LIMITS.get(backend, lambda _threads: None)(threads)
        try:
            import keras
        except ImportError as exc:
            raise ModelError(f"Keras cannot start with the {backend!r} backend ({exc}); "
                             f"{KERAS_INSTALL_HINT} or set KERAS_BACKEND.") from None
        self._keras = keras
        try:
            self.model = keras.models.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001 - h5py/Keras raise many types for bad files
            raise ModelError(f"Keras cannot load {path}: {str(exc).splitlines()[0]}") from None
        self.backend_name = backend

    def run(self, batch: np.ndarray) -> np.ndarray:
        output = self.model(batch, training=False)
        return np.asarray(self._keras.ops.convert_to_numpy(output), dtype=np.float32)

    def run_with(self, batch: np.ndarray, output: str) -> tuple[np.ndarray, np.ndarray]:
        raise ExplainUnavailable("A Keras model cannot show where it looked (no class activation maps).")

    def default_recipe(self, path: Path) -> Recipe:
        """What a Keras model says about itself: its input side, NHWC pixels in [0, 1].

        The whole photo is resized to the model's side with no crop, as the original
        design did; a (N, 1) output is P(dog), a (N, 2) output softmax [cat, dog].
        """
        layout, size = _layout_and_size(self.model.input_shape, path.name, default_size=64)
        return Recipe(
            name=path.stem, architecture=f"keras ({self.backend_name})",
            input=InputSpec(size=size, resize=size, crop=False, layout=layout,
                            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=255.0),
            output=_output_kind(self.model.output_shape, path.name, two_way="probabilities"),
        )
