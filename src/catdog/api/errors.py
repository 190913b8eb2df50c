"""The one place where errors become HTTP responses.

Every error a client can see leaves through here as ``{"error": {"code", "message"}}``
with a status chosen by the error's class: engine errors (:mod:`catdog.model.errors`),
the API's own request errors below, and the HTTP errors Werkzeug raises itself
(404, 405, 413, 429...). Anything else is a bug: it is logged with the request id,
and the 500 body carries that id so a user's report can be matched to the log line.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from catdog.model.errors import (
    BatchBudgetExceeded,
    BatchDeadlineExceeded,
    CatdogError,
    DecodeTooCostly,
    EmptyFile,
    ExplainUnavailable,
    ImageError,
    ImageTooLarge,
    ModelError,
    NotAnImage,
    TooManyPixels,
    TruncatedImage,
    UnsupportedFormat,
)

log = logging.getLogger("catdog.api")


class RequestError(CatdogError):
    """The request itself is malformed (not the image in it): always the client's fault."""

    code = "bad_request"


class MissingField(RequestError):
    code = "missing_field"

    def __init__(self, field: str, sent: list[str], *, multiple: bool = False):
        files = "one or more files" if multiple else "the photo"
        what = ", ".join(repr(name) for name in sent) if sent else "no form fields"
        super().__init__(
            f"The request has no file in the form field {field!r} (it sent {what}); send {files} "
            f"as multipart/form-data field {field!r}"
            + ("." if multiple else ", or the raw bytes with an image/* Content-Type.")
        )
        self.field, self.sent = field, sent


class MalformedForm(RequestError):
    """A form body Werkzeug cannot parse (left silent, it would read as an empty form: a
    misleading "missing field")."""

    code = "malformed_form"

    def __init__(self, mimetype: str, not_utf8: bool):
        why = ("a field or file name is not UTF-8 text" if not_utf8
               else "it is cut short, or its boundary is missing or does not match the Content-Type header")
        super().__init__(
            f"The {mimetype[:64]} body cannot be parsed: {why}; send the photo as the file field "
            "'image' with a standard HTTP client (curl -F image=@photo.jpg)."
        )


class MalformedBody(RequestError):
    """The request's framing is broken (a chunk size that is not hexadecimal, a chunk without
    its terminator): where the body ends cannot be known."""

    code = "malformed_body"

    def __init__(self, problem: str):
        super().__init__(
            f"The request body's chunked framing is broken ({problem[:64]}); "
            "send it again with a standard HTTP client, or with a Content-Length."
        )


class UnsupportedBody(RequestError):
    """A prediction endpoint was sent a body type it does not read (refused before parsing)."""

    code = "unsupported_media_type"

    def __init__(self, mimetype: str, how: str):
        sent = f"a {mimetype[:64]} body" if mimetype else "a body without a Content-Type"
        super().__init__(f"The request has {sent}, which this endpoint does not read; send {how}.")


class TooManyFiles(RequestError):
    code = "too_many_files"

    def __init__(self, count: int, limit: int):
        super().__init__(
            f"The request has {count} files, over the limit of {limit} per batch; "
            "split it into smaller batches."
        )
        self.count, self.limit = count, limit


class InvalidParameter(RequestError):
    code = "invalid_parameter"

    def __init__(self, name: str, value: str, allowed: tuple[str, ...]):
        super().__init__(f"The query parameter {name}={value[:40]!r} is not valid; use "
                         + " or ".join(f"{name}={a}" for a in allowed) + f", or leave {name} out.")


class InvalidInferenceRequest(RequestError):
    """An Open Inference Protocol (v2) request that does not follow the protocol or this model's
    tensors (one ``image`` input, datatype ``BYTES``, shape ``[N]``)."""

    code = "invalid_inference_request"


class ModelNotFound(RequestError):
    code = "model_not_found"

    def __init__(self, name: str, served: list[str]):
        super().__init__(
            f"There is no model named {name[:80]!r} here; this server serves "
            + " and ".join(repr(n) for n in served) + " (GET /v2/models/<name> describes it)."
        )


class Unauthorized(RequestError):
    code = "unauthorized"

    def __init__(self, sent_key: bool):
        super().__init__(
            "The API key is not valid; check the X-API-Key header."
            if sent_key
            else "This API needs an API key; send it in the X-API-Key header."
        )


class RateLimited(RequestError):
    """The client has spent its photo budget (CATDOG_RATE_LIMIT) for now."""

    code = "rate_limited"

    def __init__(self, limit: str, *, retry_after: int, photos: int = 1, remaining: int = 0):
        asked = f"{photos} photos" if photos > 1 else "a photo"
        super().__init__(
            f"Too many photos from your address (limit {limit}, {remaining} left now, this request "
            f"asked for {asked}); retry after {retry_after} s."
        )
        self.headers = {"Retry-After": str(retry_after)}


class Overloaded(CatdogError):
    """More photo requests are waiting than this instance can answer soon (CATDOG_MAX_QUEUE):
    answered at once instead of queued, so the client (or its load balancer) can go elsewhere."""

    code = "overloaded"

    def __init__(self, why: str, *, retry_after: int = 1):
        super().__init__(f"The server is busy ({why}); retry after {retry_after} s.")
        self.headers = {"Retry-After": str(retry_after)}


class RateLimitStoreDown(CatdogError):
    """The shared rate-limit store (Redis) cannot be reached and CATDOG_RATE_LIMIT_STORE_DOWN=refuse."""

    code = "rate_limit_unavailable"

    def __init__(self, retry_after: int = 5):
        super().__init__("Photo requests cannot be counted against the rate limit right now (its store is "
                         f"unreachable), so they are refused; retry after {retry_after} s.")
        self.headers = {"Retry-After": str(retry_after)}


#: HTTP status of each error class; the most specific class in an error's MRO wins.
STATUS: dict[type[CatdogError], int] = {
    EmptyFile: 400,
    TruncatedImage: 400,
    NotAnImage: 415,
    UnsupportedFormat: 415,
    ImageTooLarge: 413,
    TooManyPixels: 422,
    ExplainUnavailable: 422,
    ImageError: 400,
    TooManyFiles: 400,
    MissingField: 400,
    MalformedForm: 400,
    MalformedBody: 400,
    UnsupportedBody: 415,
    DecodeTooCostly: 422,
    BatchBudgetExceeded: 413,
    BatchDeadlineExceeded: 413,
    Unauthorized: 401,
    ModelNotFound: 404,
    RateLimited: 429,
    Overloaded: 503,
    RateLimitStoreDown: 503,
    RequestError: 400,
    ModelError: 500,
}

#: Stable codes for the HTTP errors Werkzeug raises itself.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: ImageTooLarge.code,
    415: UnsupportedBody.code,
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
}

#: What the docs page lists: (status, code, when). Kept beside the mapping it documents.
ERROR_TABLE: tuple[tuple[int, str, str], ...] = (
    (400, MissingField.code, "no file in the expected form field (the message names the fields sent)"),
    (400, EmptyFile.code, "the file is 0 bytes"),
    (400, TruncatedImage.code, "an image header was recognised but the data is truncated or corrupt"),
    (400, MalformedForm.code, "a form body that cannot be parsed (cut short, wrong boundary, non-UTF-8 names)"),
    (400, MalformedBody.code, "a chunked body whose framing is broken (a chunk size that is not hexadecimal)"),
    (400, TooManyFiles.code, "a batch with more files than the limit"),
    (400, InvalidParameter.code, "a query parameter with a value the endpoint does not take"),
    (400, InvalidInferenceRequest.code, "a v2 inference request that breaks the protocol or the model's tensors"),
    (401, Unauthorized.code, "an API key is required and X-API-Key is missing or wrong"),
    (404, HTTP_CODES[404], "no endpoint at this path"),
    (404, ModelNotFound.code, "a v2 request names a model this server does not serve"),
    (405, HTTP_CODES[405], "the endpoint exists but not for this method (see the Allow header)"),
    (408, HTTP_CODES[408], "the request body did not arrive within the body timeout (a stalled or very slow client)"),
    (413, ImageTooLarge.code, ("the request body is over the upload limit (from its Content-Length, or "
     "as a chunked body reaches it)")),
    (413, BatchBudgetExceeded.code, "per file, in a batch: the files before it used up the batch's decoding budget"),
    (413, BatchDeadlineExceeded.code, "per file, in a batch: the batch reached its time limit before this file"),
    (415, UnsupportedBody.code, ("a body type the endpoint does not read, refused before parsing (REST: "
     "multipart/form-data or image/*; v2 infer: JSON, or application/octet-stream with the binary extension)")),
    (415, NotAnImage.code, "the content is not an image at all (a PDF or HTML file named .jpg)"),
    (415, UnsupportedFormat.code, "an image format catdog does not take (TIFF, HEIC, ...)"),
    (422, TooManyPixels.code, "the image has more pixels than the limit (a decompression bomb)"),
    (422, DecodeTooCostly.code, ("decoding would take more memory than one image may use (a 40 MP 16-bit "
     "PNG or WebP: small on the wire, hundreds of MB decoded)")),
    (422, ExplainUnavailable.code, "/v1/explain on a model that cannot show where it looked (no class activation maps)"),
    (429, RateLimited.code, ("too many photos from this client address: every prediction endpoint shares "
     "one budget, a batch costs its file count (see Retry-After)")),
    (500, HTTP_CODES[500], "a bug; the body carries the request id that the server log has too"),
    (503, "worker_timeout", "the server stopped a request that ran past its worker timeout; retry"),
    (503, Overloaded.code, ("more photo requests are waiting than the server answers soon (CATDOG_MAX_QUEUE): "
     "answered at once, see Retry-After")),
    (503, RateLimitStoreDown.code, ("the rate limit's Redis store is unreachable and "
     "CATDOG_RATE_LIMIT_STORE_DOWN=refuse; see Retry-After")),
)


def status_of(error: CatdogError) -> int:
    """The status for an error: its class's, else the nearest ancestor's, else 500."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


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
    if status >= 500 and status != 503:  # 503s are decisions (overload, a store down), not bugs
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
