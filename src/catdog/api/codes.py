"""Names both sides of the server share: the Flask app and gunicorn's own answers.

This module imports nothing, so the gunicorn master (:mod:`catdog.api.gunicorn_conf`) and its
worker classes (:mod:`catdog.api.workers`) can use it without loading Flask or
prometheus_client.
"""

from __future__ import annotations

#: The stable ``code`` of each HTTP status answered without an error class of catdog's own:
#: the errors Werkzeug raises (404, 405, 413...) and the answers gunicorn writes itself
#: (an unparseable request, a worker timeout). The one map: :mod:`catdog.api.errors` and
#: :mod:`catdog.api.workers` both read it. 413 and 415 are the codes of
#: ``ImageTooLarge`` and ``UnsupportedBody`` (a test keeps them equal).
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "file_too_large",
    414: "request_line_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "worker_timeout",
}

#: What the docs' error table says of the statuses above that no error class describes.
HTTP_WHEN: dict[int, str] = {
    404: "no endpoint at this path",
    405: "the endpoint exists but not for this method (see the Allow header)",
    408: "the request body did not arrive within the body timeout (a stalled or very slow client)",
    500: "a bug; the body carries the request id that the server log has too",
    503: "the server stopped a request that ran past its worker timeout; retry",
}

#: The variable that turns on prometheus_client's multi-process mode (a directory per server).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
