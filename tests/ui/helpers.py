"""Answers as the API gives them, for the page's plain-function tests."""

from __future__ import annotations

from catdog.prediction import Prediction
from catdog.ui.photos import Picture

THREE = ("cat", "dog", "other")
MP = 40_000_000


def answer(label: str, probabilities: dict[str, float], sure: bool = True) -> Prediction:
    """A prediction with the API's own ``sure``."""
    return Prediction(label, probabilities[label], probabilities, sure=sure)


def said(label: str, confidence: float, labels=THREE, sure: bool = True) -> Prediction:
    rest = (1 - confidence) / (len(labels) - 1)
    return answer(label, {x: confidence if x == label else rest for x in labels}, sure)


def picture(name: str) -> Picture:
    return Picture(name, name.encode(), "image/jpeg", len(name))
