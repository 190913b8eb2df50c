"""The base of every error catdog raises on purpose, in a module that imports nothing.

It lives outside :mod:`catdog.model` so that settings (:class:`catdog.config.ConfigError`) and
the web UI can use it without loading the engine's package; the engine's own errors, and this
base re-exported, are in :mod:`catdog.model.errors`.
"""

from __future__ import annotations


class CatdogError(Exception):
    """Base of every error catdog raises on purpose."""

    code = "catdog_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
