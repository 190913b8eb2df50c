"""People's corrections over HTTP: ``POST /v1/feedback``, ``GET /v1/feedback/summary``,
``DELETE /v1/feedback/<id>`` (docs/feedback.md).

The same rules as the prediction endpoints: an API key when keys are configured, the photo rate
limit (a post costs one photo, with or without the photo: it is a database write), the upload
limit, JSON errors from :mod:`catdog.api.errors`. The data plane
(:meth:`catdog.api.dataplane.DataPlane.admit_feedback`) charges the post and decodes a shared
photo under the same budgets as a prediction before anything is stored, so the database only
ever holds photos the service could have classified. The store (:mod:`catdog.feedback.store`)
opens on the first feedback request of each worker; the prediction endpoints never touch it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, request
from prometheus_client import Counter

from catdog.api.endpoint import JSON, DocContext, Endpoint, Service, error_responses, json_body, ref
from catdog.api.observability import annotate
from catdog.api.request_errors import InvalidField, MissingFeedbackField
from catdog.api.uploads import MULTIPART, require_body_type
from catdog.feedback import LABEL_LENGTH, MODEL_NAME_LENGTH, VERSION_LENGTH
from catdog.feedback.errors import FeedbackNotFound

if TYPE_CHECKING:
    from catdog.feedback.store import FeedbackStore

FORM = "application/x-www-form-urlencoded"
EXTENSION_KEY = "catdog_feedback"
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Longest ``probabilities`` text read: a JSON object of one number per label is far shorter.
MAX_PROBABILITIES_TEXT = 4096
#: Pillow's format names (what decoding found in the bytes) as stored.
_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


class FeedbackService:
    """The app's feedback store (opened on first use, once per worker) and its metric."""

    def __init__(self, service: Service):
        self.settings = service.settings
        self.counter = Counter(
            "catdog_feedback", "Corrections people sent (POST /v1/feedback), by the service's answer, "
            "their correction, and whether they differ", ["answer", "correct", "corrected"],
            registry=service.metrics.registry,
        )
        self._store: FeedbackStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> FeedbackStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from catdog.feedback.store import FeedbackStore

                    self._store = FeedbackStore.open(self.settings)
        return self._store


def init_feedback(app: Flask, service: Service) -> None:
    """Give ``app`` its feedback service (nothing opens until a feedback request comes)."""
    app.extensions[EXTENSION_KEY] = FeedbackService(service)


def feedback_service() -> FeedbackService:
    return current_app.extensions[EXTENSION_KEY]


# -- reading a post ------------------------------------------------------------------------------


def _text(form: Any, name: str, *, limit: int, required: bool = False) -> str:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise MissingFeedbackField(f"The request has no field {name!r}; send it as a form field.")
        return ""
    value = value.strip()
    if len(value) > limit:
        raise InvalidField(name, f"is {len(value)} characters long, over the limit of {limit}")
    if not value.isprintable():
        raise InvalidField(name, "has control characters; send plain text")
    return value


def _label(form: Any, name: str, labels: list[str]) -> str:
    value = _text(form, name, limit=LABEL_LENGTH, required=True)
    if value not in labels:
        raise InvalidField(name, f"is {value[:40]!r}, which is not one of the model's labels; use "
                                 + " or ".join(repr(label) for label in labels))
    return value


def _probabilities(form: Any, labels: list[str]) -> dict[str, float] | None:
    raw = form.get("probabilities")
    if raw is None or raw.strip() == "":
        return None
    how = ('is not a JSON object of each label\'s probability, like {"' + '": 0.9, "'.join(labels[:2]) + '": 0.1}')
    if len(raw) > MAX_PROBABILITIES_TEXT:
        raise InvalidField("probabilities", f"is {len(raw)} characters long; one number per label needs far "
                                            f"fewer than {MAX_PROBABILITIES_TEXT}")
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidField("probabilities", how) from None
    if not isinstance(parsed, dict) or not parsed:
        raise InvalidField("probabilities", how)
    out: dict[str, float] = {}
    for label, value in parsed.items():
        if label not in labels:
            raise InvalidField("probabilities", f"names {str(label)[:40]!r}, which is not one of the model's "
                                                "labels (" + ", ".join(labels) + ")")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 \
                or math.isnan(value):
            raise InvalidField("probabilities", f"gives {label!r} the value {str(value)[:20]}; each "
                                                "probability is a number from 0 to 1")
        out[label] = float(value)
    return out


def photo_format(data: bytes) -> str:
    """The format of a photo the data plane decoded ("jpeg", "png", ...), from its header."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return _FORMATS.get(image.format or "", "jpeg")


def read_post(service: Service):
    """The :class:`~catdog.feedback.store.Item` a ``POST /v1/feedback`` describes, validated."""
    from catdog.feedback.store import Item

    form = request.form
    labels = list(service.engine.recipe.labels)  # every label, "other" too even in a closed world
    answer = _label(form, "answer", labels)
    correct = _label(form, "correct", labels)
    upload = request.files.get("image")
    sent_hash = _text(form, "sha256", limit=64).lower()
    if sent_hash and not _SHA256.fullmatch(sent_hash):
        raise InvalidField("sha256", "is not a SHA-256 hash (64 hexadecimal digits)")
    photo: bytes | None = None
    if upload is not None:
        photo = upload.read()
        digest = hashlib.sha256(photo).hexdigest()
        if sent_hash and sent_hash != digest:
            raise InvalidField("sha256", "does not match the photo sent with it; send either, or the "
                                         "SHA-256 of exactly these bytes")
        sent_hash = digest
    elif not sent_hash:
        raise MissingFeedbackField(
            "The request has neither the photo (file field 'image', when the person shares it) nor its "
            "hash (field 'sha256': the SHA-256 of the photo's bytes, when they do not); send one.")
    model = _text(form, "model", limit=MODEL_NAME_LENGTH) or str(service.model_ref.get("name") or "")
    version = _text(form, "version", limit=VERSION_LENGTH) or str(service.model_ref.get("version") or "")
    return Item(sha256=sent_hash, answer=answer, correct=correct, model=model, version=version,
                probabilities=_probabilities(form, labels), photo=photo)


# -- endpoints -----------------------------------------------------------------------------------


class FeedbackPost(Endpoint):
    """``POST /v1/feedback``: a person says what the photo really shows."""

    routes = ("/v1/feedback",)
    tag = "feedback"
    counts_photos = True  # one photo of the client's budget per post: a database write, maybe a decode

    def post(self) -> Any:
        require_body_type(request, lambda mimetype: mimetype in (MULTIPART, FORM),
                          "the fields as multipart/form-data (curl -F answer=dog -F correct=cat -F image=@photo.jpg)")
        item = read_post(self.service)
        # Charged like a photo, and a shared photo decoded under the prediction's budgets (the
        # same errors), before anything is stored.
        self.service.plane.admit_feedback(item.photo, size=len(item.photo or b""), shared=item.photo is not None)
        if item.photo is not None:
            item = replace(item, photo_format=photo_format(item.photo))
        feedback = feedback_service()
        recorded = feedback.store.record(item)
        corrected = item.answer != item.correct
        feedback.counter.labels(item.answer, item.correct, "true" if corrected else "false").inc()
        annotate(feedback=recorded.id, answer=item.answer, correct=item.correct)
        body = {
            "id": recorded.id,
            "status": "created" if recorded.created else "updated",
            "sha256": item.sha256,
            "model": {"name": item.model, "version": item.version},
            "answer": item.answer,
            "correct": item.correct,
            "photo_stored": item.photo is not None,
        }
        return body, 201 if recorded.created else 200

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        labels = ctx.labels
        label_schema = {"type": "string", "enum": labels}
        example = {"id": 42, "status": "created", "sha256": "9f86d0...", "model": ctx.model_ref,
                   "answer": labels[1] if len(labels) > 1 else "dog", "correct": labels[0] if labels else "cat",
                   "photo_stored": True}
        return {"post": {
            "operationId": "feedback",
            "summary": "Say what a photo really shows (\"Wrong answer?\")",
            "description": (
                "Send `answer` (the label the service gave) and `correct` (the label the person chose), and "
                "either the photo itself as file field `image` (only when the person agreed to share it: it "
                "is decoded under the same limits as a prediction, then kept as sent) or `sha256`, the "
                "SHA-256 of the photo's bytes (when they did not). Optional: `probabilities` (the answer's, "
                "as a JSON object), `model` and `version` (default: this server's model). One entry per "
                "photo hash and model version: posting again for the same pair updates its correction and "
                "its photo (a post without the photo withdraws one shared before) and answers 200. No "
                f"client address is stored. Costs one photo of the rate limit; body limit {ctx.upload_limit}."
            ),
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object",
                "required": ["answer", "correct"],
                "properties": {
                    "answer": label_schema | {"description": "the label the service answered"},
                    "correct": label_schema | {"description": "the label the person chose"},
                    "image": {"type": "string", "format": "binary",
                              "description": "the photo, byte for byte as classified (when shared)"},
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                               "description": "SHA-256 of the photo's bytes (when not shared)"},
                    "probabilities": {"type": "string",
                                      "description": "JSON object of the answer's probabilities by label"},
                    "model": {"type": "string", "maxLength": MODEL_NAME_LENGTH},
                    "version": {"type": "string", "maxLength": VERSION_LENGTH},
                },
            }}}},
            "responses": {
                "201": json_body(ref("FeedbackResponse"), "stored", example),
                "200": json_body(ref("FeedbackResponse"), "the entry for this photo and model version, updated",
                                 example | {"status": "updated"}),
                **error_responses(400, 408, 413, 415, 422, skip=("too_many_files", "batch_budget_exceeded",
                                                                 "batch_deadline_exceeded")),
            },
        }}

    @classmethod
    def schemas(cls, ctx: DocContext) -> JSON:
        return {"FeedbackResponse": {
            "type": "object",
            "required": ["id", "status", "sha256", "model", "answer", "correct", "photo_stored"],
            "properties": {
                "id": {"type": "integer", "description": "the entry's id (DELETE /v1/feedback/{id})"},
                "status": {"type": "string", "enum": ["created", "updated"]},
                "sha256": {"type": "string"},
                "model": ref("ModelRef"),
                "answer": {"type": "string"},
                "correct": {"type": "string"},
                "photo_stored": {"type": "boolean"},
            },
        }}


class FeedbackSummary(Endpoint):
    """``GET /v1/feedback/summary``: counts by model version, answer and correction."""

    routes = ("/v1/feedback/summary",)
    tag = "feedback"

    def get(self) -> JSON:
        return feedback_service().store.summary()

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "feedbackSummary",
            "summary": "How often people corrected each model version, and to what",
            "responses": {"200": json_body(ref("FeedbackSummary"), "counts by model version, answer and correction", {
                "total": 3, "corrected": 2, "photos": 1,
                "by_version": [{**ctx.model_ref, "model": ctx.model_ref.get("name"), "total": 3, "corrected": 2,
                                "photos": 1, "counts": [{"answer": "dog", "correct": "cat", "count": 2},
                                                        {"answer": "dog", "correct": "dog", "count": 1}]}],
            })},
        }}

    @classmethod
    def schemas(cls, ctx: DocContext) -> JSON:
        count = {"type": "integer", "minimum": 0}
        return {"FeedbackSummary": {
            "type": "object",
            "required": ["total", "corrected", "photos", "by_version"],
            "properties": {
                "total": count | {"description": "entries stored"},
                "corrected": count | {"description": "entries whose correction differs from the answer"},
                "photos": count | {"description": "entries with a shared photo"},
                "by_version": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"}, "version": {"type": "string"},
                        "total": count, "corrected": count, "photos": count,
                        "counts": {"type": "array", "items": {"type": "object", "properties": {
                            "answer": {"type": "string"}, "correct": {"type": "string"}, "count": count}}},
                    },
                }},
            },
        }}


class FeedbackEntry(Endpoint):
    """``DELETE /v1/feedback/<id>``: an operator removes one entry and its photo."""

    # Any segment, not <int:...>: an id that is not a number is "no such entry" (404 in the API's
    # shape), and the key check comes first for every path under it.
    routes = ("/v1/feedback/<entry_id>",)
    tag = "feedback"

    def delete(self, entry_id: str) -> JSON:
        number = int(entry_id) if entry_id.isascii() and entry_id.isdigit() and len(entry_id) < 19 else -1
        if number < 0:
            raise FeedbackNotFound(repr(entry_id[:20]))
        feedback_service().store.delete(number)
        annotate(feedback_deleted=number)
        return {"deleted": number}

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"delete": {
            "operationId": "feedbackDelete",
            "summary": "Delete one feedback entry and its photo (an operator action)",
            "description": "Needs an API key when keys are configured, like every call but the probes and docs.",
            "parameters": [{"name": "entry_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {
                "200": json_body({"type": "object", "properties": {"deleted": {"type": "integer"}}}, "deleted",
                                 {"deleted": 42}),
                **error_responses(404),
            },
        }}


ENDPOINTS: tuple[type[Endpoint], ...] = (FeedbackPost, FeedbackSummary, FeedbackEntry)
