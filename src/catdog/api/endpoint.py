"""What an endpoint is, declared once: its routes, its OpenAPI fragment and who may call it.

Every endpoint is a subclass of :class:`Endpoint` (a flask-restful ``Resource``) that says

* ``routes``: the URL rules it answers (Flask syntax, ``/v2/models/<name>``);
* ``open``: True if it needs no API key and is never rate-limited (probes, docs, metrics);
* ``counts_photos``: True if it classifies photos; it then charges each photo to the client's rate
  limit (:func:`catdog.api.security.charge_photos`) and chooses the body types it reads;
* ``operations(ctx)``: its OpenAPI operations by method, with the real limits and labels
  filled in from ``ctx``, plus ``schemas(ctx)`` for any component schema it introduces.

The app registers the classes listed in :data:`catdog.api.app.ENDPOINTS`, the security layer
asks the matched view's class whether it is open and whether it classifies photos, and
:func:`openapi_document` assembles the document from the same classes, so a route cannot
exist without its documentation or its access rule. See docs/architecture.md ("Adding an endpoint").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from flask import current_app, request
from flask_restful import Api, Resource

from catdog import __version__
from catdog.api.errors import ERROR_TABLE
from catdog.config import Settings
from catdog.model.errors import ModelError

if TYPE_CHECKING:
    from catdog.api.dataplane import DataPlane
    from catdog.api.docs import RenderedDocs
    from catdog.api.observability import Metrics
    from catdog.model.engine import Classifier

JSON = dict[str, Any]


@dataclass
class Service:
    """What the endpoints serve from: one per app (so one per gunicorn worker)."""

    settings: Settings
    classifier: Classifier | None
    metrics: Metrics
    model_info: JSON = field(default_factory=dict)
    #: The OpenAPI document and its page, made once the endpoints are known (see create_app).
    docs: RenderedDocs | None = None
    #: The one way from a parsed request to the engine and back (set by create_app).
    plane: DataPlane = field(init=False, repr=False)

    @property
    def model_ref(self) -> JSON:
        return {"name": self.model_info.get("name"), "version": self.model_info.get("version")}

    @property
    def labels(self) -> list[str]:
        return list(self.model_info.get("labels") or [])

    @property
    def engine(self) -> Classifier:
        """The loaded model, for endpoints that classify (create_app always loads one)."""
        if self.classifier is None:
            raise ModelError("The model is not loaded yet.")
        return self.classifier


@dataclass(frozen=True)
class DocContext:
    """What an OpenAPI fragment may state: this server's settings and loaded model."""

    settings: Settings
    model_info: JSON

    @property
    def labels(self) -> list[str]:
        return list(self.model_info.get("labels") or [])

    @property
    def upload_limit(self) -> str:
        return f"{self.settings.max_upload_mb:g} MB"

    @property
    def model_ref(self) -> JSON:
        return {"name": self.model_info.get("name"), "version": self.model_info.get("version")}


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: JSON, description: str, example: Any = None) -> JSON:
    """An OpenAPI response (or body) carried as application/json."""
    content: JSON = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def error_responses(*statuses: int, skip: tuple[str, ...] = (), schema: str = "Error") -> JSON:
    """Error responses for ``statuses``, each listing the codes it can carry (from ERROR_TABLE)."""
    out = {}
    for status in statuses:
        rows = [f"`{code}`: {when}" for s, code, when in ERROR_TABLE if s == status and code not in skip]
        out[str(status)] = json_body(ref(schema), "; ".join(rows) or "an error")
    return out


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/v2/models/<name>`` -> ``/v2/models/{name}``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


class Endpoint(Resource):
    """Base of every endpoint; see the module docstring for what a subclass declares."""

    routes: ClassVar[tuple[str, ...]] = ()
    open: ClassVar[bool] = False
    #: Classifies photos: refused (429) when the client's photo budget is spent, and charges
    #: each photo it reads (see catdog.api.security).
    counts_photos: ClassVar[bool] = False
    tag: ClassVar[str] = "operations"
    #: The component schema of this endpoint's error bodies.
    error_schema: ClassVar[str] = "Error"

    def __init__(self, service: Service):
        self.service = service

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        """``{"get": operation, ...}``, the same for each of ``routes``."""
        raise NotImplementedError(f"{cls.__name__} documents no operations")

    @classmethod
    def paths(cls, ctx: DocContext) -> JSON:
        """OpenAPI path items by path. Override when routes differ (a legacy alias, say)."""
        return {openapi_path(rule): cls.operations(ctx) for rule in cls.routes}

    @classmethod
    def schemas(cls, ctx: DocContext) -> JSON:
        """Component schemas this endpoint introduces (shared ones are in :func:`base_schemas`)."""
        return {}


def _matched_class_says(flag: str) -> bool:
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return bool(getattr(getattr(view, "view_class", None), flag, False))


def is_open_request() -> bool:
    """Does the matched endpoint need no key and no rate limit? (Preflights never do.)"""
    return request.method == "OPTIONS" or _matched_class_says("open")


def is_photo_request() -> bool:
    """Is this a request to classify photos (a POST to an endpoint declared ``counts_photos``)?"""
    return request.method == "POST" and not _matched_class_says("open") and _matched_class_says("counts_photos")


class JsonApi(Api):
    """flask-restful's Api, minus its own error formatting: every error goes to
    :mod:`catdog.api.errors`, so there is exactly one error shape.

    Errors go straight to Flask's handlers. Opting out by re-raising from ``handle_error``
    would leave a reference cycle per error (the exception's traceback holds the router's
    frame, which holds the exception), and with it the view's frames and the upload's bytes
    until Python's cyclic garbage collector runs: memory that climbs under hostile traffic.
    """

    def error_router(self, original_handler, e):
        return original_handler(e)


def add_endpoints(api: Api, service: Service, endpoints: Iterable[type[Endpoint]]) -> None:
    for endpoint in endpoints:
        api.add_resource(endpoint, *endpoint.routes, resource_class_kwargs={"service": service})


# -- the OpenAPI document ------------------------------------------------------------------------


def base_schemas(ctx: DocContext) -> JSON:
    """The schemas several endpoints share."""
    labels = ctx.labels
    return {
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
                "label": {"type": "string", "enum": labels},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                               "description": "probability of the chosen label"},
                "probabilities": {
                    "type": "object",
                    "description": f"probability of each label ({', '.join(labels)}); they sum to 1",
                    "properties": {label: {"type": "number", "minimum": 0, "maximum": 1} for label in labels},
                    "required": labels,
                },
            },
        },
        "ModelRef": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    }


def openapi_document(endpoints: Iterable[type[Endpoint]], ctx: DocContext) -> JSON:
    """The OpenAPI 3.0 document, assembled from the endpoints' own fragments.

    Access rules are added here from each endpoint's ``open`` and ``counts_photos`` flags, so the
    document says exactly what the security layer enforces: open operations get
    ``security: []``; the others list 401 when keys are configured, and 429 when a rate limit
    is and the operation classifies photos (or, with keys, since a wrong key costs a photo).
    """
    settings = ctx.settings
    paths: JSON = {}
    schemas = base_schemas(ctx)
    for endpoint in endpoints:
        items = endpoint.paths(ctx)
        declared = {openapi_path(rule) for rule in endpoint.routes}
        if set(items) != declared:  # a programming error: caught by any test that builds an app
            raise RuntimeError(f"{endpoint.__name__} documents {sorted(items)} but routes {sorted(declared)}")
        for path, item in items.items():
            for operation in item.values():
                operation.setdefault("tags", [endpoint.tag])
                responses = operation["responses"]
                if endpoint.open:
                    operation["security"] = []
                else:
                    if settings.api_keys:
                        responses.update(error_responses(401, schema=endpoint.error_schema))
                    if settings.rate_limit and (settings.api_keys or endpoint.counts_photos):
                        responses.update(error_responses(429, schema=endpoint.error_schema))
            paths[path] = item
        schemas.update(endpoint.schemas(ctx))
    document: JSON = {
        "openapi": "3.0.3",
        "info": {
            "title": "catdog API",
            "version": __version__,
            "description": (
                "Tell what animal a photo shows. Every error is JSON "
                '`{"error": {"code": ..., "message": ...}}` (under `/v2`, the Open Inference '
                'Protocol\'s `{"error": "code: message"}`), and every response has an '
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
    return document
