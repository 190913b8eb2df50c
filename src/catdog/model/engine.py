"""The inference engine: load a model once, classify one photo or many.

``Classifier`` is the one object the CLI, the API and the benchmarks share, so
decoding, preprocessing, calibration and the decision rule exist in one place.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Protocol

import numpy as np

from catdog.model.backends import Backend, default_recipe, default_threads, open_backend
from catdog.model.cascade import Cascade, check_cascade, fast_model_path
from catdog.model.decode import (
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_PIXELS,
    BatchBudget,
    ImageSource,
    load_image,
)
from catdog.model.errors import ExplainUnavailable, ImageError, ModelError
from catdog.model.explain import Explanation, normalise
from catdog.model.preprocess import center_crop_box, prepare, preprocess
from catdog.model.recipe import RECIPE_FILENAME, Recipe
from catdog.model.rules import decide_indices, softmax, sure_rows
from catdog.prediction import Prediction

__all__ = ["Classifier", "EngineSettings", "Prediction", "bundled_model_dir", "resolve_model_path"]

DEFAULT_MODEL_NAME = "catdog-lite2"
#: Most inputs given to the model in one run (a longer batch runs in chunks of this size).
MODEL_BATCH = 8
#: The setting that names the model (read by catdog.config.Settings, never here); for messages.
MODEL_ENV = "CATDOG_MODEL"


class EngineSettings(Protocol):
    """What the engine is handed to load a model: :class:`catdog.config.Settings` has these fields.

    The engine never reads the environment or imports ``catdog.config``; every caller (the API,
    the CLI, ``catdog bulk``, ``catdog serve``) reads its settings once and hands them down
    through :meth:`Classifier.from_settings`, so no load site can forget a limit.
    """

    @property
    def model(self) -> str | Path | None: ...

    @property
    def threads(self) -> int | None: ...

    @property
    def max_pixels(self) -> int: ...

    @property
    def max_decode_bytes(self) -> int: ...

    @property
    def open_world(self) -> bool: ...


def bundled_model_dir() -> Path:
    """The default model's folder, shipped inside the package (``catdog/models/catdog-lite2``).

    Found through ``importlib.resources`` so a wheel installed anywhere (site-packages, a
    container's venv, an editable checkout) finds its model without any setting. setuptools
    installs package data as plain files, so the resource is a real directory on disk.
    """
    return Path(str(files("catdog") / "models" / DEFAULT_MODEL_NAME))


def resolve_model_path(model: str | Path | None = None) -> Path:
    """The argument (``settings.model``, a --model flag), else the bundled model; a directory
    means its model file. ``$CATDOG_MODEL`` reaches here through Settings, never read here."""
    chosen = model or bundled_model_dir()
    path = Path(chosen).expanduser()
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.suffix.lower() in (".onnx", ".h5", ".keras"))
        if not candidates:
            raise ModelError(f"No model file (.onnx, .h5, .keras) in {path}.")
        path = candidates[0]
    if not path.is_file():
        hint = "" if model else f" (set {MODEL_ENV} or pass --model)"
        raise ModelError(f"No model file at {path}{hint}.")
    return path


class Classifier:
    """A loaded model plus its recipe. Thread-safe for ``predict*`` (ONNX Runtime sessions are).

    >>> clf = Classifier.load()                # doctest: +SKIP
    >>> clf.predict("tests/data/cat1.jpg")     # doctest: +SKIP
    Prediction(label='cat', confidence=0.998, probabilities={'cat': 0.998, 'dog': 0.002})
    """

    def __init__(self, backend: Backend, recipe: Recipe, *, path: Path | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, load_seconds: float = 0.0, open_world: bool = True,
                 max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES, cascade: Cascade | None = None):
        self.backend = backend
        self.recipe = recipe
        self.cascade = cascade
        self.open_world = open_world
        self.path = path
        self.max_pixels = max_pixels
        self.max_decode_bytes = max_decode_bytes
        self.load_seconds = load_seconds

    @classmethod
    def from_settings(cls, settings: EngineSettings, *, model: str | Path | None = None,
                      threads: int | None = None, open_world: bool | None = None,
                      warmup: bool = True) -> Classifier:
        """Load the model ``settings`` name with every engine limit they set.

        The keyword arguments are command-line flags that win over the settings (None: not given);
        ``open_world=False`` closes the world even when the settings leave it open.
        """
        return cls.load(model or settings.model, threads=threads or settings.threads,
                        max_pixels=settings.max_pixels, max_decode_bytes=settings.max_decode_bytes,
                        open_world=settings.open_world and open_world is not False, warmup=warmup)

    @classmethod
    def load(cls, model: str | Path | None = None, *, threads: int | None = None,
             max_pixels: int = DEFAULT_MAX_PIXELS, max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
             warmup: bool = True, open_world: bool = True) -> Classifier:
        """Load a model file (``.onnx``, or Keras ``.h5``/``.keras``) and warm it up.

        The recipe is the ``model.json`` beside the file, else the backend's default
        for a model without one (see docs/models.md).

        ``threads`` is the number of intra-op threads: leave it unset for a single
        process using the whole machine, set 1 per worker in a multi-worker server.
        ``open_world=False`` turns a model's "other" answer off for users who know every
        photo shows one of the known labels: the other label's probability is dropped and
        the rest renormalised (a model without an other label is unchanged).

        A recipe with a ``cascade`` loads its fast model too (same threads, limits and
        world) and refuses, in one line, a fast model that does not share its labels and
        input or a hand-off below both models' thresholds (``catdog.model.cascade``).
        """
        started = time.perf_counter()
        path = resolve_model_path(model)
        recipe_path = path.with_name(RECIPE_FILENAME)
        threads = threads or default_threads()
        backend = open_backend(path, threads)
        recipe = Recipe.read(recipe_path) if recipe_path.is_file() else default_recipe(backend, path)
        cascade = None
        if recipe.cascade is not None:
            fast_path = fast_model_path(path.parent, recipe.cascade.fast)
            fast = cls.load(fast_path, threads=threads, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes,
                            warmup=False, open_world=open_world)
            check_cascade(recipe, fast.recipe, recipe.cascade.handoff, repr(recipe.cascade.fast))
            cascade = Cascade(fast, recipe.cascade.handoff)
        clf = cls(backend, recipe, path=path, max_pixels=max_pixels, open_world=open_world,
                  max_decode_bytes=max_decode_bytes, cascade=cascade)
        if warmup:
            clf.warmup()
        clf.load_seconds = time.perf_counter() - started
        return clf

    # -- the pipeline, one step per method -------------------------------------------------

    def prepare(self, source: ImageSource) -> np.ndarray:
        """Decode and preprocess one photo into a model input (no batch axis)."""
        return prepare(source, self.recipe.input, max_pixels=self.max_pixels,
                       max_decode_bytes=self.max_decode_bytes)

    @property
    def platform(self) -> str:
        """The runtime serving the model, as the Open Inference Protocol names it (its backend's)."""
        return self.backend.platform

    @property
    def labels(self) -> tuple[str, ...]:
        """The answers this classifier gives, in the order of its probability columns."""
        return self.recipe.labels if self.open_world else self.recipe.known_labels

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, ...) model inputs to calibrated (N, K) probabilities, columns in ``self.labels`` order.

        A cascade answers the rows its fast model is sure of from that model and runs this
        model on the rest only (:class:`~catdog.model.cascade.Cascade`).
        """
        if self.cascade is not None:
            return self.cascade.probabilities(batch, self.model_probabilities)
        return self.model_probabilities(batch)

    def model_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Like :meth:`probabilities`, from this model alone (a cascade's accurate model)."""
        raw = self.backend.run(np.ascontiguousarray(batch, dtype=self.recipe.input.dtype))
        return self._probabilities(raw, len(batch))

    def _probabilities(self, raw: np.ndarray, n: int) -> np.ndarray:
        probs = self._calibrated(np.asarray(raw, dtype=np.float64), n)
        if self.open_world or not self.recipe.other_label:
            return probs
        # Closed world: the user knows every photo shows one of the known labels.
        keep = [i for i, label in enumerate(self.recipe.labels) if label != self.recipe.other_label]
        kept = probs[:, keep]
        return kept / np.clip(kept.sum(axis=1, keepdims=True), 1e-12, None)

    def _calibrated(self, raw: np.ndarray, n: int) -> np.ndarray:
        """Raw model output to temperature-scaled probabilities in recipe label order."""
        kind, temperature, k = self.recipe.output, self.recipe.temperature, len(self.recipe.labels)
        if kind == "sigmoid" or raw.ndim == 1 or raw.shape[-1] == 1:
            if k != 2:
                raise ModelError(f"The model returned one score per photo but its recipe lists {k} labels.")
            p = raw.reshape(n)
            if kind == "logits":
                p = 1.0 / (1.0 + np.exp(-p / temperature))
            elif temperature != 1.0:
                logit = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))
                p = 1.0 / (1.0 + np.exp(-logit / temperature))
            return np.stack([1.0 - p, p], axis=1)
        if raw.ndim != 2 or raw.shape[1] != k:
            raise ModelError(f"The model returned shape {raw.shape} but its recipe lists {k} labels "
                             f"{list(self.recipe.labels)}; fix the labels in {RECIPE_FILENAME}.")
        if kind == "probabilities":
            if temperature == 1.0:
                return raw
            raw = np.log(np.clip(raw, 1e-12, 1.0))
        return softmax(raw / temperature)

    def decide(self, probs: np.ndarray) -> Prediction:
        """The recipe's decision rule (see :class:`~catdog.model.recipe.Recipe`) for one photo."""
        labels, r = self.labels, self.recipe
        other = labels.index(r.other_label) if r.other_label in labels else None
        row = np.asarray(probs)[None]
        index = decide_indices(row, threshold=r.threshold, other=other, other_threshold=r.other_threshold)
        sure = bool(sure_rows(row, index, r.sure_level)[0])
        values = {label: float(p) for label, p in zip(labels, probs)}
        label = labels[int(index[0])]
        return Prediction(label, values[label], values, sure)

    # -- public conveniences ---------------------------------------------------------------

    def predict(self, source: ImageSource) -> Prediction:
        """Classify one photo (bytes, path or PIL image). Raises ImageError on bad input."""
        return self.decide(self.probabilities(self.prepare(source)[None])[0])

    def explain(self, source: ImageSource) -> Explanation:
        """Classify one photo and say where the model looked for its answer.

        One model call returns the logits and the class activation maps; the map drawn is
        the answer's (for an "other" answer, what made the model say other). Raises
        ``ExplainUnavailable`` for a model without that output (Keras, a generic ONNX file),
        and ImageError on bad input. A cascade explains with the model that answers the
        photo, as :meth:`predict` would (its fast model when that is sure and has class maps,
        else its accurate model, this model's file), and does not count the photo in its paths.
        """
        if self.recipe.explain is None or not self.backend.explains:
            raise self._no_class_maps()
        image = load_image(source, max_pixels=self.max_pixels, min_side=self.recipe.input.resize,
                           max_decode_bytes=self.max_decode_bytes)
        batch = preprocess(image, self.recipe.input)[None]
        # As in probabilities(): a cascade's fast model answers the photos it is sure of.
        fast = self.cascade.fast._explained(batch) if self.cascade is not None else None
        if fast is not None and self.cascade is not None and not self.cascade.sure(fast[0][None])[0]:
            fast = None
        answered = fast if fast is not None else self._explained(batch)
        if answered is None:
            raise self._no_class_maps()
        probs, maps = answered
        prediction = self.decide(probs)
        # The answer's evidence over the alternatives: its map minus the mean of the others'.
        # With a softmax head that is what decides (its spatial mean is the logit margin, bias
        # aside); a label's own map can be negative everywhere when all labels' are, as happens
        # with three labels, and would then show nothing.
        k = self.recipe.labels.index(prediction.label)
        cam = maps[0, k] - np.delete(maps[0], k, axis=0).mean(axis=0)
        width, height = image.size
        box = center_crop_box(width, height, self.recipe.input) if self.recipe.input.crop else (0, 0, width, height)
        return Explanation(prediction, prediction.label, normalise(cam), box, (width, height))

    def _explained(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """This model alone on one prepared photo: (calibrated probabilities, class maps), or
        None when it has no class-map output."""
        spec = self.recipe.explain
        if spec is None or not self.backend.explains:
            return None
        raw, maps = self.backend.run_with(np.ascontiguousarray(batch, dtype=self.recipe.input.dtype), spec.output)
        maps = np.asarray(maps)
        if maps.ndim != 4 or maps.shape[1] != len(self.recipe.labels):
            raise ExplainUnavailable(f"The model's {spec.output!r} output has shape {maps.shape}, not "
                                     f"(1, {len(self.recipe.labels)}, h, w) for its labels.")
        return self._probabilities(raw, 1)[0], maps

    def _no_class_maps(self) -> ExplainUnavailable:
        return ExplainUnavailable(
            f"The model {self.recipe.name!r} cannot show where it looked: it has no class activation "
            "map output. Add one to an ONNX model that ends in global pooling and a linear head with "
            "catdog.training.export.add_feature_output (see docs/models.md); Keras models cannot.")

    def predict_batch(self, sources: Sequence[ImageSource], *, return_errors: bool = False,
                      budget: BatchBudget | None = None) -> list[Prediction | ImageError]:
        """Classify several photos in one model call.

        With ``return_errors=True`` a bad photo yields its ``ImageError`` in its slot and
        the others are still classified; otherwise the first bad photo raises. A ``budget``
        (the API's, per request) bounds the decoding memory and time of the whole batch:
        files past it get a per-file error instead of being decoded.
        """
        results: list[Prediction | ImageError | None] = [None] * len(sources)
        tensors, slots = [], []
        for i, source in enumerate(sources):
            try:
                if budget is not None:
                    budget.charge(source, min_side=self.recipe.input.resize, max_pixels=self.max_pixels,
                                  max_decode_bytes=self.max_decode_bytes)
                tensors.append(self.prepare(source))
                slots.append(i)
            except ImageError as exc:
                if not return_errors:
                    raise
                results[i] = exc
        # The model runs MODEL_BATCH inputs at a time: ONNX Runtime's arena keeps the peak of the
        # largest batch it ever ran (32 photos: ~+470 MB per process, 8: ~+100 MB; see
        # docs/reliability.md), and per photo a batch of 8 is as fast on a CPU.
        for start in range(0, len(tensors), MODEL_BATCH):
            chunk = np.stack(tensors[start:start + MODEL_BATCH])
            for slot, probs in zip(slots[start:start + MODEL_BATCH], self.probabilities(chunk)):
                results[slot] = self.decide(probs)
        return results  # type: ignore[return-value]

    def predict_many(self, sources: Iterable[ImageSource], *, batch_size: int = 16):
        """Yield ``(source, Prediction | ImageError)`` for a long stream, ``batch_size`` at a time."""
        chunk: list[ImageSource] = []
        for source in sources:
            chunk.append(source)
            if len(chunk) == batch_size:
                yield from zip(chunk, self.predict_batch(chunk, return_errors=True))
                chunk = []
        if chunk:
            yield from zip(chunk, self.predict_batch(chunk, return_errors=True))

    def warmup(self) -> None:
        """Run one dummy batch so the first real request does not pay for ORT's lazy setup
        (through both models of a cascade, without counting it)."""
        spec = self.recipe.input
        shape = (1, 3, spec.size, spec.size) if spec.layout == "NCHW" else (1, spec.size, spec.size, 3)
        self.model_probabilities(np.zeros(shape, dtype=spec.dtype))
        if self.cascade is not None:
            self.cascade.fast.warmup()

    def info(self) -> dict:
        """What /v1/model and ``catdog info`` show about the loaded model."""
        r = self.recipe
        return {
            "name": r.name,
            "version": r.version,
            "architecture": r.architecture,
            "labels": list(self.labels),
            "other_label": r.other_label if self.open_world else None,
            "input_size": r.input.size,
            "threshold": r.threshold,
            "other_threshold": r.other_threshold if r.other_label and self.open_world else None,
            "temperature": r.temperature,
            "explain": r.explain is not None and self.backend.explains,
            "metrics": r.metrics,
            "cascade": self.cascade.info() if self.cascade is not None else None,
            "file": self.path.name if self.path else None,
            "load_seconds": round(self.load_seconds, 3),
        }
