"""The Open Inference Protocol (KServe "v2", Triton, MLServer) over HTTP/REST.

A KServe, Triton or MLServer client works unchanged: ``GET /v2``, ``/v2/health/live``,
``/v2/health/ready``, ``/v2/models/{name}``, ``/v2/models/{name}/ready`` and
``POST /v2/models/{name}/infer``. The model answers to ``catdog`` and to its own name.

Tensors: input ``image`` (``BYTES``, shape ``[N]``): each element is one photo file,
base64-encoded in a plain JSON request, raw bytes in a request that uses the binary tensor
extension (``Inference-Header-Content-Length``: the JSON header, then the tensors' bytes; a
BYTES tensor is each element's 4-byte little-endian length and its bytes). Outputs ``label``
(``BYTES``, ``[N]``), ``probabilities`` (``FP32``, ``[N, K]`` in the order of the labels the
model metadata lists) and ``sure`` (``BOOL``, ``[N]``, one byte each in binary), as JSON or
binary as the request asks (``binary_data`` per output, or ``binary_data_output`` for all,
which is what ``tritonclient.http`` sends by default).

This module is the endpoints: the wire format itself (parsing the request, bounded JSON,
encoding the outputs) is the pure codec :mod:`catdog.api.v2_codec`, and the photos go
through the data plane (:mod:`catdog.api.dataplane`) as a ``/v1/predict/batch`` does; a bad
photo fails the request (a tensor has no per-element error slot) with the same stable code
as the REST API, in the protocol's error shape (see :func:`catdog.api.errors.v2_error_body`).
"""

from __future__ import annotations

from typing import Any

from flask import Request, Response, request

from catdog import __version__
from catdog.api.endpoint import JSON, DocContext, Endpoint, Service, error_responses, json_body, ref
from catdog.api.errors import ModelNotFound
from catdog.api.uploads import require_body_type
from catdog.api.v2_codec import (
    ALIAS,
    BINARY_TYPE,
    EXTENSIONS,
    HEADER_LENGTH,
    INPUT,
    JSON_TYPE,
    LABEL,
    PROBABILITIES,
    SURE,
    encode_response,
    invalid_request,
    output_tensors,
    read_images,
    requested_outputs,
    split_body,
)
from catdog.model.errors import CatdogError

# -- reading a request -----------------------------------------------------------------------------


def require_infer_body(req: Request) -> None:
    """Refuse (415) an infer body this protocol does not use, before reading it.

    A JSON request, or the binary tensor extension: ``application/octet-stream`` with
    ``Inference-Header-Content-Length``. No Content-Type at all is taken too: that is what
    ``tritonclient.http`` sends, either way. A form body (``curl -d`` without ``-H``) is not.
    """
    binary = HEADER_LENGTH in req.headers
    require_body_type(
        req, lambda mimetype: mimetype in ("", JSON_TYPE) or (mimetype == BINARY_TYPE and binary),
        f"the inference request as {JSON_TYPE} (curl -H 'Content-Type: {JSON_TYPE}'), or with the "
        f"binary tensor extension as {BINARY_TYPE} with an {HEADER_LENGTH} header")


def infer_response(head: JSON, outputs: list[tuple[str, bool]],
                   tensors: dict[str, tuple[str, list[int], Any]]) -> Response:
    """The codec's encoded answer as a Flask response."""
    body, media_type, header_length = encode_response(head, outputs, tensors)
    response = Response(body, mimetype=media_type)
    if header_length is not None:
        response.headers[HEADER_LENGTH] = str(header_length)
    return response


# -- endpoints -------------------------------------------------------------------------------------


def _model_names(service: Service) -> list[str]:
    own = service.model_info.get("name")
    return [ALIAS] + ([own] if own and own != ALIAS else [])


def _check_model(service: Service, name: str) -> None:
    if name not in _model_names(service):
        raise ModelNotFound(name, _model_names(service))


def _is_ready(service: Service) -> bool:
    return service.classifier is not None


def _v2_errors(*statuses: int) -> JSON:
    return error_responses(*statuses, schema="V2Error")


class ServerMetadata(Endpoint):
    """``GET /v2``: who this server is and which protocol extensions it speaks."""

    routes = ("/v2",)
    open = True
    tag = "v2"
    error_schema = "V2Error"

    def get(self) -> JSON:
        return {"name": "catdog", "version": __version__, "extensions": EXTENSIONS}

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "v2ServerMetadata", "summary": "Open Inference Protocol: server metadata",
            "responses": {"200": json_body(ref("V2ServerMetadata"), "name, version, extensions",
                                           {"name": "catdog", "version": __version__, "extensions": EXTENSIONS})},
        }}

    @classmethod
    def schemas(cls, ctx: DocContext) -> JSON:
        tensor = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
            "name": {"type": "string"}, "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "parameters": {"type": "object"},
        }}
        return {
            "V2Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string", "description": "`code: message`, as the protocol's error"},
                "code": {"type": "string", "description": "the same stable code as the REST API's"},
            }},
            "V2ServerMetadata": {"type": "object", "properties": {
                "name": {"type": "string"}, "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            }},
            "V2Tensor": tensor,
            "V2ModelMetadata": {"type": "object", "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": ref("V2Tensor")},
                "outputs": {"type": "array", "items": ref("V2Tensor")},
                "parameters": {"type": "object", "description": "`labels` (the order of `probabilities`), "
                               "`aliases` and `max_batch_size`"},
            }},
        }


class ServerLive(Endpoint):
    """``GET /v2/health/live``."""

    routes = ("/v2/health/live",)
    open = True
    tag = "v2"
    error_schema = "V2Error"

    def get(self) -> JSON:
        return {"live": True}

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "v2Live", "summary": "Open Inference Protocol: liveness",
            "responses": {"200": json_body({"type": "object"}, "alive", {"live": True})},
        }}


class ServerReady(Endpoint):
    """``GET /v2/health/ready``: 200 once the model is loaded, else 503."""

    routes = ("/v2/health/ready",)
    open = True
    tag = "v2"
    error_schema = "V2Error"

    def get(self) -> Any:
        ready = _is_ready(self.service)
        return {"ready": ready}, 200 if ready else 503

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "v2Ready", "summary": "Open Inference Protocol: readiness",
            "responses": {"200": json_body({"type": "object"}, "ready", {"ready": True}),
                          "503": json_body({"type": "object"}, "not ready yet", {"ready": False})},
        }}


class ModelMetadata(Endpoint):
    """``GET /v2/models/<name>``: the model's tensors, and its labels in probability order."""

    routes = ("/v2/models/<name>",)
    tag = "v2"
    error_schema = "V2Error"

    def get(self, name: str) -> JSON:
        service = self.service
        _check_model(service, name)
        info = service.model_info
        return {
            "name": info.get("name"),
            "versions": [str(info.get("version"))],
            "platform": service.engine.platform,
            "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": LABEL, "datatype": "BYTES", "shape": [-1]},
                {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, len(service.labels)]},
                {"name": SURE, "datatype": "BOOL", "shape": [-1]},
            ],
            "parameters": {
                "labels": service.labels,
                "aliases": _model_names(service),
                "max_batch_size": service.settings.max_batch,
            },
        }

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "v2ModelMetadata", "summary": "Open Inference Protocol: model metadata",
            "description": f"`name` is `{ALIAS}` or the model's own name ({ctx.model_info.get('name')}). "
                           f"`parameters.labels` ({', '.join(ctx.labels)}) is the order of `probabilities`.",
            "parameters": [_NAME_PARAMETER],
            "responses": {"200": json_body(ref("V2ModelMetadata"), "the model's tensors"),
                          **_v2_errors(404)},
        }}


class ModelReady(Endpoint):
    """``GET /v2/models/<name>/ready``."""

    routes = ("/v2/models/<name>/ready",)
    tag = "v2"
    error_schema = "V2Error"

    def get(self, name: str) -> Any:
        _check_model(self.service, name)
        ready = _is_ready(self.service)
        return {"name": name, "ready": ready}, 200 if ready else 503

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        return {"get": {
            "operationId": "v2ModelReady", "summary": "Open Inference Protocol: model readiness",
            "parameters": [_NAME_PARAMETER],
            "responses": {"200": json_body({"type": "object"}, "ready", {"name": ALIAS, "ready": True}),
                          **_v2_errors(404)},
        }}


class ModelInfer(Endpoint):
    """``POST /v2/models/<name>/infer``: classify the photos of input ``image``."""

    routes = ("/v2/models/<name>/infer",)
    tag = "v2"
    counts_photos = True
    error_schema = "V2Error"

    def post(self, name: str) -> Response:
        service = self.service
        _check_model(service, name)
        if request.content_encoding:
            raise invalid_request(f"Compressed requests (Content-Encoding: {request.content_encoding[:20]}) are not "
                           "accepted; send the request uncompressed.")
        require_infer_body(request)
        head, binary = split_body(request.get_data(cache=False), request.headers.get(HEADER_LENGTH))
        photos = read_images(head, binary, service.settings.max_batch)
        outputs = requested_outputs(head)
        # N photos cost N, as a /v1/predict/batch of N does, before any is decoded.
        results = service.plane.classify(photos, files=len(photos), size=sum(map(len, photos)),
                                         binary=bool(binary))
        predictions = []
        for index, result in enumerate(results):
            if isinstance(result, CatdogError):
                # A tensor has no slot for one element's error: the request fails, naming the photo.
                result.message = f"Element {index} of input 'image': {result.message}"
                raise result
            predictions.append(result)
        response_head: JSON = {"model_name": service.model_info.get("name"),
                               "model_version": str(service.model_info.get("version"))}
        if isinstance(head.get("id"), str):
            response_head["id"] = head["id"]
        response_head["parameters"] = {"elapsed_ms": service.plane.elapsed_ms()}
        return infer_response(response_head, outputs, output_tensors(predictions, service.labels))

    @classmethod
    def operations(cls, ctx: DocContext) -> JSON:
        labels = ", ".join(ctx.labels)
        return {"post": {
            "operationId": "v2Infer",
            "summary": "Open Inference Protocol: classify photos",
            "description": (
                "Input `image`, datatype `BYTES`, shape `[N]` (N at most "
                f"{ctx.settings.max_batch}): each element one photo file, base64-encoded in a JSON "
                f"request, raw in a binary-extension request (`{HEADER_LENGTH}`). Outputs `label` (`BYTES`, "
                f"`[N]`), `probabilities` (`FP32`, `[N, K]`, columns in label order: {labels}) and `sure` "
                "(`BOOL`, `[N]`: false when another label is more probable than the answer or the answer "
                "is under the model's level for being sure). "
                "A bad photo fails the request with the REST API's code, naming the element."
                + (f" Each photo counts against the rate limit ({ctx.settings.rate_limit} per client), as in "
                   "a REST batch." if ctx.settings.rate_limit else "")
            ),
            "parameters": [_NAME_PARAMETER],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"type": "array", "items": ref("V2Tensor")},
                    "outputs": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "parameters": {"type": "object"}}}},
                }}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                                        "description": f"the JSON header ({HEADER_LENGTH} "
                                                                       "bytes), then the binary tensors"}},
            }},
            "responses": {
                "200": json_body({"type": "object", "properties": {
                    "model_name": {"type": "string"}, "model_version": {"type": "string"},
                    "id": {"type": "string"}, "outputs": {"type": "array", "items": ref("V2Tensor")},
                }}, "the outputs (binary ones after the JSON header when asked)"),
                **_v2_errors(400, 404, 408, 413, 415, 422),
            },
        }}


_NAME_PARAMETER: JSON = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                         "description": f"`{ALIAS}` or the model's own name"}

ENDPOINTS: tuple[type[Endpoint], ...] = (
    ServerMetadata, ServerLive, ServerReady, ModelMetadata, ModelReady, ModelInfer,
)
