"""The REST API: ``create_app()`` builds it; ``catdog.api.gunicorn_conf`` serves it.

Production runs exactly::

    gunicorn --config python:catdog.api.gunicorn_conf "catdog.api:create_app()"

``create_app`` is imported lazily, so loading the gunicorn config (in the master
process) imports neither Flask nor prometheus_client: the workers import them after
the master has set up multi-process metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catdog.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from catdog.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
