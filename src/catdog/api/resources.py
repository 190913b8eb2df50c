"""The API's endpoints as flask-restful Resources.

Each resource gets the app's :class:`Service` through ``resource_class_kwargs``, so a
request touches no globals and reads no settings: everything it needs was prepared
once when the app was created.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import Request, request
from flask_restful import Api, Resource

from catdog.api.errors import MissingField, TooManyFiles
from catdog.api.observability import Metrics, annotate
from catdog.api.schemas import batch_body, prediction_body
from catdog.api.security import charge_photos
from catdog.api.uploads import require_upload_body
from catdog.config import Settings
from catdog.model.decode import BatchBudget
from catdog.model.engine import Classifier, Prediction

#: At most this many sent field names are echoed back in a missing-field message.
_MAX_NAMES = 8


@dataclass
class Service:
    """What the endpoints serve from: one per app (so one per gunicorn worker)."""

    settings: Settings
    classifier: Classifier | None
    metrics: Metrics
    model_info: dict = field(default_factory=dict)

    @property
    def model_ref(self) -> dict:
        return {"name": self.model_info.get("name"), "version": self.model_info.get("version")}


def _sent_fields(req: Request) -> list[str]:
    names = list(dict.fromkeys([*req.files.keys(), *req.form.keys()]))
    return [name[:40] for name in names[:_MAX_NAMES]]


def read_one_upload(req: Request) -> tuple[bytes, str]:
    """The photo's bytes and declared type: a raw ``image/*`` body, else multipart ``image``."""
    require_upload_body(req)
    charge_photos(1)
    if req.mimetype.startswith("image/"):
        return req.get_data(cache=False), req.mimetype
    upload = req.files.get("image")
    if upload is None:
        raise MissingField("image", _sent_fields(req))
    return upload.read(), upload.mimetype


class ServiceResource(Resource):
    def __init__(self, service: Service):
        self.service = service


class UploadImage(ServiceResource):
    """``POST /predict`` and ``/v1/predict``: one photo in, one prediction out."""

    def post(self):
        started = time.perf_counter()
        data, content_type = read_one_upload(request)
        annotate(size=len(data), type=content_type[:64])
        prediction = self.service.classifier.predict(data)
        self.service.metrics.predictions.labels(prediction.label).inc()
        annotate(label=prediction.label)
        return prediction_body(prediction, self.service.model_ref, (time.perf_counter() - started) * 1000)


class BatchPredict(ServiceResource):
    """``POST /v1/predict/batch``: several photos, one model call, a result or an error per file."""

    def post(self):
        started = time.perf_counter()
        require_upload_body(request, raw_image=False)
        uploads = request.files.getlist("images")
        if not uploads:
            raise MissingField("images", _sent_fields(request), multiple=True)
        settings = self.service.settings
        if len(uploads) > settings.max_batch:
            raise TooManyFiles(len(uploads), settings.max_batch)
        charge_photos(len(uploads))  # a batch of 8 costs 8, before any is decoded
        blobs = [upload.read() for upload in uploads]
        budget = BatchBudget(settings.batch_decode_bytes, settings.batch_seconds)
        results = self.service.classifier.predict_batch(blobs, return_errors=True, budget=budget)
        labels = [r.label for r in results if isinstance(r, Prediction)]
        for label in labels:
            self.service.metrics.predictions.labels(label).inc()
        annotate(files=len(blobs), size=sum(map(len, blobs)), errors=len(blobs) - len(labels))
        return batch_body(results, self.service.model_ref, (time.perf_counter() - started) * 1000)


class ModelInfo(ServiceResource):
    """``GET /v1/model``: the model card and the limits this server enforces."""

    def get(self):
        return self.service.model_info


class Health(ServiceResource):
    """``GET /healthz``: the process is alive (no model work: probes must be cheap)."""

    def get(self):
        return {"status": "ok"}


class Ready(ServiceResource):
    """``GET /readyz``: the model is loaded and warmed up, so requests will be fast."""

    def get(self):
        if self.service.classifier is None:
            return {"status": "not_ready", "message": "The model is not loaded yet."}, 503
        return {"status": "ready", "model": self.service.model_ref,
                "load_seconds": self.service.model_info.get("load_seconds")}


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


def add_resources(api: Api, service: Service) -> None:
    kwargs = {"resource_class_kwargs": {"service": service}}
    api.add_resource(UploadImage, "/predict", "/v1/predict", **kwargs)
    api.add_resource(BatchPredict, "/v1/predict/batch", **kwargs)
    api.add_resource(ModelInfo, "/v1/model", **kwargs)
    api.add_resource(Health, "/healthz", **kwargs)
    api.add_resource(Ready, "/readyz", **kwargs)
