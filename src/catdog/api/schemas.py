"""Response bodies and the OpenAPI 3 document that describes them.

The builders here are the only code that shapes a response, and the OpenAPI document
is written next to them so the two are read (and changed) together. The document is
built once per app from the settings and the loaded model, so the limits and labels
it states are the ones the server enforces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from catdog import __version__
from catdog.api.errors import ERROR_TABLE, TooManyFiles, error_body
from catdog.config import Settings
from catdog.model.engine import Prediction
from catdog.model.errors import CatdogError, EmptyFile, TruncatedImage

# -- response bodies ---------------------------------------------------------------------------


def prediction_body(prediction: Prediction, model: dict, elapsed_ms: float) -> dict:
    """``/predict``: the prediction plus which model made it and how long the server took."""
    return {**prediction.to_dict(), "model": model, "elapsed_ms": round(elapsed_ms, 2)}


def batch_body(results: Sequence[Prediction | CatdogError], model: dict, elapsed_ms: float) -> dict:
    """``/v1/predict/batch``: one entry per file, in order; a bad file gets an error entry."""
    return {
        "results": [
            r.to_dict() if isinstance(r, Prediction) else error_body(r.code, r.message) for r in results
        ],
        "model": model,
        "elapsed_ms": round(elapsed_ms, 2),
    }


# -- OpenAPI -----------------------------------------------------------------------------------


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str, example: Any = None) -> dict:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def _errors(*statuses: int, skip: tuple[str, ...] = ()) -> dict:
    """Error responses for ``statuses``, each listing the codes it can carry (from ERROR_TABLE)."""
    out = {}
    for status in statuses:
        rows = [f"`{code}`: {when}" for s, code, when in ERROR_TABLE if s == status and code not in skip]
        out[str(status)] = _json(_ref("Error"), "; ".join(rows))
    return out


def openapi_document(settings: Settings, model_info: dict) -> dict:
    """The OpenAPI 3.0 document for this app, with its real limits and labels filled in."""
    labels = model_info.get("labels", ["cat", "dog"])
    mb = f"{settings.max_upload_mb:g} MB"
    model_ref = {"name": model_info.get("name"), "version": model_info.get("version")}
    probabilities = {
        "type": "object",
        "description": f"probability of each label ({', '.join(labels)}); they sum to 1",
        "properties": {label: {"type": "number", "minimum": 0, "maximum": 1} for label in labels},
        "required": list(labels),
    }
    schemas = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "description": "stable, for programs"},
                        "message": {"type": "string", "description": "what was wrong and what to do"},
                        "request_id": {"type": "string", "description": "only on 500: quote it to the operator"},
                    },
                }
            },
        },
        "Prediction": {
            "type": "object",
            "required": ["label", "confidence", "probabilities"],
            "properties": {
                "label": {"type": "string", "enum": list(labels)},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                               "description": "probability of the chosen label"},
                "probabilities": probabilities,
            },
        },
        "ModelRef": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "PredictResponse": {
            "allOf": [
                _ref("Prediction"),
                {
                    "type": "object",
                    "required": ["model", "elapsed_ms"],
                    "properties": {
                        "model": _ref("ModelRef"),
                        "elapsed_ms": {"type": "number", "description": "server time for this request"},
                    },
                },
            ]
        },
        "BatchResponse": {
            "type": "object",
            "required": ["results", "model", "elapsed_ms"],
            "properties": {
                "results": {
                    "type": "array",
                    "description": "one entry per file, in the order sent",
                    "items": {"oneOf": [_ref("Prediction"), _ref("Error")]},
                },
                "model": _ref("ModelRef"),
                "elapsed_ms": {"type": "number"},
            },
        },
        "ModelInfo": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "architecture": {"type": "string"},
                "labels": {"type": "array", "items": {"type": "string"}},
                "input_size": {"type": "integer"},
                "threshold": {"type": "number"},
                "temperature": {"type": "number"},
                "metrics": {"type": "object", "description": "held-out evaluation from the model card"},
                "load_seconds": {"type": "number"},
                "limits": {"type": "object", "properties": {
                    "max_upload_mb": {"type": "number"},
                    "max_batch": {"type": "integer"},
                    "max_pixels": {"type": "integer"},
                }},
            },
        },
        "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    }
    one_photo = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {"image": {"type": "string", "format": "binary",
                                         "description": "a JPEG, PNG, WebP, GIF or BMP photo"}},
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    }
    predict = {
        "summary": "Classify one photo",
        "description": (
            f"Send the photo as multipart field `image`, or as the raw body with an `image/*` "
            f"Content-Type. The format is decided by the bytes, never the file name. Body limit {mb}, "
            f"pixel limit {settings.max_pixels:,}."
        ),
        "requestBody": {"required": True, "content": one_photo},
        "responses": {
            "200": _json(_ref("PredictResponse"), "the prediction", {
                "label": labels[-1], "confidence": 0.987,
                "probabilities": {labels[0]: 0.013, labels[-1]: 0.987},
                "model": model_ref, "elapsed_ms": 9.8,
            }),
            **_errors(400, 401, 413, 415, 422, 429, skip=(TooManyFiles.code,)),
        },
    }
    paths: dict[str, Any] = {
        "/v1/predict": {"post": {**predict, "operationId": "predict", "tags": ["predict"]}},
        "/predict": {"post": {**predict, "operationId": "predictLegacy", "tags": ["predict"],
                              "description": "Same as `/v1/predict` (the original endpoint, kept)."}},
        "/v1/predict/batch": {"post": {
            "operationId": "predictBatch",
            "tags": ["predict"],
            "summary": "Classify several photos in one call",
            "description": (
                f"Repeat the multipart field `images` (at most {settings.max_batch} files, {mb} in all). "
                "A bad file gets an error entry in its slot; the others are still classified."
            ),
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object",
                "required": ["images"],
                "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }}}},
            "responses": {
                "200": _json(_ref("BatchResponse"), "one result per file (bad files get an error entry)"),
                **_errors(400, 401, 413, 429, skip=(EmptyFile.code, TruncatedImage.code)),
            },
        }},
        "/v1/model": {"get": {
            "operationId": "modelInfo", "tags": ["model"], "summary": "The loaded model and its model card",
            "responses": {"200": _json(_ref("ModelInfo"), "name, version, labels, threshold, metrics"),
                          **_errors(401, 429)},
        }},
        "/healthz": {"get": {
            "operationId": "health", "tags": ["operations"], "summary": "Liveness: the process answers",
            "security": [],
            "responses": {"200": _json(_ref("Status"), "alive", {"status": "ok"})},
        }},
        "/readyz": {"get": {
            "operationId": "ready", "tags": ["operations"], "summary": "Readiness: the model is loaded and warm",
            "security": [],
            "responses": {"200": _json(_ref("Status"), "ready", {"status": "ready"}),
                          "503": _json(_ref("Status"), "not ready yet")},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "tags": ["operations"], "summary": "Prometheus metrics", "security": [],
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/": {"get": {
            "operationId": "index", "tags": ["operations"], "summary": "Where the docs are", "security": [],
            "responses": {"200": _json({"type": "object"}, "name, version and links")},
        }},
        "/docs": {"get": {
            "operationId": "docs", "tags": ["operations"], "summary": "This API, as a web page", "security": [],
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["operations"], "summary": "This document", "security": [],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
        }},
    }
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "catdog API",
            "version": __version__,
            "description": (
                "Tell cats from dogs in photos. Every error is JSON "
                '`{"error": {"code": ..., "message": ...}}`, and every response has an '
                "`X-Request-ID` header (send your own to trace a request)."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if settings.api_keys:
        document["components"]["securitySchemes"] = {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        }
        document["security"] = [{"apiKey": []}]
    else:
        for item in paths.values():
            for operation in item.values():
                operation["responses"].pop("401", None)
    return document
