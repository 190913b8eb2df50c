"""What a client can get wrong about a request (not the image in it), each error declaring its
stable ``code``, HTTP ``status`` and ``when`` once (see :class:`catdog.errors.CatdogError`).

No Flask here: the pure v2 codec (:mod:`catdog.api.v2_codec`) raises these too.
:mod:`catdog.api.errors` re-exports them and turns every error into a response.
"""

from __future__ import annotations

from catdog.errors import CatdogError, Unavailable


class RequestError(CatdogError):
    """The request itself is malformed (not the image in it): always the client's fault."""

    code = "bad_request"
    status = 400


class MissingField(RequestError):
    code = "missing_field"
    when = "no file in the expected form field (the message names the fields sent)"

    def __init__(self, field: str, sent: list[str], *, multiple: bool = False):
        files = "one or more files" if multiple else "the photo"
        what = ", ".join(repr(name) for name in sent) if sent else "no form fields"
        super().__init__(
            f"The request has no file in the form field {field!r} (it sent {what}); send {files} "
            f"as multipart/form-data field {field!r}"
            + ("." if multiple else ", or the raw bytes with an image/* Content-Type.")
        )
        self.field, self.sent = field, sent


class MissingFeedbackField(RequestError):
    """A feedback post without one of its required fields (documented with ``missing_field``)."""

    code = "missing_field"

    def __init__(self, message: str):
        super().__init__(message)


class InvalidField(RequestError):
    """A feedback field whose value the API does not take (a label the model does not have, ...)."""

    code = "invalid_field"
    when = "a feedback field with a value the API does not take (a label the model does not have)"

    def __init__(self, field: str, problem: str):
        super().__init__(f"The field {field!r} {problem}.")
        self.field = field


class MalformedForm(RequestError):
    """A form body Werkzeug cannot parse (left silent, it would read as an empty form: a
    misleading "missing field")."""

    code = "malformed_form"
    when = "a form body that cannot be parsed (cut short, wrong boundary, non-UTF-8 names)"

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
    when = "a chunked body whose framing is broken (a chunk size that is not hexadecimal)"

    def __init__(self, problem: str):
        super().__init__(
            f"The request body's chunked framing is broken ({problem[:64]}); "
            "send it again with a standard HTTP client, or with a Content-Length."
        )


class UnsupportedBody(RequestError):
    """A prediction endpoint was sent a body type it does not read (refused before parsing)."""

    code = "unsupported_media_type"
    status = 415
    when = ("a body type the endpoint does not read, refused before parsing (REST: "
            "multipart/form-data or image/*; v2 infer: JSON, or application/octet-stream with"
            " the binary extension)")

    def __init__(self, mimetype: str, how: str):
        sent = f"a {mimetype[:64]} body" if mimetype else "a body without a Content-Type"
        super().__init__(f"The request has {sent}, which this endpoint does not read; send {how}.")


class TooManyFiles(RequestError):
    code = "too_many_files"
    when = "a batch with more files than the limit"

    def __init__(self, count: int, limit: int):
        super().__init__(
            f"The request has {count} files, over the limit of {limit} per batch; "
            "split it into smaller batches."
        )
        self.count, self.limit = count, limit


class InvalidParameter(RequestError):
    code = "invalid_parameter"
    when = "a query parameter with a value the endpoint does not take"

    def __init__(self, name: str, value: str, allowed: tuple[str, ...]):
        super().__init__(f"The query parameter {name}={value[:40]!r} is not valid; use "
                         + " or ".join(f"{name}={a}" for a in allowed) + f", or leave {name} out.")


class InvalidInferenceRequest(RequestError):
    """An Open Inference Protocol (v2) request that does not follow the protocol or this model's
    tensors (one ``image`` input, datatype ``BYTES``, shape ``[N]``)."""

    code = "invalid_inference_request"
    when = "a v2 inference request that breaks the protocol or the model's tensors"


class ModelNotFound(RequestError):
    code = "model_not_found"
    status = 404
    when = "a v2 request names a model this server does not serve"

    def __init__(self, name: str, served: list[str]):
        super().__init__(
            f"There is no model named {name[:80]!r} here; this server serves "
            + " and ".join(repr(n) for n in served) + " (GET /v2/models/<name> describes it)."
        )


class Unauthorized(RequestError):
    code = "unauthorized"
    status = 401
    when = "an API key is required and X-API-Key is missing or wrong"

    def __init__(self, sent_key: bool):
        super().__init__(
            "The API key is not valid; check the X-API-Key header."
            if sent_key
            else "This API needs an API key; send it in the X-API-Key header."
        )


class RateLimited(RequestError):
    """The client has spent its photo budget (CATDOG_RATE_LIMIT) for now."""

    code = "rate_limited"
    status = 429
    when = ("too many photos from this client address: every prediction endpoint shares one "
            "budget, a batch costs its file count (see Retry-After)")

    def __init__(self, limit: str, *, retry_after: int, photos: int = 1, remaining: int = 0):
        asked = f"{photos} photos" if photos > 1 else "a photo"
        super().__init__(
            f"Too many photos from your address (limit {limit}, {remaining} left now, this request "
            f"asked for {asked}); retry after {retry_after} s."
        )
        self.headers = {"Retry-After": str(retry_after)}


class Overloaded(Unavailable):
    """More photo requests are waiting than this instance can answer soon (CATDOG_MAX_QUEUE):
    answered at once instead of queued, so the client (or its load balancer) can go elsewhere.
    Not the client's fault, and not a bug: the API answers it without logging an error."""

    code = "overloaded"
    when = ("more photo requests are waiting than the server answers soon (CATDOG_MAX_QUEUE): answered "
            "at once, see Retry-After")

    def __init__(self, why: str, *, retry_after: int = 1):
        super().__init__(f"The server is busy ({why})", retry_after=retry_after)


class RateLimitStoreDown(Unavailable):
    """The shared rate-limit store (Redis) cannot be reached and CATDOG_RATE_LIMIT_STORE_DOWN=refuse."""

    code = "rate_limit_unavailable"
    when = "the rate limit's Redis store is unreachable and CATDOG_RATE_LIMIT_STORE_DOWN=refuse; see Retry-After"

    def __init__(self, retry_after: int = 5):
        super().__init__("Photo requests cannot be counted against the rate limit right now (its store is "
                         "unreachable), so they are refused", retry_after=retry_after)
