"""Errors of the feedback store, importable without SQLAlchemy (the API's error table uses them)."""

from __future__ import annotations

from catdog.errors import CatdogError


class FeedbackError(CatdogError):
    """The feedback database cannot be used (a bad URL, a database that does not answer)."""

    code = "feedback_unavailable"
    status = 500  # the server's problem: logged with the request id, the message hidden


class FeedbackNotFound(CatdogError):
    """No feedback entry has this id (never stored, already deleted, or past the retention period)."""

    code = "feedback_not_found"
    status = 404
    when = "DELETE /v1/feedback/{id} for an entry that does not exist (or no longer)"

    def __init__(self, entry_id: int | str):
        super().__init__(f"There is no feedback entry with id {entry_id}; it was never stored, was deleted, "
                         "or is past the retention period (catdog feedback export lists the ids).")
        self.entry_id = entry_id
