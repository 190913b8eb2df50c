"""A small, typed HTTP client for the catdog REST API (used by the web UI; no Streamlit here).

Every failure, whatever its cause (API not running, too slow, an error answer, a
proxy's HTML page), becomes one exception type, :class:`ApiError`, whose message
can be shown to a person as it is. Callers never see ``requests`` exceptions.

>>> client = ApiClient("http://localhost:8000", timeout=15)     # doctest: +SKIP
>>> client.classify(open("cat.jpg", "rb").read(), "cat.jpg", "image/jpeg")  # doctest: +SKIP
Classification(label='cat', confidence=0.998, probabilities={'cat': 0.998, 'dog': 0.002}, ...)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import requests

#: Most files sent in one ``/v1/predict/batch`` request (the API's default limit is 32).
BATCH_FILES = 16
#: Most bytes of image data in one batch request (the API's default body limit is 10 MB).
BATCH_BYTES = 8 * 1024 * 1024
#: Seconds a readiness probe may take: the sidebar must not hang on a stuck API.
PROBE_TIMEOUT = 5.0
#: Header that carries the API key (``CATDOG_API_KEY``) when the API requires one.
API_KEY_HEADER = "X-API-Key"
#: Answers that blame one file (bad image, too large, too many pixels), not the API.
FILE_ERROR_STATUSES = frozenset({400, 413, 415, 422})
#: Answers (without a catdog error body) that mean the API is away: proxy errors, not ready.
OFFLINE_STATUSES = frozenset({502, 503, 504})
#: Batch-request answers that may depend on how many files went together: retry in halves.
SPLIT_STATUSES = frozenset({400, 413})


class ApiError(Exception):
    """Anything that went wrong talking to the API; ``message`` is written for people.

    ``status`` is the HTTP status when the API answered (None when it could not be
    reached or the error is about one file of a batch); ``code`` is the API's stable
    error code (``"not_an_image"``, ...) when it sent one.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str | None = None,
        *,
        offline: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        #: The API is away (not running, restarting, stuck, or its proxy says it is down):
        #: nothing is wrong with the photos, and trying again later may work.
        self.offline = offline

    def __repr__(self) -> str:
        return f"ApiError({self.message!r}, status={self.status!r}, code={self.code!r})"


@dataclass(frozen=True)
class ApiStatus:
    """What ``GET /readyz`` says: can the API classify photos right now?"""

    url: str
    ready: bool
    reachable: bool
    message: str


@dataclass(frozen=True)
class ModelInfo:
    """The served model's card, from ``GET /v1/model``."""

    name: str
    version: str
    labels: tuple[str, ...] = ()
    accuracy: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: The limits the API enforces (``limits`` in ``/v1/model``), when it reports them.
    max_upload_mb: float | None = None
    max_pixels: int | None = None


@dataclass(frozen=True)
class Classification:
    """The API's answer for one photo."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    elapsed_ms: float | None = None

    def probability(self, label: str) -> float:
        return float(self.probabilities.get(label, 0.0))


class Upload(NamedTuple):
    """One file to classify, as the browser gave it."""

    data: bytes
    filename: str
    content_type: str


class ApiClient:
    """Talks to one catdog API at ``base_url``; every request waits at most ``timeout`` seconds."""

    def __init__(self, base_url: str, timeout: float = 15.0, api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {API_KEY_HEADER: api_key} if api_key else {}

    # -- public calls -------------------------------------------------------------------------

    def health(self) -> ApiStatus:
        """Readiness from ``/readyz``; never raises, because "down" is an answer here."""
        try:
            body = self._json("GET", "/readyz", timeout=min(self.timeout, PROBE_TIMEOUT))
        except ApiError as exc:
            return ApiStatus(
                self.base_url, ready=False, reachable=exc.status is not None, message=exc.message
            )
        return ApiStatus(
            self.base_url, ready=True, reachable=True, message=str(body.get("status", "ready"))
        )

    def model_info(self) -> ModelInfo | None:
        """The served model's card, or None if the API has no model to describe (404/503)."""
        try:
            body = self._json("GET", "/v1/model")
        except ApiError as exc:
            if exc.status in (404, 503):
                return None
            raise
        try:
            limits = body.get("limits") or {}
            return ModelInfo(
                name=str(body["name"]),
                version=str(body["version"]),
                labels=tuple(str(label) for label in body.get("labels") or ()),
                accuracy=_find_accuracy(body.get("metrics") or {}),
                metrics=dict(body.get("metrics") or {}),
                max_upload_mb=float(limits["max_upload_mb"]) if "max_upload_mb" in limits else None,
                max_pixels=int(limits["max_pixels"]) if "max_pixels" in limits else None,
            )
        except (KeyError, TypeError, ValueError):
            raise self._unexpected("/v1/model") from None

    def classify(self, data: bytes, filename: str, content_type: str) -> Classification:
        """One photo through ``POST /predict`` (multipart field ``image``)."""
        body = self._json("POST", "/predict", files={"image": (filename, data, content_type)})
        return self._classification(body, "/predict")

    def classify_many(
        self, uploads: Sequence[Upload | tuple[bytes, str, str]]
    ) -> list[Classification | ApiError]:
        """Several photos; one result per upload, in order: a classification or that file's error.

        Files travel through ``/v1/predict/batch`` in chunks (one request and one model
        batch per chunk is much faster than a request per file); a lone file goes to
        ``/predict``. A chunk the API refuses as a whole (too big, too many files) is
        retried in halves, so a single oversized photo ends up with its own error.

        Raises :class:`ApiError` for problems that are not about a file (API down,
        timeout, server error, rate limit, auth).
        """
        files = [Upload(*item) for item in uploads]
        results: list[Classification | ApiError] = []
        for chunk in _chunks(files, BATCH_FILES, BATCH_BYTES):
            results.extend(self._classify_chunk(chunk))
        return results

    # -- internals ----------------------------------------------------------------------------

    def _classify_chunk(self, chunk: list[Upload]) -> list[Classification | ApiError]:
        if len(chunk) == 1:
            try:
                return [self.classify(*chunk[0])]
            except ApiError as exc:
                if exc.status in FILE_ERROR_STATUSES:
                    return [exc]
                raise
        files = [("images", (u.filename, u.data, u.content_type)) for u in chunk]
        try:
            body = self._json("POST", "/v1/predict/batch", files=files)
        except ApiError as exc:
            if exc.status in SPLIT_STATUSES:
                half = len(chunk) // 2
                return self._classify_chunk(chunk[:half]) + self._classify_chunk(chunk[half:])
            raise
        items = body.get("results")
        if not isinstance(items, list) or len(items) != len(chunk):
            raise self._unexpected("/v1/predict/batch")
        return [self._batch_item(item) for item in items]

    def _batch_item(self, item: Any) -> Classification | ApiError:
        if isinstance(item, dict) and isinstance(item.get("error"), dict):
            error = item["error"]
            return ApiError(
                str(error.get("message") or "The API could not classify this file."),
                code=error.get("code"),
            )
        return self._classification(item, "/v1/predict/batch")

    def _classification(self, body: Any, path: str) -> Classification:
        try:
            return Classification(
                label=str(body["label"]),
                confidence=float(body["confidence"]),
                probabilities={str(k): float(v) for k, v in body["probabilities"].items()},
                elapsed_ms=float(body["elapsed_ms"])
                if body.get("elapsed_ms") is not None
                else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._unexpected(path) from None

    def _json(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """One request: its JSON object, or raise :class:`ApiError` with a readable message."""
        url = self.base_url + path
        timeout = timeout or self.timeout
        try:
            response = requests.request(
                method, url, timeout=timeout, headers=self.headers, **kwargs
            )
        except requests.Timeout:
            raise ApiError(
                f"The catdog API at {self.base_url} did not answer within {timeout:g} s. "
                "It may be busy or stuck; try again, or raise CATDOG_API_TIMEOUT.",
                offline=True,
            ) from None
        except requests.ConnectionError:
            raise ApiError(
                f"The catdog API is not reachable at {self.base_url}; start it with `catdog serve` "
                "(or run the whole app with `catdog up`), or set CATDOG_API_URL to where it runs.",
                offline=True,
            ) from None
        except requests.RequestException as exc:
            raise ApiError(
                f"Could not send the request to the catdog API at {url}: {exc}"
            ) from None

        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok:
            if not isinstance(body, dict):
                raise self._unexpected(path)
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            raise ApiError(
                str(error["message"]),
                status=response.status_code,
                code=error.get("code"),
                offline=response.status_code in OFFLINE_STATUSES,
            )
        reason = f"{response.status_code} {response.reason or ''}".strip()
        raise ApiError(
            f"The server at {self.base_url} answered HTTP {reason} without a catdog error message"
            + (
                " (it is failing or overloaded; try again in a moment)."
                if response.status_code >= 500
                else "; is CATDOG_API_URL pointing at the catdog API?"
            ),
            status=response.status_code,
            offline=response.status_code in OFFLINE_STATUSES,
        )

    def _unexpected(self, path: str) -> ApiError:
        return ApiError(
            f"The server at {self.base_url} sent an answer to {path} that catdog does not "
            "understand; "
            "is CATDOG_API_URL pointing at the catdog API, and are the UI and API the same version?"
        )


def _find_accuracy(metrics: dict[str, Any]) -> float | None:
    """A model card's headline accuracy: the validation split's (data the model never saw
    during training or selection), else top-level, else the first split with one."""
    splits = [value for value in metrics.values() if isinstance(value, dict)]
    val = metrics.get("val")
    candidates = ([val] if isinstance(val, dict) else []) + [metrics] + splits
    for candidate in candidates:
        value = candidate.get("accuracy")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _chunks(uploads: list[Upload], max_files: int, max_bytes: int) -> Iterator[list[Upload]]:
    """Consecutive groups of at most ``max_files`` uploads and ``max_bytes`` (or one big file)."""
    chunk: list[Upload] = []
    size = 0
    for upload in uploads:
        if chunk and (len(chunk) >= max_files or size + len(upload.data) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(upload)
        size += len(upload.data)
    if chunk:
        yield chunk
