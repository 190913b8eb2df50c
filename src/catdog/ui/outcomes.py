"""What became of each photo on the page: one outcome each, and the counts of a batch.

No Streamlit, no HTML, no words here. Whether an answer is sure is the API's own rule
(``sure`` in every answer: false when another label is more probable than the answer or
its confidence is under the recipe's level); the page never decides it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from catdog.client import APIError
from catdog.prediction import Prediction
from catdog.ui.photos import Picture

Result = Prediction | APIError
#: The outcomes that are not labels, in the order the summary lists them.
OTHER_OUTCOMES = ("unsure", "failed", "pending")


def is_sure(prediction: Prediction) -> bool:
    """The API's ``sure`` (:meth:`Prediction.from_dict` works it out for a server from before it)."""
    return prediction.sure


def outcome(result: Result | None) -> str:
    """The one outcome a photo counts under: its label, "unsure", "failed" or "pending"."""
    if result is None:
        return "pending"
    if isinstance(result, APIError):
        return "failed"
    return result.label if is_sure(result) else "unsure"


def tally(pictures: Sequence[Picture], results: Mapping[str, Result], labels: Sequence[str]) -> dict[str, int]:
    """The non-zero counts, one per outcome (labels in the model's order, then not sure, failed,
    not classified yet); they add up to the photos."""
    counts = dict.fromkeys([*labels, *OTHER_OUTCOMES], 0)
    for picture in pictures:
        key = outcome(results.get(picture.key))
        counts[key] = counts.get(key, 0) + 1  # a label the model card did not list still counts
    return {key: n for key, n in counts.items() if n}
