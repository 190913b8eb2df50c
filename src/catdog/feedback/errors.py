"""Errors of the feedback store, importable without SQLAlchemy (the API's error table uses them)."""

from __future__ import annotations

from catdog.errors import CatdogError, Unavailable


class FeedbackError(CatdogError):
    """The feedback database is misconfigured (a bad URL, a driver that is not installed)."""

    code = "feedback_misconfigured"
    status = 500  # the server's problem: logged with the request id, the message hidden


class FeedbackUnavailable(Unavailable, FeedbackError):
    """The feedback database does not answer right now (down, unreachable, out of connections):
    the request may be sent again later; nothing was stored."""

    code = "feedback_unavailable"
    when = "the feedback database does not answer right now (nothing was stored); see Retry-After"

    def __init__(self, message: str, *, retry_after: int = 5):
        super().__init__(f"{message}; nothing was stored", retry_after=retry_after)


class FeedbackNotFound(CatdogError):
    """No feedback entry has this id (never stored, already deleted, or past the retention period)."""

    code = "feedback_not_found"
    status = 404
    when = "DELETE /v1/feedback/{id} for an entry that does not exist (or no longer)"

    def __init__(self, entry_id: int | str):
        super().__init__(f"There is no feedback entry with id {entry_id}; it was never stored, was deleted, "
                         "or is past the retention period (catdog feedback export lists the ids).")
        self.entry_id = entry_id
