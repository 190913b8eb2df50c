"""Errors of the feedback store, importable without SQLAlchemy (the API's error table uses them)."""

from __future__ import annotations

from catdog.errors import CatdogError


class FeedbackError(CatdogError):
    """The feedback database cannot be used (a bad URL, a database that does not answer)."""

    code = "feedback_unavailable"


class FeedbackNotFound(CatdogError):
    """No feedback entry has this id (never stored, already deleted, or past the retention period)."""

    code = "feedback_not_found"

    def __init__(self, entry_id: int | str):
        super().__init__(f"There is no feedback entry with id {entry_id}; it was never stored, was deleted, "
                         "or is past the retention period (catdog feedback export lists the ids).")
        self.entry_id = entry_id
