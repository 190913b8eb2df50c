"""Classification metrics in plain numpy, so evaluation needs only the serving dependencies.

Inputs are ``y`` (0/1 ground truth, 1 = the second label) and ``p`` (predicted
probability of the second label).
"""

from __future__ import annotations

import itertools

import numpy as np


def confusion(y: np.ndarray, pred: np.ndarray) -> list[list[int]]:
    """2x2 confusion matrix, rows = truth, columns = prediction."""
    return [[int(np.sum((y == t) & (pred == q))) for q in (0, 1)] for t in (0, 1)]


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0,0) to (1,1)."""
    order = np.argsort(-p, kind="mergesort")
    y_sorted, p_sorted = y[order], p[order]
    distinct = np.where(np.diff(p_sorted))[0]
    idx = np.r_[distinct, len(y) - 1]
    tps = np.cumsum(y_sorted)[idx]
    fps = (idx + 1) - tps
    pos, neg = max(1, y.sum()), max(1, len(y) - y.sum())
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos]


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    if y.min() == y.max():
        return float("nan")
    fpr, tpr = roc_curve(y, p)
    return float(np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Per confidence bin: mean confidence, accuracy and count (for ECE and the diagram)."""
    pred = (p >= 0.5).astype(int)
    conf = np.where(pred == 1, p, 1 - p)
    edges = np.linspace(0.5, 1.0, bins + 1)
    rows = []
    for lo, hi in itertools.pairwise(edges):
        mask = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        if mask.any():
            rows.append({"lo": float(lo), "hi": float(hi), "confidence": float(conf[mask].mean()),
                         "accuracy": float((pred[mask] == y[mask]).mean()), "count": int(mask.sum())})
    return rows


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE of the predicted label's confidence, equal-width bins over [0.5, 1]."""
    rows = reliability(y, p, bins)
    n = len(y)
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"]) for r in rows))


def classification_report(y: np.ndarray, p: np.ndarray, labels=("cat", "dog"), threshold: float = 0.5) -> dict:
    """Every number the model card and ``catdog evaluate`` show."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    cm = confusion(y, pred)
    per_class = {}
    for k, name in enumerate(labels):
        tp = cm[k][k]
        predicted = cm[0][k] + cm[1][k]
        actual = sum(cm[k])
        precision = tp / predicted if predicted else float("nan")
        recall = tp / actual if actual else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if predicted and actual and tp else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return {
        "n": len(y),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "errors": int((pred != y).sum()),
        "roc_auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "ece": expected_calibration_error(y, p),
        "confusion_matrix": cm,
        "per_class": per_class,
        "threshold": threshold,
    }


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the log loss of softmax(logits / T) (Guo et al., 2017).

    Log loss is convex in 1/T, so a coarse grid over log T and a golden-section
    refinement find the optimum without scipy.
    """
    logits = np.asarray(logits, dtype=np.float64)
    margin = logits[:, 1] - logits[:, 0] if logits.ndim == 2 else logits

    def nll(log_t: float) -> float:
        return log_loss(y, 1.0 / (1.0 + np.exp(-margin / np.exp(log_t))))

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


def calibrated_report(logits: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """Fit the temperature on (logits, y) and report the metrics of the calibrated probabilities."""
    logits = np.asarray(logits, dtype=np.float64)
    temperature = fit_temperature(logits, y)
    margin = (logits[:, 1] - logits[:, 0]) / temperature
    return temperature, classification_report(y, 1 / (1 + np.exp(-margin)))
