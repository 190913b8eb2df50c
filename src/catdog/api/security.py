"""Who may call the API and what browsers may do with its answers.

CORS for the configured origins only, browser-hardening headers on every response,
an optional API key (``CATDOG_API_KEYS``) and an optional per-client rate limit
(``CATDOG_RATE_LIMIT``). Endpoints declared ``open`` (health, readiness, metrics, the
docs: see :mod:`catdog.api.endpoint`) need no key and are never throttled, so probes,
scrapers and people reading the docs are never locked out.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request
from flask_cors import CORS

from catdog.api.endpoint import is_open_request
from catdog.api.errors import Unauthorized
from catdog.api.observability import REQUEST_ID_HEADER
from catdog.config import Settings

API_KEY_HEADER = "X-API-Key"

#: Headers every response carries: no MIME sniffing, no framing, no referrer leaks.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: JSON and metrics need no content policy at all; the docs page sets a looser one.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"


def init_security(app: Flask, settings: Settings) -> None:
    """Install CORS, security headers, then the rate limit, then the key check (in that order:
    throttling comes before authentication so nobody can guess keys at full speed)."""
    if settings.cors_origins:
        CORS(
            app,
            origins=settings.cors_origins,
            methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", API_KEY_HEADER, REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
            max_age=600,
            always_send=False,  # no CORS headers for requests without an Origin (curl, servers)
        )

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    if settings.rate_limit:
        _init_rate_limit(app, settings.rate_limit)
    if settings.api_keys:
        _init_api_keys(app, settings.api_keys)


def _init_rate_limit(app: Flask, limit: str) -> None:
    """Flask-Limiter, in memory, keyed by client address.

    The count is per worker process: with N gunicorn workers a client can get up to N
    times the limit. Good enough to stop a runaway script; use a shared store (Redis)
    for an exact limit.
    """
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address
    from limits import parse_many

    try:
        parse_many(limit)
    except ValueError:
        raise ValueError(f"CATDOG_RATE_LIMIT={limit!r} is not a rate limit like '120/minute'") from None
    Limiter(
        get_remote_address,
        app=app,
        default_limits=[limit],
        default_limits_exempt_when=is_open_request,
        storage_uri="memory://",
        headers_enabled=True,
    )


def _init_api_keys(app: Flask, keys: list[str]) -> None:
    encoded = [key.encode() for key in keys]

    @app.before_request
    def require_api_key() -> None:
        if is_open_request() or request.url_rule is None:
            return  # unknown paths answer 404/405, which reveal nothing
        sent = request.headers.get(API_KEY_HEADER, "").encode()
        # Compare against every key, constant-time, so timing says nothing about which key or prefix.
        valid = False
        for key in encoded:
            valid |= hmac.compare_digest(sent, key)
        if not valid:
            raise Unauthorized(sent_key=bool(sent))
