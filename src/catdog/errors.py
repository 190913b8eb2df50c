"""The base of every error catdog raises on purpose, in a module that imports nothing.

It lives outside :mod:`catdog.model` so that settings (:class:`catdog.config.ConfigError`) and
the web UI can use it without loading the engine's package; the engine's own errors, and this
base re-exported, are in :mod:`catdog.model.errors`.
"""

from __future__ import annotations

from typing import ClassVar


class CatdogError(Exception):
    """Base of every error catdog raises on purpose.

    Each class declares, once, its stable ``code``, the HTTP ``status`` the API answers it with
    (a subclass inherits its parent's) and, for the error table at the end of ``/docs``,
    ``when`` it happens; :mod:`catdog.api.errors` builds its mapping and that table from the
    classes. A status of 500 is a bug: the API logs it and hides the message.
    """

    code = "catdog_error"
    status: ClassVar[int] = 500
    #: One line for the docs' error table; None: not listed (a base class, or not an API error).
    when: ClassVar[str | None] = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unavailable(CatdogError):
    """A 503 the client may send again: the server is busy, or something it depends on does not
    answer. Not the client's fault and not a bug; ``Retry-After`` says when, and the message
    ends by saying so too."""

    code = "unavailable"
    status: ClassVar[int] = 503

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(f"{message}; retry after {retry_after} s.")
        self.headers = {"Retry-After": str(retry_after)}

