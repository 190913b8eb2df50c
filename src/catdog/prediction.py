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
    """What the model says about one photo.

    ``sure`` is False whenever another label is more probable than the answer (the recipe
    protects real pets from "other", so a cat can be answered "cat" at 0.30 while "other"
    is at 0.69) or the answer's confidence is under the recipe's ``sure_level``: the answer
    never reads as more than its own numbers back.
    """

    label: str
    confidence: float
    probabilities: dict[str, float] = field(default_factory=dict)
    sure: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "sure": self.sure,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """The inverse of :meth:`to_dict` (what the REST API sends). Raises KeyError,
        TypeError or ValueError for anything else."""
        probabilities = data["probabilities"]
        if not isinstance(probabilities, Mapping):
            raise TypeError("probabilities is not an object")
        values = {str(k): float(v) for k, v in probabilities.items()}
        confidence = float(data["confidence"])
        # A server from before the field: at least never call an answer sure that another
        # label outweighs.
        sure = data["sure"] if "sure" in data else confidence >= max(values.values(), default=0.0)
        if not isinstance(sure, bool):
            raise TypeError("sure is not a boolean")
        return cls(label=str(data["label"]), confidence=confidence, probabilities=values, sure=sure)
