"""A Python client for the catdog REST API, built on a ``requests.Session``.

>>> from catdog.client import Client
>>> with Client("http://localhost:8000") as api:             # doctest: +SKIP
...     api.classify("cat.jpg")
Prediction(label='cat', confidence=0.998, probabilities={...})
...     api.classify_many(["a.jpg", "b.png", "notes.pdf"])    # one result per photo, in order
[Prediction(...), Prediction(...), APIError('not_an_image', ...)]

* A photo is a path, ``bytes``, a binary file object or a PIL image.
* Results are :class:`catdog.prediction.Prediction`, the type the engine returns; the labels
  are the server's (``Client.model().labels``), never assumed.
* :meth:`Client.classify_many` sends ``/v1/predict/batch`` requests no larger than the limits
  the server advertises at ``/v1/model`` (files per batch and body size), keeps the input
  order, and puts an :class:`APIError` in the slot of a photo that failed instead of raising.
* Connection errors, 429 and 503 are retried with exponential backoff, honouring the
  server's ``Retry-After`` (urllib3's ``Retry`` on the session's adapter).
* Every failure is an :class:`APIError` carrying the API's stable ``code``, the HTTP
  ``status``, the ``message`` written for people, the ``request_id`` and ``Retry-After``.

Importing this module loads neither numpy nor ONNX Runtime.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import mimetypes
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from catdog.prediction import Prediction

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

__all__ = ["APIConnectionError", "APIError", "Client", "ExplainResult", "Limits", "ModelInfo", "Photo", "ServerStatus",
           "UnexpectedResponse"]

#: What a photo can be: a path, its bytes, a binary file object, a PIL image, or a
#: ``(file name, bytes)`` pair (the name is only shown in the server's logs).
Photo = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], tuple[str, bytes], Any]

API_KEY_HEADER = "X-API-Key"
REQUEST_ID_HEADER = "X-Request-ID"
#: Statuses worth retrying: the server asked us to slow down, or is briefly unavailable.
RETRY_STATUSES = frozenset({429, 503})
#: Statuses that mean the service is away (its proxy says so, or it is not ready), not that
#: anything is wrong with the request.
OFFLINE_STATUSES = frozenset({502, 503, 504})
#: Room left in each batch request for the multipart framing around the photos.
_FORM_OVERHEAD = 64 * 1024
_PER_FILE_OVERHEAD = 512
#: Seconds a status probe may take: a dashboard must not hang on a stuck server.
PROBE_TIMEOUT = 5.0


class APIError(Exception):
    """Anything that went wrong talking to the API.

    ``code`` is the API's stable error code (``"not_an_image"``, ``"rate_limited"``, ...);
    ``status`` the HTTP status (None if no answer came); ``message`` is written for people;
    ``request_id`` is the server's id for the request (quote it to the operator);
    ``retry_after`` the seconds the server asked to wait; ``details`` the error object as sent.
    """

    def __init__(self, message: str, *, code: str, status: int | None = None,
                 request_id: str | None = None, retry_after: float | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.details = details or {}

    @property
    def offline(self) -> bool:
        """The service is away (no answer, or a 502/503/504): trying again later may work."""
        return self.status in OFFLINE_STATUSES

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, status={self.status!r})"


class APIConnectionError(APIError):
    """No answer: the server is not reachable, or did not answer in time (after the retries)."""

    @property
    def offline(self) -> bool:
        return True


class UnexpectedResponse(APIError):
    """An answer that is not the catdog API's (a proxy's error page, another service): code
    ``http_error`` (an error status without a catdog error body) or ``unexpected_response``."""


@dataclass(frozen=True)
class ServerStatus:
    """What ``GET /readyz`` says: can the server classify photos right now?"""

    url: str
    ready: bool
    reachable: bool
    message: str


@dataclass(frozen=True)
class Limits:
    """What the server accepts (``/v1/model`` -> ``limits``)."""

    max_batch: int = 16
    max_upload_mb: float = 10.0
    max_pixels: int | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


@dataclass(frozen=True)
class ModelInfo:
    """The served model, from ``GET /v1/model`` (``raw`` has everything the server sent)."""

    name: str
    version: str
    labels: tuple[str, ...]
    limits: Limits
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        """The model card's headline accuracy: the validation split's (photos the model never
        saw during training or selection), else top-level, else the first split with one."""
        splits = [value for value in self.metrics.values() if isinstance(value, dict)]
        val = self.metrics.get("val")
        for candidate in ([val] if isinstance(val, dict) else []) + [self.metrics] + splits:
            value = candidate.get("accuracy")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None


@dataclass(frozen=True)
class ExplainResult:
    """What ``POST /v1/explain`` says: the prediction, where the model looked for its answer
    (``heatmap``: rows of non-negative values over the whole photo, 0 outside the model's crop)
    and, when asked for, the photo with the heatmap blended on top as PNG bytes. ``box`` is the
    square the model looked at (left, top, right, bottom, fractions of the photo), if the
    server says."""

    prediction: Prediction
    label: str
    heatmap: tuple[tuple[float, ...], ...]
    overlay_png: bytes | None = None
    box: tuple[float, ...] | None = None


@dataclass(frozen=True)
class _Upload:
    name: str
    data: bytes


class Client:
    """One catdog API at ``url``. Each request waits at most ``timeout`` seconds; failed ones are
    retried up to ``retries`` times (connection errors, 429, 503) with exponential ``backoff``."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0, *,
                 retries: int = 3, backoff: float = 0.5, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        if api_key:
            self.session.headers[API_KEY_HEADER] = api_key
        retry = Retry(
            total=retries, connect=retries, status=retries,
            read=min(retries, 1),  # a dropped keep-alive connection, once; not a slow server again
            other=0, redirect=0,
            allowed_methods=frozenset({"GET", "POST"}),  # classification is idempotent
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff, backoff_max=10.0,
            respect_retry_after_header=True,
            raise_on_status=False,  # the last 429/503 comes back, so its code reaches the caller
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._model: ModelInfo | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- public calls ------------------------------------------------------------------------------

    def classify(self, photo: Photo) -> Prediction:
        """One photo through ``POST /v1/predict``. Raises :class:`APIError` (OSError for a path
        that cannot be read)."""
        upload = _upload(photo)
        body = self._request("POST", "/v1/predict", files={"image": _file_part(upload)})
        return self._prediction(body, "/v1/predict")

    def explain(self, photo: Photo, *, overlay: bool = False) -> ExplainResult:
        """One photo through ``POST /v1/explain`` (``overlay=True``: also the overlay PNG).
        Raises :class:`APIError`, with code ``explain_unavailable`` for a model that cannot."""
        upload = _upload(photo)
        path = "/v1/explain"
        body = self._request("POST", path, params={"overlay": "png"} if overlay else None,
                             files={"image": _file_part(upload)})
        try:
            heatmap = body["heatmap"]
            values = tuple(tuple(float(v) for v in row) for row in heatmap["values"])
            png = base64.b64decode(body["overlay"]["data"], validate=True) if overlay else None
            box = tuple(float(v) for v in heatmap["box"]) if heatmap.get("box") else None
            return ExplainResult(Prediction.from_dict(body), str(heatmap["label"]), values, png, box)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            raise self._unexpected(path, body) from None

    def classify_many(self, photos: Sequence[Photo]) -> list[Prediction | APIError]:
        """One result per photo, in order: its :class:`Prediction` or its :class:`APIError`.

        Photos travel through ``/v1/predict/batch`` in chunks within the server's limits.
        Raises :class:`APIError` only for problems that are not about one photo (server down,
        authentication, rate limit after the retries, a server error).
        """
        results: list[Prediction | APIError | None] = [None] * len(photos)
        pending: list[tuple[int, _Upload]] = []
        for index, photo in enumerate(photos):
            try:
                pending.append((index, _upload(photo)))
            except OSError as exc:
                results[index] = APIError(f"Cannot read the file: {exc.strerror or exc}.",
                                          code="unreadable_file")
        limits = self.model().limits if pending else Limits()
        for chunk in _chunks(pending, limits):
            for (index, _), result in zip(chunk, self._classify_chunk([u for _, u in chunk])):
                results[index] = result
        return results  # type: ignore[return-value]  # every slot is filled

    def feedback(self, *, answer: str, correct: str, image: bytes | None = None, sha256: str | None = None,
                 probabilities: dict[str, float] | None = None, model: str | None = None,
                 version: str | None = None) -> dict:
        """Tell the service what a photo really shows (``POST /v1/feedback``); returns its JSON
        (``id``, ``status`` "created" or "updated", ``sha256``, ...).

        ``answer`` is the label the service gave, ``correct`` the one the person chose (both among
        ``model().labels``). Send ``image`` (the photo's bytes, exactly as classified) only when the
        person agreed to share it, else ``sha256`` (the SHA-256 hex digest of those bytes). The
        same photo and model version posted again updates the entry instead of adding one.
        Raises :class:`APIError` (``invalid_field``, ``missing_field``, an image error for a bad photo...).
        """
        if image is None and not sha256:
            raise ValueError("give the photo (image=..., when the person shares it) or its sha256")
        fields: dict[str, str] = {"answer": answer, "correct": correct}
        if sha256:
            fields["sha256"] = sha256
        if probabilities is not None:
            fields["probabilities"] = json.dumps(probabilities)
        if model is not None:
            fields["model"] = model
        if version is not None:
            fields["version"] = version
        # Always multipart: each field a part without a file name; the photo a file part.
        parts: list[tuple[str, tuple[str | None, Any, str | None]]] = [
            (name, (None, value, None)) for name, value in fields.items()]
        if image is not None:
            parts.append(("image", ("photo", bytes(image), "application/octet-stream")))
        return self._request("POST", "/v1/feedback", files=parts)

    def feedback_summary(self) -> dict:
        """Counts of people's corrections by model version, answer and correction
        (``GET /v1/feedback/summary``)."""
        return self._request("GET", "/v1/feedback/summary")

    def delete_feedback(self, entry_id: int) -> dict:
        """Delete one feedback entry and its photo (``DELETE /v1/feedback/<id>``, an operator action);
        :class:`APIError` ``feedback_not_found`` if there is none."""
        return self._request("DELETE", f"/v1/feedback/{int(entry_id)}")

    def model(self, *, refresh: bool = False) -> ModelInfo:
        """The served model and the server's limits (``GET /v1/model``), fetched once."""
        if self._model is None or refresh:
            body = self._request("GET", "/v1/model")
            try:
                limits = body.get("limits") or {}
                self._model = ModelInfo(
                    name=str(body["name"]),
                    version=str(body["version"]),
                    labels=tuple(str(label) for label in body["labels"]),
                    limits=Limits(
                        max_batch=int(limits.get("max_batch", Limits.max_batch)),
                        max_upload_mb=float(limits.get("max_upload_mb", Limits.max_upload_mb)),
                        max_pixels=limits.get("max_pixels"),
                    ),
                    metrics=dict(body.get("metrics") or {}),
                    raw=body,
                )
            except (KeyError, TypeError, ValueError):
                raise self._unexpected("/v1/model", body) from None
        return self._model

    def status(self) -> ServerStatus:
        """Readiness from ``/readyz``, in one quick attempt; never raises ("down" is an answer)."""
        timeout = min(self.timeout, PROBE_TIMEOUT)
        try:
            # Not through the session: a probe is one attempt, without the retries.
            response = requests.get(self.url + "/readyz", headers=dict(self.session.headers), timeout=timeout)
            body = self._body(response, "/readyz")
        except APIError as exc:
            return ServerStatus(self.url, ready=False, reachable=exc.status is not None, message=exc.message)
        except requests.RequestException as exc:
            error = self._connection_error(exc, timeout)
            return ServerStatus(self.url, ready=False, reachable=False, message=error.message)
        return ServerStatus(self.url, ready=True, reachable=True, message=str(body.get("status", "ready")))

    # -- internals ---------------------------------------------------------------------------------

    def _classify_chunk(self, chunk: list[_Upload]) -> list[Prediction | APIError]:
        files = [("images", _file_part(upload)) for upload in chunk]
        try:
            body = self._request("POST", "/v1/predict/batch", files=files)
        except APIError as exc:
            if exc.status != 413:
                raise
            if len(chunk) == 1:  # that photo alone is over the body limit
                return [exc]
            half = len(chunk) // 2  # framing pushed it over: try in halves
            return self._classify_chunk(chunk[:half]) + self._classify_chunk(chunk[half:])
        items = body.get("results")
        if not isinstance(items, list) or len(items) != len(chunk):
            raise self._unexpected("/v1/predict/batch", body)
        return [self._batch_item(item, body) for item in items]

    def _batch_item(self, item: Any, body: dict[str, Any]) -> Prediction | APIError:
        error = item.get("error") if isinstance(item, dict) else None
        if isinstance(error, dict):
            return APIError(str(error.get("message") or "The API could not classify this photo."),
                            code=str(error.get("code") or "error"), details=error)
        return self._prediction(item, "/v1/predict/batch")

    def _prediction(self, body: Any, path: str) -> Prediction:
        try:
            return Prediction.from_dict(body)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._unexpected(path, body) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise self._connection_error(exc, self.timeout) from exc
        return self._body(response, path)

    def _body(self, response: requests.Response, path: str) -> dict[str, Any]:
        """The JSON object of a success, else the :class:`APIError` the response describes."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok:
            if not isinstance(body, dict):
                raise self._unexpected(path, body)
            return body
        request_id = response.headers.get(REQUEST_ID_HEADER)
        retry_after = _seconds(response.headers.get("Retry-After"))
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            raise APIError(str(error["message"]), code=str(error.get("code") or "error"),
                           status=response.status_code, request_id=error.get("request_id") or request_id,
                           retry_after=retry_after, details=error)
        reason = f"{response.status_code} {response.reason or ''}".strip()
        raise UnexpectedResponse(
            f"The server at {self.url} answered HTTP {reason} without a catdog error"
            + (" (it is failing or overloaded; try again in a moment)." if response.status_code >= 500
               else "; is this the catdog API's address?"),
            code="http_error", status=response.status_code, request_id=request_id,
            retry_after=retry_after,
        )

    def _connection_error(self, exc: requests.RequestException, timeout: float) -> APIConnectionError:
        # After the retries, requests reports a read timeout as a ConnectionError around urllib3's.
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(exc, requests.ReadTimeout) or isinstance(reason, ReadTimeoutError):
            return APIConnectionError(
                f"The catdog API at {self.url} did not answer within {timeout:g} s; it may be busy "
                "or stuck. Try again, or allow a longer timeout.", code="timeout")
        if isinstance(exc, (requests.ConnectionError, requests.ConnectTimeout)):
            return APIConnectionError(
                f"The catdog API is not reachable at {self.url}; is it running (catdog serve), "
                "and is this its address?", code="unreachable")
        return APIConnectionError(f"Could not send the request to {self.url}: {exc}", code="request_failed")

    def _unexpected(self, path: str, body: Any) -> APIError:
        return UnexpectedResponse(
            f"The server at {self.url} sent an answer to {path} that this client does not understand; "
            "is this the catdog API, and are the client and server the same version?",
            code="unexpected_response", details={"body": body} if body is not None else None,
        )


# -- photos ----------------------------------------------------------------------------------------


def _upload(photo: Photo) -> _Upload:
    """The bytes (and a name for the form) of any kind of photo. Raises OSError, TypeError."""
    if isinstance(photo, (bytes, bytearray, memoryview)):
        return _Upload("photo", bytes(photo))
    if isinstance(photo, tuple) and len(photo) == 2 and isinstance(photo[1], (bytes, bytearray)):
        return _Upload(Path(str(photo[0])).name or "photo", bytes(photo[1]))
    if isinstance(photo, (str, os.PathLike)):
        path = Path(photo)
        return _Upload(path.name, path.read_bytes())
    if _is_pil_image(photo):
        return _Upload("photo.png", _png(photo))
    read = getattr(photo, "read", None)
    if callable(read):
        data = read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("the file object must be opened in binary mode ('rb')")
        return _Upload(Path(str(getattr(photo, "name", "photo"))).name or "photo", bytes(data))
    raise TypeError("a photo is a path, bytes, a binary file object, a PIL image or a (name, bytes) pair, "
                    f"not {type(photo).__name__}")


def _is_pil_image(photo: object) -> bool:
    # Only if PIL is already loaded: an object cannot be a PIL image otherwise.
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(photo, module.Image)


def _png(image: Any) -> bytes:
    """A PIL image as PNG (lossless, so the server sees exactly these pixels)."""
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _file_part(upload: _Upload) -> tuple[str, bytes, str]:
    return upload.name, upload.data, mimetypes.guess_type(upload.name)[0] or "application/octet-stream"


def _chunks(items: list[tuple[int, _Upload]], limits: Limits) -> Iterator[list[tuple[int, _Upload]]]:
    """Consecutive groups within the server's file count and body size (a lone big file goes alone)."""
    budget = max(limits.max_upload_bytes - _FORM_OVERHEAD, 1)
    chunk: list[tuple[int, _Upload]] = []
    size = 0
    for item in items:
        cost = len(item[1].data) + _PER_FILE_OVERHEAD
        if chunk and (len(chunk) >= limits.max_batch or size + cost > budget):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += cost
    if chunk:
        yield chunk


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: urllib3 already honoured it when retrying
