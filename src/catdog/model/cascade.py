"""A model cascade: a fast model answers the photos it is sure of, the accurate model the rest.

The recipe that holds a :class:`~catdog.model.recipe.CascadeSpec` is the accurate model's;
``Classifier.load`` loads the fast model beside it (:func:`load_fast`), checks that the two
can share one input tensor and one decision rule (:func:`check_cascade`), and
``Classifier.probabilities`` routes each batch through :class:`Cascade`. ``catdog cascade``
builds one and chooses the hand-off on held-out photos (``catdog.training.cascade``).

Why ``decide`` needs no cascade of its own: a row the fast model answers has a largest
probability ``m >= handoff``, and ``handoff`` is at least :func:`handoff_floor` of both
recipes. Then both models' rules give the same answer on that row:

- with an ``other_label``: if other is the largest, ``P(other) = m >= handoff >= both
  other_thresholds``, so both say other; if a known label is the largest, ``P(other) <=
  1 - m <= 1 - handoff``, below both other_thresholds (the floor keeps ``handoff > 1 - t``
  for a threshold ``t`` under 0.5; equal only in a 0.5 tie with both thresholds 0.5, which
  both rules break alike), so neither says other and both name the likeliest known label;
- two labels and a ``threshold`` ``t``: if the second is the largest, ``P(second) = m >=
  handoff >= t`` says the second in both; else ``P(second) <= 1 - handoff``, which is below
  ``t`` (the floor keeps ``handoff > 1 - t``; equal only in a 0.5 tie with both thresholds
  0.5), so both say the first;
- otherwise both take the most probable label.

So the accurate recipe's rule applied to the merged probabilities gives, row by row, the
answer of the model that produced the row, and ``decide`` stays a function of the
probabilities alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catdog.model.errors import ModelError
from catdog.model.recipe import RECIPE_FILENAME, InputSpec, Recipe

if TYPE_CHECKING:
    from catdog.model.engine import Classifier


def _above(threshold: float) -> float:
    """The lowest hand-off that keeps a sure row on one side of ``threshold``: at least the
    threshold, and just above ``1 - threshold`` when that is larger."""
    return max(threshold, float(np.nextafter(1.0 - threshold, 1.0)) if threshold < 0.5 else 0.5)


def handoff_floor(*recipes: Recipe) -> float:
    """The lowest hand-off at which every recipe's decision rule agrees on a sure row (see above).

    0.5, each ``other_threshold`` of a recipe with an ``other_label``, and for a rule with two
    columns (two labels, or the known labels of a closed-world model) its ``threshold``; a
    threshold ``t`` below 0.5 needs a hand-off above ``1 - t`` instead.
    """
    floor = 0.5
    for recipe in recipes:
        if recipe.other_label is not None:
            floor = max(floor, _above(recipe.other_threshold))
        if len(recipe.known_labels) == 2:
            floor = max(floor, _above(recipe.threshold))
    return float(floor)


def _differences(a: InputSpec, b: InputSpec) -> str:
    return ", ".join(f"{name} {getattr(a, name)!r} vs {getattr(b, name)!r}"
                     for name in type(a).model_fields if getattr(a, name) != getattr(b, name))


def check_cascade(accurate: Recipe, fast: Recipe, handoff: float | None, fast_name: str) -> None:
    """Refuse, in one line, a fast model that cannot stand in for the accurate one
    (``handoff=None``: check the labels and the input only)."""
    if fast.labels != accurate.labels or fast.other_label != accurate.other_label:
        raise ModelError(
            f"The cascade's fast model {fast_name} answers {list(fast.labels)} (other_label "
            f"{fast.other_label!r}) but {accurate.name} answers {list(accurate.labels)} (other_label "
            f"{accurate.other_label!r}); a cascade needs the same labels in the same order.")
    if fast.input != accurate.input:
        raise ModelError(
            f"The cascade's fast model {fast_name} does not take {accurate.name}'s input "
            f"({_differences(fast.input, accurate.input)}); both models read one tensor per photo: "
            "give the fast model the accurate model's input with "
            "catdog.training.export.resize_input (catdog cascade does).")
    floor = handoff_floor(accurate, fast)
    if handoff is not None and handoff < floor:
        raise ModelError(
            f"The cascade's handoff {handoff} is below {floor:.6g}, the lowest at which both models' rules "
            "agree on a photo the fast model is sure of (at least 0.5 and both models' other_threshold, "
            f"and threshold with two labels); use a handoff >= {floor:.6g}.")


def fast_model_path(folder: Path, fast: str) -> Path:
    """The fast model's file, from a cascade spec's ``fast`` (relative to the model.json's folder);
    refuses a fast model that is itself a cascade (which also stops a cascade naming itself)."""
    from catdog.model.engine import resolve_model_path

    target = folder / fast
    if not target.exists():
        raise ModelError(f"The cascade's fast model {fast!r} is not in {folder}; "
                         f"its {RECIPE_FILENAME} names a model directory or file relative to its folder.")
    path = resolve_model_path(target)
    recipe_path = path.with_name(RECIPE_FILENAME)
    if recipe_path.is_file() and Recipe.read(recipe_path).cascade is not None:
        raise ModelError(f"The cascade's fast model {fast!r} is a cascade itself; "
                         "point it at a single model.")
    return path


class Cascade:
    """The fast half of a cascade and its hand-off, with thread-safe counts of each path.

    ``probabilities(batch, slow)`` runs the fast model on the whole batch (calibrated with
    its own recipe, in the same world, open or closed, as the accurate model), keeps the
    rows whose largest probability is >= ``handoff``, and calls ``slow`` (the accurate model
    alone) once on the other rows. Rows keep their order.
    """

    def __init__(self, fast: Classifier, handoff: float):
        self.fast = fast
        self.handoff = float(handoff)
        self._lock = threading.Lock()
        self._fast_answers = 0
        self._slow_answers = 0

    def sure(self, probs: np.ndarray) -> np.ndarray:
        """Which rows of the fast model's (N, K) probabilities it answers itself: largest >= the hand-off.

        ">=" is False for NaN, so a NaN row (a broken input) goes to the accurate model."""
        probs = np.asarray(probs)
        return probs.max(axis=1, initial=-np.inf) >= self.handoff if len(probs) else np.zeros(0, bool)

    def probabilities(self, batch: np.ndarray, slow: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        probs = np.array(self.fast.probabilities(batch), dtype=np.float64)
        unsure = ~self.sure(probs)
        n_slow = int(unsure.sum())
        if n_slow:
            probs[unsure] = slow(np.asarray(batch)[unsure])
        with self._lock:
            self._fast_answers += len(probs) - n_slow
            self._slow_answers += n_slow
        return probs

    def counts(self) -> tuple[int, int]:
        """(photos answered by the fast model, photos handed to the accurate one) since loading."""
        with self._lock:
            return self._fast_answers, self._slow_answers

    def info(self) -> dict:
        fast, slow = self.counts()
        return {"fast": self.fast.recipe.name, "handoff": self.handoff,
                "fast_answers": fast, "slow_answers": slow}
