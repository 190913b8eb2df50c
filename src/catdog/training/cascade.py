"""Build a cascade (``catdog cascade``): a fast model in front of an accurate one, and the
hand-off between them chosen on held-out photos.

The serving side is :mod:`catdog.model.cascade`: the fast model answers a photo when its
largest calibrated probability is >= ``handoff``, the accurate model answers the rest.
:func:`choose_handoff` picks the lowest hand-off (most photos on the fast path) at which
the cascade is no worse than the accurate model alone on the held-out split, and
:func:`build_cascade` does the whole job: copy, input edit, recalibration, choice, recipe.

What "no worse" means (``tolerance``, in photos, default 0). On the held-out photos, the
cascade answers with the accurate recipe's rule, as the server does, and must have

- at most ``tolerance`` photos the accurate model answers right and the cascade wrong;
- (open-world models) at most ``tolerance`` real pets the accurate model keeps and the
  cascade answers "other", and at most ``tolerance`` non-pets the accurate model answers
  "other" and the cascade does not;
- a summed log loss at most one nat (``LOG_LOSS_SLACK``) above the accurate model's, plus
  ln 100 nats per photo of ``tolerance`` (each tolerated photo may be a wrong answer given
  at up to 99%).

Why photo by photo and not the net numbers (errors, shares of "other" answers): a held-out
split is a few hundred photos with a handful of errors, too few to tell a 98% model from a
99% one. On catdog-lite2-v1's 399 held-out photos, lite0 (98.2% on val, against 99.0%)
makes 2 errors and lite2-v1 3, so the net rule sends every photo down the fast path and
serves lite0. Counting only the photos the cascade loses keeps the fast model's lucky
wins from paying for its confident mistakes: there the hand-off lands just above the one
photo lite0 gets wrong at 98.6% and lite2-v1 right, and 5% of the photos take the slow
path. The net numbers can only be better (each is the accurate model's plus at most
``tolerance``), and the report shows them.

Why calibration is judged by the log loss and not by the binned ECE. The log loss is a
proper scoring rule: a fast model sure where it should hedge pays for every such photo
(one wrong answer at 99% costs 4.6 nats), so an overconfident fast path cannot pass. The
binned ECE (10 bins) on a few hundred photos moves by several thousandths whenever one
photo changes bin, so a rule on it keeps photos on the slow path for noise (measured in
docs/models.md, "Cascade"). One nat of slack (one right answer dropping from certain to
37%) keeps differences in the last digits of near-certain answers from deciding the
hand-off; the ECE is still reported.

A model with an other label is checked in the closed world too (other dropped, the pets
only, the hand-off applied to the renormalised probabilities, as the server does with
``CATDOG_OPEN_WORLD=false``): one hand-off serves both.

The hand-off is the lowest candidate such that it *and every higher candidate* pass (the
counts only grow as the hand-off falls; the log loss need not, and a threshold that
passes only between failing ones would be the luck of the sample). Candidates are the fast
model's distinct held-out confidences at or above
:func:`catdog.model.cascade.handoff_floor` (the floor itself included), plus one just
above the largest (every held-out photo on the slow path, which always passes when that is
below 1).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from catdog.model.cascade import check_cascade, handoff_floor
from catdog.model.recipe import RECIPE_FILENAME, CascadeSpec, Recipe
from catdog.model.rules import decide_indices
from catdog.training.metrics import expected_calibration_error, log_loss

log = logging.getLogger("catdog.cascade")

#: The folder of a cascade model that holds its fast model (``cascade.fast`` in model.json).
FAST_FOLDER = "fast"


def answer_metrics(probs: np.ndarray, y: np.ndarray, *, other: int | None = None, threshold: float = 0.5,
                   other_threshold: float = 0.5) -> dict:
    """Errors, accuracy, ECE and (with ``other``) the open-world counts of the answers the
    recipe's rule gives for ``probs`` (what :func:`choose_handoff` compares)."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y, dtype=int)
    pred = decide_indices(probs, threshold=threshold, other=other, other_threshold=other_threshold)
    n = len(y)
    out = {"n": n, "errors": int((pred != y).sum()), "accuracy": float((pred == y).mean()) if n else float("nan"),
           "ece": expected_calibration_error(y, probs, pred) if n else 0.0,
           "log_loss_sum": log_loss(y, probs) * n if n else 0.0}
    if other is not None:
        pets, others = y != other, y == other
        out |= {"pets_answered_other": int((pred[pets] == other).sum()),
                "others_not_answered_other": int((pred[others] != other).sum()),
                "pets": int(pets.sum()), "others": int(others.sum())}
    return out


#: Nats of summed held-out log loss the cascade may add to the accurate model's (module doc),
#: and what each photo of tolerance adds to that: a wrong answer given at 99%.
LOG_LOSS_SLACK = 1.0
LOG_LOSS_PER_TOLERATED_PHOTO = float(np.log(100))


def _losses(pred: np.ndarray, accurate: np.ndarray, y: np.ndarray, other: int | None) -> dict:
    """The photos the cascade's answers ``pred`` lose against the accurate model's ``accurate``."""
    out = {"right_to_wrong": int(((pred != y) & (accurate == y)).sum()),
           "wrong_to_right": int(((pred == y) & (accurate != y)).sum())}
    if other is not None:
        pets, others = y != other, y == other
        out |= {"pets_lost_to_other": int((pets & (pred == other) & (accurate != other)).sum()),
                "others_missed": int((others & (pred != other) & (accurate == other)).sum())}
    return out


def _no_worse(cascade: dict, accurate: dict, tolerance: float) -> bool:
    lost = cascade["losses"]
    counts_ok = all(lost[k] <= tolerance for k in ("right_to_wrong", "pets_lost_to_other", "others_missed")
                    if k in lost)
    slack = LOG_LOSS_SLACK + tolerance * LOG_LOSS_PER_TOLERATED_PHOTO
    return counts_ok and cascade["log_loss_sum"] <= accurate["log_loss_sum"] + slack


def _closed(probs: np.ndarray, other: int) -> np.ndarray:
    """The closed-world probabilities the engine serves: other dropped, the rest renormalised."""
    kept = np.delete(probs, other, axis=1)
    return kept / np.clip(kept.sum(axis=1, keepdims=True), 1e-12, None)


class _View:
    """One world's held-out arrays and the accurate model's own metrics on them."""

    def __init__(self, fast: np.ndarray, slow: np.ndarray, y: np.ndarray, rule: dict):
        self.fast, self.slow, self.y, self.rule = fast, slow, y, rule
        self.sure = fast.max(axis=1) if len(fast) else np.zeros(0)
        self.accurate = answer_metrics(slow, y, **rule)
        self.accurate_pred = decide_indices(slow, **rule)

    def cascade(self, handoff: float) -> tuple[dict, float]:
        unsure = ~(self.sure >= handoff)
        merged = np.where(unsure[:, None], self.slow, self.fast)
        pred = decide_indices(merged, **self.rule)
        metrics = answer_metrics(merged, self.y, **self.rule)
        metrics["losses"] = _losses(pred, self.accurate_pred, self.y, self.rule.get("other"))
        return metrics, float(unsure.mean()) if len(unsure) else 0.0


def choose_handoff(fast_probs: np.ndarray, slow_probs: np.ndarray, y: np.ndarray, other_index: int | None = None,
                   tolerance: float = 0, *, threshold: float = 0.5, other_threshold: float = 0.5,
                   floor: float = 0.5) -> tuple[float | None, dict]:
    """The lowest hand-off at which the cascade is no worse than the accurate model (module doc).

    ``fast_probs`` and ``slow_probs`` are the two models' calibrated (N, K) held-out
    probabilities in label order, open world; ``threshold`` and ``other_threshold`` the
    accurate recipe's rule (which answers every photo of the cascade); ``floor`` the
    lowest hand-off the rule allows (``catdog.model.cascade.handoff_floor`` of both
    recipes). Returns ``(handoff, report)``; the handoff is None when no candidate below 1
    passes (the fast model is sure, to the last bit, of a photo it gets wrong).
    """
    fast, slow = np.asarray(fast_probs, dtype=np.float64), np.asarray(slow_probs, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    if fast.shape != slow.shape or fast.ndim != 2 or len(y) != len(fast):
        raise ValueError(f"fast {fast.shape}, slow {slow.shape} and y ({len(y)},) must describe the same photos")
    views = {"open_world": _View(fast, slow, y, {"other": other_index, "threshold": threshold,
                                                 "other_threshold": other_threshold})}
    if other_index is not None:
        pets = y != other_index
        closed_y = np.where(y[pets] > other_index, y[pets] - 1, y[pets])
        views["closed_world"] = _View(_closed(fast[pets], other_index), _closed(slow[pets], other_index), closed_y,
                                      {"threshold": threshold})
    sure = np.concatenate([v.sure for v in views.values()])
    candidates = np.unique(np.r_[floor, sure[sure > floor]])
    candidates = np.r_[candidates, np.nextafter(candidates.max(), 1.0)]
    candidates = candidates[candidates < 1.0]  # a recipe's hand-off is below 1
    chosen = None
    for handoff in candidates[::-1]:  # from "nothing on the fast path" down
        if not all(_no_worse(v.cascade(handoff)[0], v.accurate, tolerance) for v in views.values()):
            break
        chosen = float(handoff)
    report: dict = {"handoff": chosen, "floor": float(floor), "tolerance": tolerance, "n": len(y)}
    for name, view in views.items():
        cascade, slow_share = view.cascade(chosen) if chosen is not None else (None, 1.0)
        report[name] = {"slow_share": slow_share, "cascade": cascade, "accurate": view.accurate,
                        "fast": answer_metrics(view.fast, view.y, **view.rule)}
    report["slow_share"] = report["open_world"]["slow_share"]
    return chosen, report


def held_out_split(recipe: Recipe, data: Sequence[Path], others: Sequence[Path], holdout: float | None,
                   seed: int | None) -> list:
    """The accurate model's held-out photos, split as its training recorded (quantize does the same)."""
    from catdog.training.data import find_samples, stratified_split
    from catdog.training.openworld import open_world_split

    training = recipe.training
    if recipe.other_label:
        fraction = holdout if holdout is not None else training.get("holdout_fraction", 0.1)
        return open_world_split(training.get("parent_training", {}), data, others, fraction,
                                seed if seed is not None else training.get("seed", 0),
                                training.get("split", "seeded"), recipe.known_labels)[1]
    recorded = training.get("holdout_fraction")
    if recorded is None and training.get("n_holdout"):
        recorded = round(training["n_holdout"] / (training["n_holdout"] + training.get("n_train", 0)), 3)
    fraction = holdout if holdout is not None else (recorded or 0.1)
    if recorded is not None and holdout is not None and abs(holdout - recorded) > 1e-9:
        log.warning("held-out fraction %s, but %s was trained holding out %s: the split may include photos it "
                    "trained on", holdout, recipe.name, recorded)
    _, held = stratified_split(find_samples(data, recipe.known_labels), fraction,
                               seed if seed is not None else training.get("seed", 0))
    if holdout is None and training.get("n_holdout") not in (None, len(held)):
        log.warning("%s held out %s photos, this split %d: are these its training folders?",
                    recipe.name, training["n_holdout"], len(held))
    return held


def _split_of(recipe: Recipe) -> dict:
    training = recipe.training.get("parent_training", recipe.training) if recipe.other_label else recipe.training
    return {k: training.get(k) for k in ("data", "seed", "n_holdout", "holdout_fraction")}


def _probabilities(model_dir: Path, x: np.ndarray, threads: int | None) -> np.ndarray:
    from catdog.model.engine import Classifier

    clf = Classifier.load(model_dir, threads=threads, warmup=False)
    return np.concatenate([clf.model_probabilities(x[i:i + 32]) for i in range(0, len(x), 32)]) \
        if len(x) else np.zeros((0, len(clf.labels)))


def build_cascade(fast_dir: str | Path, accurate_dir: str | Path, out: str | Path, data: Sequence[Path], *,
                  others: Sequence[Path] = (), holdout: float | None = None, seed: int | None = None,
                  tolerance: float = 0, name: str | None = None, threads: int | None = None) -> dict:
    """Write ``out``: the accurate model, its fast model in ``out/fast``, the hand-off chosen on
    the accurate model's held-out split of ``data`` (and ``others``). Returns the report.

    The fast model gets the accurate model's input (:func:`catdog.training.export.resize_input`
    when only the size, crop fraction or resampling differ) and then its temperature and
    other threshold refitted on the same held-out photos. Raises ``ValueError`` when no
    hand-off keeps the accurate model's numbers (nothing is served from ``out`` then: its
    model.json has no cascade).
    """
    from catdog.training.data import serving_inputs
    from catdog.training.export import resize_input
    from catdog.training.quantize import refit_temperature

    fast_dir, accurate_dir, out = Path(fast_dir), Path(accurate_dir), Path(out)
    accurate = Recipe.read(accurate_dir / RECIPE_FILENAME)
    fast = Recipe.read(fast_dir / RECIPE_FILENAME)
    for folder, recipe in ((accurate_dir, accurate), (fast_dir, fast)):
        if recipe.cascade is not None:
            raise ValueError(f"{folder} is a cascade already; give catdog cascade two single models")
        if not (folder / "model.onnx").is_file():
            raise ValueError(f"{folder} has no model.onnx: catdog cascade takes two ONNX model folders")
    # Labels first: nothing is written for models that cannot form a cascade.
    check_cascade(accurate, fast.model_copy(update={"input": accurate.input}), None, str(fast_dir))
    if out.resolve() in (accurate_dir.resolve(), fast_dir.resolve()):
        raise ValueError(f"--out {out} must be a new folder, not one of the two models")
    same = ("mean", "std", "scale", "layout", "crop", "dtype")
    differ = [k for k in same if getattr(fast.input, k) != getattr(accurate.input, k)]
    if fast.input != accurate.input and (differ or fast.input.layout != "NCHW" or fast.input.dtype != "float32"):
        raise ValueError(f"the fast model's input differs from the accurate model's in {differ or ['size']} "
                         "(layout NCHW float32 needed): catdog cascade only changes the input size, crop fraction "
                         "and resampling of the fast model")
    if fast.training.get("n_holdout") and _split_of(fast) != _split_of(accurate):
        log.warning("the fast model recorded another training split (%s) than the accurate model (%s): some "
                    "held-out photos may be ones the fast model trained on, which would flatter it",
                    _split_of(fast), _split_of(accurate))

    held = held_out_split(accurate, data, others, holdout, seed)
    if not held:
        raise ValueError("the held-out split is empty: give the data the accurate model was trained on "
                         "(or a larger --holdout)")
    shutil.copytree(accurate_dir, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(FAST_FOLDER))
    fast_out = out / FAST_FOLDER
    fast_out.mkdir(exist_ok=True)
    x, y = serving_inputs(held, accurate.input)
    edit = None
    if fast.input != accurate.input:
        edit = resize_input(fast_dir / "model.onnx", fast_out / "model.onnx", accurate.input.size)
        fast = fast.model_copy(update={"input": accurate.input, "training": fast.training | {
            "cascade_input": f"takes {accurate.name}'s input ({accurate.input.size} px, resize "
                             f"{accurate.input.resize}) and resizes it to its own {fast.input.size} px in its "
                             f"graph ({edit}); temperature refitted on {accurate.name}'s held-out split"}})
        fast.write(fast_out / RECIPE_FILENAME)
        refitted = refit_temperature(fast_out, held, inputs=(x, y), threads=threads)
        log.info("fast model refitted on %d held-out photos: %s", len(y), refitted)
        fast = Recipe.read(fast_out / RECIPE_FILENAME)
    else:
        shutil.copy2(fast_dir / "model.onnx", fast_out / "model.onnx")
        fast.write(fast_out / RECIPE_FILENAME)
    # The accurate copy as it is, without a cascade yet: both models on the same tensors.
    fast_probs = _probabilities(fast_out, x, threads)
    slow_probs = _probabilities(out, x, threads)
    other = accurate.labels.index(accurate.other_label) if accurate.other_label else None
    handoff, report = choose_handoff(fast_probs, slow_probs, y, other, tolerance, threshold=accurate.threshold,
                                     other_threshold=accurate.other_threshold,
                                     floor=handoff_floor(accurate, fast))
    report |= {"fast_model": f"{fast.name} {fast.version}", "accurate_model": f"{accurate.name} {accurate.version}",
               "fast_input_edit": edit}
    if handoff is None:
        raise ValueError("no hand-off below 1 keeps the accurate model's numbers on the held-out split (the fast "
                         f"model is certain of a photo it gets wrong); {out} holds no cascade. Report: {report}")
    spec = CascadeSpec(fast=FAST_FOLDER, handoff=handoff, metrics=_summary(report))
    check_cascade(accurate, fast, handoff, str(fast_out))
    accurate.model_copy(update={"name": name or f"{accurate.name}-cascade", "cascade": spec}).write(
        out / RECIPE_FILENAME)
    return report


def _summary(report: dict) -> dict:
    """What model.json keeps: the held-out numbers behind the hand-off."""
    keep = ("errors", "accuracy", "ece", "pets_answered_other", "others_not_answered_other", "losses")

    def pick(metrics: dict | None) -> dict | None:
        return None if metrics is None else {k: metrics[k] for k in keep if k in metrics}

    out = {k: report[k] for k in ("n", "tolerance", "floor", "slow_share")}
    for world in ("open_world", "closed_world"):
        if world in report:
            view = report[world]
            out[world] = {"slow_share": view["slow_share"], "cascade": pick(view["cascade"]),
                          "accurate": pick(view["accurate"]), "fast": pick(view["fast"])}
    return {"holdout": out}
