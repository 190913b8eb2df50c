"""catdog's ``Classifier`` behind Beam's ``RunInference`` (a custom ``ModelHandler``).

A worker process loads the model once: :func:`shared_classifier` keeps one ``Classifier``
per process and per :class:`ModelSpec`, and both the handler's ``load_model`` (which
``RunInference`` itself calls once per process through ``apache_beam.utils.shared``) and
the decoding step (:class:`catdog.bulk.pipeline.ReadAndPrepare`, which needs the model's
recipe for ``Classifier.prepare``) take it from there. An ONNX Runtime session is
thread-safe, so the SDK harness's threads share it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from catdog.config import Settings
from catdog.model.engine import Classifier

#: Photos per model call: ``catdog predict``'s default, measured to be past the knee of
#: ONNX Runtime's per-call overhead (docs/benchmarks.md).
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class ModelSpec:
    """Which model a worker loads, and how. Pickled to every worker, so only plain values.

    ``None`` fields are resolved on the worker by :class:`catdog.config.Settings`: a Dataflow
    worker then uses its container's ``CATDOG_MODEL`` / ``CATDOG_THREADS`` / engine limits
    (``CATDOG_MAX_PIXELS``, ``CATDOG_MAX_DECODE_MB``, ``CATDOG_OPEN_WORLD``), not the
    launching machine's.
    """

    model: str | None = None
    threads: int | None = None
    max_pixels: int | None = None
    open_world: bool | None = None  # False: never answer the model's "other" label
    max_decode_mb: float | None = None

    def settings(self) -> Settings:
        """This process's settings, with this spec's fields winning where they are set."""
        given = {name: value for name, value in (
            ("model", self.model), ("threads", self.threads), ("max_pixels", self.max_pixels),
            ("open_world", self.open_world), ("max_decode_mb", self.max_decode_mb)) if value is not None}
        return Settings.from_env().model_copy(update=given)

    def resolved(self) -> ModelSpec:
        """The spec with this process's settings filled in where a field is None."""
        settings = self.settings()
        return ModelSpec(model=str(settings.model) if settings.model else None, threads=settings.threads,
                         max_pixels=settings.max_pixels, open_world=settings.open_world,
                         max_decode_mb=settings.max_decode_mb)

    def load(self) -> Classifier:
        """The model, with every engine limit of the settings (one load path: Classifier.from_settings)."""
        return Classifier.from_settings(self.settings())


_classifiers: dict[ModelSpec, Classifier] = {}
_classifiers_lock = threading.Lock()


def shared_classifier(spec: ModelSpec) -> Classifier:
    """The process's one ``Classifier`` for ``spec`` (loaded on first use).

    Keyed by the resolved spec, so a process whose settings change (a test, a notebook)
    does not get the model it loaded before.
    """
    key = spec.resolved()
    with _classifiers_lock:
        if key not in _classifiers:
            _classifiers[key] = key.load()
        return _classifiers[key]


def model_info(clf: Classifier) -> dict[str, str]:
    """The ``model`` field of every row: the same name/version the API returns."""
    return {"name": clf.recipe.name, "version": clf.recipe.version}


class ClassifierHandler(ModelHandler[np.ndarray, dict, Classifier]):
    """Model inputs (``Classifier.prepare`` tensors) in, one prediction row each out.

    A row is ``{"label", "confidence", "probabilities", "model"}``; the pipeline adds the
    path (``KeyedModelHandler`` carries it beside the tensor).

    Batches have a fixed size (``min == max``), the same as ``catdog predict --batch-size``,
    so throughput and memory do not depend on Beam's adaptive batching warming up; a bundle's
    last batch may be smaller.

    ``share_model_across_processes`` stays False: the model is small (4-20 MB on disk) so
    one copy per SDK process costs little, whereas Beam's cross-process sharing would send
    every batch of tensors to the model's process and back through a proxy.
    """

    def __init__(self, spec: ModelSpec, batch_size: int = DEFAULT_BATCH_SIZE):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self.spec = spec
        self.batch_size = batch_size

    def load_model(self) -> Classifier:
        return shared_classifier(self.spec)

    def run_inference(self, batch: Sequence[np.ndarray], model: Classifier,
                      inference_args: dict[str, Any] | None = None) -> Iterable[dict]:
        info = model_info(model)
        probabilities = model.probabilities(np.stack(batch))
        return [{**model.decide(p).to_dict(), "model": info} for p in probabilities]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        # The default pickles the whole batch only to measure it.
        return sum(int(x.nbytes) for x in batch)

    def get_metrics_namespace(self) -> str:
        return "catdog"
