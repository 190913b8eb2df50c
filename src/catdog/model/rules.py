"""The two rules that turn a model's scores into an answer, shared by serving and evaluation.

The engine applies them to one photo at a time; training and quantisation apply them to
held-out batches when they fit the temperature and choose the "other" threshold. One
definition keeps the threshold that was chosen and the rule that serves it the same.
Plain numpy: no model runtime needed.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) scores."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def decide_indices(probs: np.ndarray, *, threshold: float = 0.5, other: int | None = None,
                   other_threshold: float = 0.5) -> np.ndarray:
    """The answer's label index for each row of (N, K) probabilities (see ``Recipe``):

    - ``other`` given: ``other`` when its probability >= ``other_threshold``, else the
      likeliest of the remaining labels;
    - two labels: the second when its probability >= ``threshold``;
    - otherwise: the most probable label.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if other is not None:
        rest = probs.copy()
        rest[:, other] = -1.0
        return np.where(probs[:, other] >= other_threshold, other, rest.argmax(axis=1))
    if probs.shape[1] == 2:
        return (probs[:, 1] >= threshold).astype(int)
    return probs.argmax(axis=1)


def sure_rows(probs: np.ndarray, indices: np.ndarray, level: float) -> np.ndarray:
    """Whether each answer is sure: no other label is more probable than the answer, and
    the answer's probability reaches ``level`` (the recipe's ``sure_level``)."""
    probs = np.asarray(probs, dtype=np.float64)
    answer = probs[np.arange(len(probs)), indices]
    return (answer >= probs.max(axis=1)) & (answer >= level)
