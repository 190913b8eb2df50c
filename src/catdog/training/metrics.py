"""Classification metrics in plain numpy, so evaluation needs only the serving dependencies.

Inputs are ``y`` (ground truth, an index into the model's labels) and ``probs`` ((N, K)
probabilities in label order; a 1-D array is read as P(second label) of a two-label
model). ``pred`` (predicted label indices) defaults to the two-label threshold or the
most probable label; evaluation passes the engine's own decisions, which may differ
(an open-world model only answers "other" above its threshold).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from catdog.model.rules import decide_indices, softmax


def as_matrix(probs: np.ndarray) -> np.ndarray:
    """(N, K) probabilities; a 1-D P(second label) becomes (N, 2)."""
    probs = np.asarray(probs, dtype=np.float64)
    return np.stack([1.0 - probs, probs], axis=1) if probs.ndim == 1 else probs


def confusion(y: np.ndarray, pred: np.ndarray, k: int = 2) -> list[list[int]]:
    """K x K confusion matrix, rows = truth, columns = prediction."""
    return [[int(np.sum((y == t) & (pred == q))) for q in range(k)] for t in range(k)]


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0,0) to (1,1) (binary y)."""
    order = np.argsort(-p, kind="mergesort")
    y_sorted, p_sorted = y[order], p[order]
    distinct = np.where(np.diff(p_sorted))[0]
    idx = np.r_[distinct, len(y) - 1]
    tps = np.cumsum(y_sorted)[idx]
    fps = (idx + 1) - tps
    pos, neg = max(1, y.sum()), max(1, len(y) - y.sum())
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos]


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Binary ROC AUC of score ``p`` for ``y == 1``; NaN when only one class is present."""
    y = np.asarray(y)
    if len(y) == 0 or y.min() == y.max():
        return float("nan")
    fpr, tpr = roc_curve(y, p)
    return float(np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr))


def log_loss(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-probability of the true label."""
    probs = as_matrix(probs)
    y = np.asarray(y, dtype=int)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0))))


def reliability(y: np.ndarray, probs: np.ndarray, pred: np.ndarray | None = None, bins: int = 10) -> list[dict]:
    """Per confidence bin: mean confidence of the answer, accuracy and count (ECE, the diagram).

    The bins cover [1/K, 1], the range a top-label confidence can take.
    """
    probs = as_matrix(probs)
    pred = decide_indices(probs) if pred is None else np.asarray(pred, dtype=int)
    conf = probs[np.arange(len(pred)), pred]
    edges = np.linspace(1.0 / probs.shape[1], 1.0, bins + 1)
    rows = []
    for lo, hi in itertools.pairwise(edges):
        mask = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        if lo == edges[0]:
            mask |= conf < lo  # an "other" answer below its label's argmax still counts
        if mask.any():
            rows.append({"lo": float(lo), "hi": float(hi), "confidence": float(conf[mask].mean()),
                         "accuracy": float((pred[mask] == y[mask]).mean()), "count": int(mask.sum())})
    return rows


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, pred: np.ndarray | None = None,
                               bins: int = 10) -> float:
    """ECE of the answer's confidence, equal-width bins over [1/K, 1]."""
    rows = reliability(y, probs, pred, bins)
    n = len(y)
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"]) for r in rows))


def _per_class(cm: list[list[int]], labels: Sequence[str]) -> dict:
    out = {}
    for k, name in enumerate(labels):
        tp = cm[k][k]
        predicted = sum(row[k] for row in cm)
        actual = sum(cm[k])
        precision = tp / predicted if predicted else float("nan")
        recall = tp / actual if actual else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if predicted and actual and tp else 0.0
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return out


def _auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Two labels: AUC of P(second). More: the mean one-vs-rest AUC over the labels present."""
    if probs.shape[1] == 2:
        return roc_auc(y, probs[:, 1])
    aucs = [roc_auc((y == k).astype(int), probs[:, k]) for k in range(probs.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def open_world_report(y: np.ndarray, pred: np.ndarray, other: int) -> dict:
    """The open-world numbers: how many non-pets are caught, how many real pets are lost."""
    is_other, said_other = y == other, pred == other
    pets = ~is_other
    return {
        "others": int(is_other.sum()),
        "others_answered_other": float(said_other[is_other].mean()) if is_other.any() else float("nan"),
        "pets": int(pets.sum()),
        "pets_answered_other": float(said_other[pets].mean()) if pets.any() else float("nan"),
        "pet_accuracy": float((pred[pets] == y[pets]).mean()) if pets.any() else float("nan"),
    }


def classification_report(y: np.ndarray, probs: np.ndarray, labels: Sequence[str] = ("cat", "dog"),
                          threshold: float = 0.5, pred: np.ndarray | None = None,
                          other_label: str | None = None) -> dict:
    """Every number the model card and ``catdog evaluate`` show."""
    y = np.asarray(y, dtype=int)
    probs = as_matrix(probs)
    labels = list(labels)
    if probs.shape[1] != len(labels):
        raise ValueError(f"{probs.shape[1]} probability columns for {len(labels)} labels {labels}")
    pred = decide_indices(probs, threshold=threshold) if pred is None else np.asarray(pred, dtype=int)
    cm = confusion(y, pred, len(labels))
    report = {
        "n": len(y),
        "labels": labels,
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "errors": int((pred != y).sum()),
        "roc_auc": _auc(y, probs),
        "log_loss": log_loss(y, probs) if len(y) else float("nan"),
        "ece": expected_calibration_error(y, probs, pred) if len(y) else float("nan"),
        "confusion_matrix": cm,
        "per_class": _per_class(cm, labels),
        "threshold": threshold,
    }
    if other_label in labels:
        report["open_world"] = open_world_report(y, pred, labels.index(other_label))
    return report


def _as_logit_matrix(logits: np.ndarray) -> np.ndarray:
    """(N, K) logits; a 1-D margin (second minus first) becomes (N, 2) with the same softmax."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.stack([np.zeros_like(logits), logits], axis=1) if logits.ndim == 1 else logits


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the log loss of softmax(logits / T) (Guo et al., 2017).

    Log loss is convex in 1/T, so a coarse grid over log T and a golden-section
    refinement find the optimum without scipy.
    """
    logits = _as_logit_matrix(logits)
    y = np.asarray(y, dtype=int)

    def nll(log_t: float) -> float:
        return log_loss(y, softmax(logits / np.exp(log_t)))

    grid = np.linspace(np.log(0.05), np.log(20.0), 60)
    best = grid[int(np.argmin([nll(g) for g in grid]))]
    lo, hi = best - 0.15, best + 0.15
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def calibrated_report(logits: np.ndarray, y: np.ndarray, labels: Sequence[str] | None = None,
                      other_label: str | None = None, other_cap: float = 0.003,
                      threshold: float = 0.5) -> tuple[float, dict]:
    """Fit the temperature on (logits, y) and report the metrics of the calibrated probabilities.

    With an ``other_label``, its threshold is chosen too (:func:`choose_other_threshold`, at
    most ``other_cap`` of the pets lost), the report scores the answers that threshold gives
    as the engine would, and ``report["other_threshold"]`` holds it.
    """
    logits = _as_logit_matrix(logits)
    temperature = fit_temperature(logits, y)
    if labels is None:
        labels = ["cat", "dog"] if logits.shape[1] == 2 else [str(i) for i in range(logits.shape[1])]
    probs = softmax(logits / temperature)
    if other_label is None:
        return temperature, classification_report(y, probs, labels, threshold)
    other = list(labels).index(other_label)
    threshold = choose_other_threshold(probs, y, other, other_cap)
    pred = decide_indices(probs, other=other, other_threshold=threshold)
    report = classification_report(y, probs, labels, pred=pred, other_label=other_label)
    return temperature, report | {"other_threshold": threshold}


THRESHOLD_MARGIN = 1e-4  # far above float32 rounding (~6e-8 near 1), far below any score gap that matters


def choose_other_threshold(probs: np.ndarray, y: np.ndarray, other: int, cap: float) -> float:
    """The lowest P(other) threshold that answers "other" for at most ``cap`` of the real pets.

    Losing a real pet costs more than letting a strange photo through, so the threshold
    is set by the pets (the held-out ones), never below 0.5, and the share of non-pets it
    catches is whatever that leaves.
    """
    p_other = as_matrix(probs)[np.asarray(y) != other, other]
    if len(p_other) == 0:
        return 0.5
    allowed = int(np.floor(cap * len(p_other)))
    ranked = np.sort(p_other)[::-1]
    # Above the (allowed + 1)-th highest pet score, so at most `allowed` pets reach it. By a
    # margin, not one float64 step: serving recomputes the probabilities in float32 and a pet
    # that sat one step under the threshold here was answered "other" there.
    threshold = float(ranked[allowed]) + THRESHOLD_MARGIN if allowed < len(ranked) else 0.5
    return float(min(1.0, max(0.5, threshold)))
