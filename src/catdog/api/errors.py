"""The one place where errors become HTTP responses.

Every error a client can see leaves through here as ``{"error": {"code", "message"}}``
with the status its class declares (``status``, see :class:`catdog.errors.CatdogError`):
engine errors (:mod:`catdog.model.errors`), the API's own request errors
(:mod:`catdog.api.request_errors`), and the HTTP errors Werkzeug raises itself
(404, 405, 413, 429...). Anything else is a bug: it is logged with the request id,
and the 500 body carries that id so a user's report can be matched to the log line.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from catdog.api.codes import HTTP_CODES, HTTP_WHEN
from catdog.api.request_errors import (
    InvalidInferenceRequest,
    InvalidParameter,
    MalformedBody,
    MalformedForm,
    MissingField,
    ModelNotFound,
    RateLimited,
    RequestError,
    TooManyFiles,
    Unauthorized,
    UnsupportedBody,
)
from catdog.feedback import errors as _feedback_errors  # noqa: F401 - its classes join the table below
from catdog.model.errors import CatdogError, ImageTooLarge

log = logging.getLogger("catdog.api")

#: The request errors are defined beside the pure codec that raises them; they are part of this
#: module's interface (``from catdog.api.errors import MissingField``) as before.
__all__ = [
    "ERROR_TABLE",
    "STATUS",
    "InvalidInferenceRequest",
    "InvalidParameter",
    "MalformedBody",
    "MalformedForm",
    "MissingField",
    "ModelNotFound",
    "RateLimited",
    "RequestError",
    "TooManyFiles",
    "Unauthorized",
    "UnsupportedBody",
    "error_body",
    "register_error_handlers",
    "status_of",
    "v2_error_body",
]


def _error_classes(base: type[CatdogError] = CatdogError) -> list[type[CatdogError]]:
    """Every error class defined so far, parents before children, in definition order."""
    found: list[type[CatdogError]] = []
    for cls in base.__subclasses__():
        found += [cls, *_error_classes(cls)]
    return list(dict.fromkeys(found))


#: HTTP status of each error class, from the classes' own ``status`` (for tests and tools; the
#: API reads ``type(error).status``, which also covers classes defined after this module).
STATUS: dict[type[CatdogError], int] = {cls: cls.status for cls in _error_classes()}


def _error_table() -> tuple[tuple[int, str, str], ...]:
    """(status, code, when) for every documented error class, and the statuses Werkzeug and
    gunicorn answer themselves, by status: what the docs page and the OpenAPI responses list."""
    rows = [(cls.status, cls.code, cls.when) for cls in _error_classes() if "when" in vars(cls) and cls.when]
    rows += [(status, HTTP_CODES[status], when) for status, when in HTTP_WHEN.items()]
    return tuple(sorted(rows, key=lambda row: row[0]))


#: What the docs page lists: (status, code, when), generated from the classes above.
ERROR_TABLE: tuple[tuple[int, str, str], ...] = _error_table()


def status_of(error: CatdogError) -> int:
    """The status for an error: the one its class declares (or inherits; the base's is 500)."""
    return type(error).status


#: Paths under this prefix speak the Open Inference Protocol, whose errors are ``{"error": "..."}``.
V2_PREFIX = "/v2"


def error_body(code: str, message: str, **extra: Any) -> dict:
    """The error JSON shape, shared by error responses and per-file batch results."""
    return {"error": {"code": code, "message": message, **extra}}


def v2_error_body(code: str, message: str, **extra: Any) -> dict:
    """The Open Inference Protocol's error shape: ``error`` is a string (KServe and Triton
    clients read exactly that key). The stable code leads the string, so a tritonclient user
    sees it too, and is repeated as ``code`` for programs reading the JSON."""
    return {"error": f"{code}: {message}", "code": code, **extra}


def _speaks_v2() -> bool:
    return request.path == V2_PREFIX or request.path.startswith(V2_PREFIX + "/")


def error_response(status: int, code: str, message: str, headers: Any = None, **extra: Any) -> Response:
    shape = v2_error_body if _speaks_v2() else error_body
    response = jsonify(shape(code, message, **extra))
    response.status_code = status
    if headers:
        response.headers.extend(headers)
    return response


def _internal_error(exc: BaseException) -> Response:
    request_id = g.get("request_id", "-")
    log.error("unhandled error request_id=%s", request_id, exc_info=exc)
    return error_response(
        500,
        HTTP_CODES[500],
        f"Something went wrong on our side; it was logged with request id {request_id}.",
        request_id=request_id,
    )


def handle_catdog_error(exc: CatdogError) -> Response:
    status = status_of(exc)
    if status >= 500:
        return _internal_error(exc)
    return error_response(status, exc.code, exc.message, getattr(exc, "headers", None))


def handle_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        return _internal_error(exc)
    code = HTTP_CODES.get(status) or (exc.name or "error").lower().replace(" ", "_")
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return error_response(status, code, _http_message(status, exc), headers)


def _http_message(status: int, exc: HTTPException) -> str:
    """Messages that say what to do, for the errors Werkzeug raises with generic text."""
    if status == 404:
        return f"There is no endpoint at {request.path}; the API is described at /docs."
    if status == 405:
        allowed = ", ".join(m for m in getattr(exc, "valid_methods", None) or () if m not in ("HEAD", "OPTIONS"))
        return f"{request.method} is not allowed on {request.path}; use {allowed or 'another method'}."
    if status == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        size = request.content_length
        if size and limit and size > limit:
            return ImageTooLarge(size, limit).message
        if size and limit:  # within the byte limit: Werkzeug's part-count or form-field limits
            return "The request has too many parts or too large form fields; send only the photo files."
        return f"The request body is over the limit of {limit / 1e6:.1f} MB; send a smaller photo."
    if status == 429:
        return f"Too many photos from your address (limit {exc.description}); wait and retry."
    if status == 408:
        return exc.description or "The request body did not arrive in time; send it again."
    return exc.description or exc.name


def handle_unexpected(exc: Exception) -> Response:
    return _internal_error(exc)


def register_error_handlers(app: Flask) -> None:
    """Route every error to JSON; Flask picks the most specific handler for each exception."""
    app.register_error_handler(CatdogError, handle_catdog_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
