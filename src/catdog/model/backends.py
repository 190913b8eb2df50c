"""Inference backends, chosen by the model file's suffix through a registry (no if-chains).

A backend turns a float32 batch into the model's raw output. Everything around it
(decoding, preprocessing, calibration, labels) is shared in :mod:`catdog.model.engine`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from catdog.model.errors import ModelError


class Backend(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) or (N, H, W, C) float32 in, (N, 2) or (N, 1) float32 out."""


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


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@register(".onnx")
class OnnxBackend:
    """ONNX Runtime on the CPU, one session per process, ``threads`` intra-op threads."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads == 1:
            # A single-threaded worker has no pool to keep spinning; idle workers then cost 0 CPU.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own untyped errors for corrupt files
            raise ModelError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path.name} has {len(inputs)} inputs; catdog models take exactly one image batch.")
        self.input_name = inputs[0].name
        self.input_shape = inputs[0].shape
        self.output_name = self.session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]
