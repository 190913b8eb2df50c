"""The REST API's own endpoints (``/v1/...``, ``/predict``) and the probes.

Each resource gets the app's :class:`~catdog.api.endpoint.Service` through
``resource_class_kwargs``, so a request touches no globals and reads no settings:
everything it needs was prepared once when the app was created. Each one also carries
its OpenAPI fragment (see :mod:`catdog.api.endpoint`); the response builders below are
the only code that shapes these responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Request, request

from catdog.api.endpoint import JSON, DocContext, Endpoint, error_responses, json_body, ref
from catdog.api.errors import InvalidParameter, MissingField, TooManyFiles, error_body
from catdog.api.overload import queue_status
from catdog.api.security import rate_limit_status
from catdog.api.uploads import require_upload_body
from catdog.model.errors import (
    SUPPORTED_FORMATS_TEXT,
    BatchBudgetExceeded,
    BatchDeadlineExceeded,
    CatdogError,
    EmptyFile,
    NotAnImage,
    TruncatedImage,
    UnsupportedFormat,
)
from catdog.prediction import Prediction

#: At most this many sent field names are echoed back in a missing-field message.
_MAX_NAMES = 8

#: Codes only a batch answers with (the per-file budget and deadline are entries in its 200).
BATCH_ONLY = (TooManyFiles.code, BatchBudgetExceeded.code, BatchDeadlineExceeded.code)
#: Codes a batch gives per file in its 200, never as the request's status.
PER_FILE = (EmptyFile.code, TruncatedImage.code, NotAnImage.code, UnsupportedFormat.code,
            BatchBudgetExceeded.code, BatchDeadlineExceeded.code)

# -- request and response bodies ---------------------------------------------------------------


def _sent_fields(req: Request) -> list[str]:
    names = list(dict.fromkeys([*req.files.keys(), *req.form.keys()]))
    return [name[:40] for name in names[:_MAX_NAMES]]


def read_one_upload(req: Request) -> tuple[bytes, str]:
    """The photo's bytes and declared type: a raw ``image/*`` body, else multipart ``image``."""
    require_upload_body(req)
    if req.mimetype.startswith("image/"):
        return req.get_data(cache=False), req.mimetype
    upload = req.files.get("image")
    if upload is None:
        raise MissingField("image", _sent_fields(req))
    return upload.read(), upload.mimetype or ""


def prediction_body(prediction: Prediction, model: JSON, elapsed_ms: float) -> JSON:
    """``/predict``: the prediction plus which model made it and how long the server took."""
    return {**prediction.to_dict(), "model": model, "elapsed_ms": round(elapsed_ms, 2)}


def batch_body(results: Sequence[Prediction | CatdogError], model: JSON, elapsed_ms: float) -> JSON:
    """``/v1/predict/batch``: one entry per file, in order; a bad file gets an error entry."""
    return {
        "results": [
            r.to_dict() if isinstance(r, Prediction) else error_body(r.code, r.message) for r in results
        ],
        "model": model,
        "elapsed_ms": round(elapsed_ms, 2),
    }


# -- endpoints ---------------------------------------------------------------------------------


class UploadImage(Endpoint):
    """``POST /predict`` and ``/v1/predict``: one photo in, one prediction out."""

    routes = ("/v1/predict", "/predict")
    tag = "predict"
    counts_photos = True

    def post(self) -> JSON:
        data, content_type = read_one_upload(request)
        plane = self.service.plane
        prediction = plane.classify_one(data, size=len(data), type=content_type[:64])
        return prediction_body(prediction, plane.model, plane.elapsed_ms())

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        labels = ctx.labels
        example_probabilities = {label: round(0.987 if i == 0 else 0.013 / max(len(labels) - 1, 1), 3)
                                 for i, label in enumerate(labels)}
        return {"post": {
            "operationId": "predict",
            "summary": "Classify one photo",
            "description": (
                f"Send the photo as multipart field `image`, or as the raw body with an `image/*` "
                f"Content-Type. The format is decided by the bytes, never the file name. Body limit "
                f"{ctx.upload_limit}, pixel limit {ctx.settings.max_pixels:,}."
            ),
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {"image": {"type": "string", "format": "binary",
                                             "description": SUPPORTED_FORMATS_TEXT}},
                }},
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            }},
            "responses": {
                "200": json_body(ref("PredictResponse"), "the prediction", {
                    "label": labels[0] if labels else "cat", "confidence": 0.987,
                    "probabilities": example_probabilities, "model": ctx.model_ref, "elapsed_ms": 9.8,
                }),
                **error_responses(400, 408, 413, 415, 422, skip=BATCH_ONLY),
            },
        }}

    @classmethod
    def paths(cls, ctx: DocContext) -> JSON:
        legacy = cls.operations(ctx)["post"] | {
            "operationId": "predictLegacy",
            "description": "Same as `/v1/predict` (the original endpoint, kept).",
        }
        return {"/v1/predict": cls.operations(ctx), "/predict": {"post": legacy}}

    @classmethod
    def schemas(cls, ctx: DocContext) -> JSON:
        return {"PredictResponse": {"allOf": [
            ref("Prediction"),
            {
                "type": "object",
                "required": ["model", "elapsed_ms"],
                "properties": {
                    "model": ref("ModelRef"),
                    "elapsed_ms": {"type": "number", "description": "server time for this request"},
                },
            },
        ]}}


class Explain(Endpoint):
    """``POST /v1/explain``: the prediction plus a heatmap of where the model looked."""

    routes = ("/v1/explain",)
    tag = "predict"
    counts_photos = True
    #: The overlay PNG's longer side at most (a phone photo's full size would be megabytes of base64).
    overlay_max_side = 1024
    overlays = ("png",)

    def post(self) -> JSON:
        overlay = request.args.get("overlay")
        if overlay is not None and overlay not in self.overlays:
            raise InvalidParameter("overlay", overlay, self.overlays)
        data, content_type = read_one_upload(request)
        plane = self.service.plane
        body = plane.explain(data, overlay_side=self.overlay_max_side if overlay else None,
                             size=len(data), type=content_type[:64])
        return {**body, "model": plane.model, "elapsed_ms": plane.elapsed_ms()}

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        predict = UploadImage.operations(ctx)["post"]
        label = ctx.labels[0] if ctx.labels else "cat"
        return {"post": {
            "operationId": "explain",
            "summary": "Classify one photo and show where the model looked",
            "description": (
                "Same inputs as `/v1/predict`. The answer also carries `heatmap`: a grid of non-negative "
                "values (strongest cell 1) laid over the **whole photo as uploaded** (after EXIF "
                "orientation), 32 cells on its longer side, 0 outside the model's centre crop, so it can "
                "be stretched onto the photo as is. It is the class activation map of the answer's label "
                "(for the catch-all label, what made the model say it). `?overlay=png` adds the photo "
                f"(longer side at most {cls.overlay_max_side} px) with the heatmap blended on top, as "
                "base64 PNG. A model without class activation maps (a Keras or generic ONNX file) "
                "answers 422 `explain_unavailable`."
            ),
            "parameters": [{
                "name": "overlay", "in": "query", "required": False,
                "description": "`png`: add the photo with the heatmap blended on top (base64 PNG)",
                "schema": {"type": "string", "enum": list(cls.overlays)},
            }],
            "requestBody": predict["requestBody"],
            "responses": {
                "200": json_body(ref("ExplainResponse"), "the prediction and where the model looked", {
                    "label": label, "confidence": 0.987, "probabilities": {lb: 0.0 for lb in ctx.labels},
                    "heatmap": {"label": label, "rows": 2, "cols": 3, "values": [[0.0, 0.8, 0.1], [0.0, 1.0, 0.2]]},
                    "model": ctx.model_ref, "elapsed_ms": 10.4,
                }),
                **error_responses(400, 408, 413, 415, 422, skip=BATCH_ONLY),
            },
        }}

    @classmethod
    def schemas(cls, ctx: DocContext) -> JSON:
        return {"ExplainResponse": {"allOf": [
            ref("PredictResponse"),
            {
                "type": "object",
                "required": ["heatmap"],
                "properties": {
                    "heatmap": {
                        "type": "object",
                        "required": ["label", "rows", "cols", "values"],
                        "properties": {
                            "label": {"type": "string", "description": "the label whose map this is (the answer)"},
                            "rows": {"type": "integer", "minimum": 1},
                            "cols": {"type": "integer", "minimum": 1},
                            "values": {"type": "array", "description": "rows lists of cols numbers in [0, 1], "
                                       "top row first", "items": {"type": "array", "items": {
                                           "type": "number", "minimum": 0, "maximum": 1}}},
                            "box": {"type": "array", "minItems": 4, "maxItems": 4,
                                    "description": "the square the model looked at: [left, top, right, "
                                    "bottom] as fractions of the photo's width and height",
                                    "items": {"type": "number", "minimum": 0, "maximum": 1}},
                        },
                    },
                    "overlay": {
                        "type": "object",
                        "description": "only with ?overlay=png",
                        "required": ["media_type", "width", "height", "data"],
                        "properties": {
                            "media_type": {"type": "string", "enum": ["image/png"]},
                            "width": {"type": "integer"},
                            "height": {"type": "integer"},
                            "data": {"type": "string", "format": "byte", "description": "base64 PNG"},
                        },
                    },
                },
            },
        ]}}


class BatchPredict(Endpoint):
    """``POST /v1/predict/batch``: several photos, one model call, a result or an error per file."""

    routes = ("/v1/predict/batch",)
    tag = "predict"
    counts_photos = True

    def post(self) -> JSON:
        require_upload_body(request, raw_image=False)
        uploads = request.files.getlist("images")
        if not uploads:
            raise MissingField("images", _sent_fields(request), multiple=True)
        max_batch = self.service.settings.max_batch
        if len(uploads) > max_batch:
            raise TooManyFiles(len(uploads), max_batch)
        blobs = [upload.read() for upload in uploads]
        plane = self.service.plane
        results = plane.classify(blobs, files=len(blobs), size=sum(map(len, blobs)))
        return batch_body(results, plane.model, plane.elapsed_ms())

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"post": {
            "operationId": "predictBatch",
            "summary": "Classify several photos in one call",
            "description": (
                f"Repeat the multipart field `images` (at most {ctx.settings.max_batch} files, "
                f"{ctx.upload_limit} in all). A bad file gets an error entry in its slot; the others "
                "are still classified."
            ),
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object",
                "required": ["images"],
                "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }}}},
            "responses": {
                "200": json_body(ref("BatchResponse"), "one result per file (bad files get an error entry)"),
                **error_responses(400, 408, 413, 415, skip=PER_FILE),
            },
        }}

    @classmethod
    def schemas(cls, ctx: DocContext) -> JSON:
        return {"BatchResponse": {
            "type": "object",
            "required": ["results", "model", "elapsed_ms"],
            "properties": {
                "results": {
                    "type": "array",
                    "description": "one entry per file, in the order sent",
                    "items": {"oneOf": [ref("Prediction"), ref("Error")]},
                },
                "model": ref("ModelRef"),
                "elapsed_ms": {"type": "number"},
            },
        }}


class ModelInfo(Endpoint):
    """``GET /v1/model``: the model card and the limits this server enforces."""

    routes = ("/v1/model",)
    tag = "model"

    def get(self) -> JSON:
        classifier = self.service.classifier
        if classifier is not None and classifier.cascade is not None:  # live counts, not load time's
            return {**self.service.model_info, "cascade": classifier.cascade.info()}
        return self.service.model_info

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "modelInfo",
            "summary": "The loaded model, its model card and this server's limits",
            "responses": {"200": json_body(ref("ModelInfo"), "name, version, labels, threshold, metrics, limits")},
        }}

    @classmethod
    def schemas(cls, ctx: DocContext) -> JSON:
        return {"ModelInfo": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "architecture": {"type": "string"},
                "labels": {"type": "array", "items": {"type": "string"},
                           "description": "every label the model can answer, in order"},
                "input_size": {"type": "integer"},
                "threshold": {"type": "number"},
                "temperature": {"type": "number"},
                "metrics": {"type": "object", "description": "held-out evaluation from the model card"},
                "cascade": {
                    "type": "object", "nullable": True,
                    "description": "a cascade model: its fast model's name, the hand-off probability and "
                                   "how many photos each model answered in this worker since it started",
                    "properties": {"fast": {"type": "string"}, "handoff": {"type": "number"},
                                   "fast_answers": {"type": "integer"}, "slow_answers": {"type": "integer"}},
                },
                "load_seconds": {"type": "number"},
                "limits": {"type": "object", "properties": {
                    "max_upload_mb": {"type": "number"},
                    "max_batch": {"type": "integer",
                                  "description": "most files per /v1/predict/batch call (and per v2 request)"},
                    "max_pixels": {"type": "integer"},
                }},
            },
        }}


class Health(Endpoint):
    """``GET /healthz``: the process is alive (no model work: probes must be cheap)."""

    routes = ("/healthz",)
    open = True

    def get(self) -> JSON:
        return {"status": "ok"}

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "health", "summary": "Liveness: the process answers",
            "responses": {"200": json_body(ref("Status"), "alive", {"status": "ok"})},
        }}


class Ready(Endpoint):
    """``GET /readyz``: the model is loaded and warmed up, so requests will be fast."""

    routes = ("/readyz",)
    open = True

    def get(self) -> Any:
        if self.service.classifier is None:
            return {"status": "not_ready", "message": "The model is not loaded yet."}, 503
        return {"status": "ready", "model": self.service.model_ref,
                "load_seconds": self.service.model_info.get("load_seconds"),
                # Informational: readiness stays 200 under overload and with the limit store down.
                "queue": queue_status(), "rate_limit_store": rate_limit_status()}

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "ready", "summary": "Readiness: the model is loaded and warm",
            "responses": {"200": json_body(ref("Status"), "ready", {"status": "ready"}),
                          "503": json_body(ref("Status"), "not ready yet")},
        }}


ENDPOINTS: tuple[type[Endpoint], ...] = (UploadImage, Explain, BatchPredict, ModelInfo, Health, Ready)
