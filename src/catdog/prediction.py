"""What the model says about one photo: the type every interface returns.

It lives outside :mod:`catdog.model` so that :mod:`catdog.client` can return the very same
type without importing the engine (and with it numpy and ONNX Runtime).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """What the model says about one photo."""

    label: str
    confidence: float
    probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """The inverse of :meth:`to_dict` (what the REST API sends). Raises KeyError,
        TypeError or ValueError for anything else."""
        probabilities = data["probabilities"]
        if not isinstance(probabilities, Mapping):
            raise TypeError("probabilities is not an object")
        return cls(
            label=str(data["label"]),
            confidence=float(data["confidence"]),
            probabilities={str(k): float(v) for k, v in probabilities.items()},
        )
