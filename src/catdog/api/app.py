"""The application factory: one Flask app, one loaded model, per process.

Nothing here runs at import time. ``create_app`` reads the settings (from the
environment unless given), loads the model once, and wires the pieces, each of
which lives in its own module: endpoints (resources, v2, observability, docs), errors,
security.
Under gunicorn each worker calls it after the fork, so each has its own ONNX
Runtime session.
"""

from __future__ import annotations

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from catdog.api import docs, feedback, observability, resources, v2
from catdog.api.dataplane import DataPlane
from catdog.api.docs import RenderedDocs
from catdog.api.endpoint import (
    DocContext,
    Endpoint,
    JsonApi,
    Service,
    add_endpoints,
    openapi_document,
)
from catdog.api.errors import register_error_handlers
from catdog.api.observability import Metrics, configure_logging, init_observability
from catdog.api.security import init_security
from catdog.api.uploads import READ_TIMEOUT_KEY, UploadRequest
from catdog.config import Settings
from catdog.model.engine import Classifier

#: Every endpoint of the app, in the order the docs list them. Each class declares its own
#: routes, OpenAPI fragment and access (see catdog.api.endpoint); nothing else lists routes.
ENDPOINTS: tuple[type[Endpoint], ...] = (
    *resources.ENDPOINTS, *feedback.ENDPOINTS, *v2.ENDPOINTS, *observability.ENDPOINTS, *docs.ENDPOINTS,
)


def create_app(settings: Settings | None = None, *, classifier: Classifier | None = None) -> Flask:
    """Build the API.

    ``classifier`` lets tests share one loaded model between many apps; when it is
    given, ``settings.model``, ``threads`` and ``max_pixels`` are not used to load one.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    if classifier is None:
        # One intra-op thread unless told otherwise: a server runs one process per core.
        classifier = Classifier.from_settings(settings, threads=settings.threads or 1)

    app = Flask(__name__, static_folder=None)
    app.request_class = UploadRequest  # uploads stay in memory; unparseable forms are errors
    # Werkzeug refuses a larger body (413) from its Content-Length, before reading it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.config[READ_TIMEOUT_KEY] = settings.read_timeout  # read by UploadRequest.stream
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False  # bodies keep the order they are written in
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]

    metrics = Metrics.create()
    metrics.model_load_seconds.set(classifier.load_seconds)
    if classifier.cascade is not None:
        metrics.record_cascade(classifier.cascade.counts(), baseline=True)
    model_info = {key: value for key, value in classifier.info().items() if key != "file"}
    model_info["limits"] = {
        "max_upload_mb": settings.max_upload_mb,
        "max_batch": settings.max_batch,
        "max_pixels": classifier.max_pixels,
    }
    service = Service(settings=settings, classifier=classifier, metrics=metrics, model_info=model_info)
    service.plane = DataPlane(service)
    app.extensions["catdog"] = service

    # Order matters: the request id exists before anything can fail, security runs before the views.
    init_observability(app, metrics)
    init_security(app, settings)
    register_error_handlers(app)
    feedback.init_feedback(app, service)  # the store opens on the first feedback request
    add_endpoints(JsonApi(app), service, ENDPOINTS)
    service.docs = RenderedDocs.of(openapi_document(ENDPOINTS, DocContext(settings, model_info)))
    return app
