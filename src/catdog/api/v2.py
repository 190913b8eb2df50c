"""The Open Inference Protocol (KServe "v2", Triton, MLServer) over HTTP/REST.

A KServe, Triton or MLServer client works unchanged: ``GET /v2``, ``/v2/health/live``,
``/v2/health/ready``, ``/v2/models/{name}``, ``/v2/models/{name}/ready`` and
``POST /v2/models/{name}/infer``. The model answers to ``catdog`` and to its own name.

Tensors: input ``image`` (``BYTES``, shape ``[N]``): each element is one photo file,
base64-encoded in a plain JSON request, raw bytes in a request that uses the binary tensor
extension (``Inference-Header-Content-Length``: the JSON header, then the tensors' bytes; a
BYTES tensor is each element's 4-byte little-endian length and its bytes). Outputs ``label``
(``BYTES``, ``[N]``), ``probabilities`` (``FP32``, ``[N, K]`` in the order of the labels the
model metadata lists) and ``sure`` (``BOOL``, ``[N]``, one byte each in binary), as JSON or binary as the request asks (``binary_data`` per output,
or ``binary_data_output`` for all, which is what ``tritonclient.http`` sends by default).

The photos go through the same engine call as ``/v1/predict/batch``; a bad photo fails the
request (a tensor has no per-element error slot) with the same stable code as the REST API,
in the protocol's error shape (see :func:`catdog.api.errors.v2_error_body`).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from flask import Request, Response, request

from catdog import __version__
from catdog.api.endpoint import JSON, DocContext, Endpoint, Service, error_responses, json_body, ref
from catdog.api.errors import InvalidInferenceRequest, ModelNotFound, TooManyFiles
from catdog.api.observability import annotate
from catdog.api.security import charge_photos
from catdog.api.uploads import require_body_type
from catdog.model.decode import BatchBudget
from catdog.model.errors import CatdogError
from catdog.prediction import Prediction

#: The name every catdog server answers to, whatever model it loaded.
ALIAS = "catdog"
INPUT = "image"
LABEL = "label"
PROBABILITIES = "probabilities"
SURE = "sure"
OUTPUTS = (LABEL, PROBABILITIES, SURE)
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]
_LENGTH = struct.Struct("<I")


# -- reading a request -----------------------------------------------------------------------------

JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


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


def _invalid(message: str) -> InvalidInferenceRequest:
    return InvalidInferenceRequest(message)


def split_body(body: bytes, header_length: str | None) -> tuple[JSON, bytes]:
    """The JSON inference header and the binary tensor data after it (empty without the extension)."""
    if header_length is None:
        head, rest = body, b""
    else:
        try:
            size = int(header_length)
        except ValueError:
            size = -1
        if not 0 <= size <= len(body):
            raise _invalid(f"{HEADER_LENGTH}: {header_length[:20]!r} is not a length within the "
                           f"{len(body)}-byte body.")
        head, rest = body[:size], body[size:]
    try:
        parsed = json.loads(head)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("The inference request is not valid JSON"
                       + (f" (its first {HEADER_LENGTH} bytes)." if header_length is not None else ".")) from None
    if not isinstance(parsed, dict):
        raise _invalid('The inference request must be a JSON object like {"inputs": [...]}.')
    return parsed, rest


def split_bytes_tensor(raw: bytes) -> list[bytes]:
    """A binary BYTES tensor: each element is its 4-byte little-endian length, then its bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _invalid("The binary data of input 'image' ends inside an element's 4-byte length.")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise _invalid(f"Element {len(elements)} of input 'image' claims {size} bytes; "
                           f"only {len(raw) - offset} are left in its binary data.")
        elements.append(raw[offset:offset + size])
        offset += size
    return elements


def _flatten(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _decode_base64(index: int, value: Any) -> bytes:
    if not isinstance(value, str):
        raise _invalid(f"Element {index} of input 'image' is {type(value).__name__}; in a JSON request "
                       "each element is a photo file, base64-encoded as a string.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"Element {index} of input 'image' is not valid base64; encode each photo file "
                       "with base64 (or send it as binary tensor data).") from None


def _parameters(item: dict) -> dict:
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _invalid("'parameters' must be a JSON object.")
    return parameters


def read_images(infer: JSON, binary: bytes, max_batch: int) -> list[bytes]:
    """The photos in input ``image``, checked against the protocol and this model's tensor."""
    inputs = infer.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _invalid("The request has no inputs; send "
                       '{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [N], "data": [...]}]}.')
    found: tuple[dict, bytes | None] | None = None
    offset = 0
    for tensor in inputs:
        if not isinstance(tensor, dict):
            raise _invalid("Each input must be a JSON object with name, datatype, shape and data.")
        size = _parameters(tensor).get("binary_data_size")
        chunk = None
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise _invalid(f"binary_data_size {size!r} of input {str(tensor.get('name'))[:40]!r} does not "
                               f"fit the {len(binary) - offset} bytes of binary data left.")
            chunk = binary[offset:offset + size]
            offset += size
        name = tensor.get("name")
        if name != INPUT:
            raise _invalid(f"Unknown input {str(name)[:40]!r}: this model takes one input, "
                           "'image' (BYTES, shape [N], one photo file per element).")
        if found is not None:
            raise _invalid("Input 'image' is given twice.")
        found = (tensor, chunk)
    if offset != len(binary):
        raise _invalid(f"The request carries {len(binary) - offset} bytes of binary data that no input "
                       "claims (binary_data_size).")
    if found is None:  # cannot happen: inputs is a non-empty list of 'image' tensors
        raise _invalid("The request has no input 'image'.")
    tensor, chunk = found
    if tensor.get("datatype") != "BYTES":
        raise _invalid(f"Input 'image' has datatype {str(tensor.get('datatype'))[:20]!r}; it must be "
                       "'BYTES' (each element one photo file).")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or (len(shape) == 2 and shape[1] != 1)):
        raise _invalid(f"Input 'image' has shape {str(shape)[:40]}; it must be [N] (or [N, 1]), "
                       "N photos.")
    count = shape[0]
    if count == 0:
        raise _invalid("Input 'image' has no elements (shape [0]); send at least one photo.")
    if count > max_batch:
        raise TooManyFiles(count, max_batch)
    if chunk is not None:
        photos = split_bytes_tensor(chunk)
    else:
        if "data" not in tensor:
            raise _invalid("Input 'image' has no data: put the base64-encoded photos in 'data', or "
                           "send them as binary tensor data.")
        photos = [_decode_base64(i, value) for i, value in enumerate(_flatten(tensor["data"]))]
    if len(photos) != count:
        raise _invalid(f"Input 'image' has shape {shape} but {len(photos)} elements.")
    return photos


def requested_outputs(infer: JSON) -> list[tuple[str, bool]]:
    """``(name, as_binary)`` for each output to return, in the order asked (all by default)."""
    default_binary = bool(_parameters(infer).get("binary_data_output", False))
    asked = infer.get("outputs")
    if asked is None:
        return [(name, default_binary) for name in OUTPUTS]
    if not isinstance(asked, list):
        raise _invalid("'outputs' must be a list of {\"name\": ...} objects.")
    chosen = []
    for output in asked:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise _invalid(f"Unknown output {str(name)[:40]!r}; this model has outputs "
                           + " and ".join(repr(n) for n in OUTPUTS) + ".")
        chosen.append((name, bool(_parameters(output).get("binary_data", default_binary))))
    return chosen


# -- writing a response ----------------------------------------------------------------------------


def output_tensors(predictions: list[Prediction], labels: list[str]) -> dict[str, tuple[str, list[int], Any]]:
    """name -> (datatype, shape, numpy array) for every output."""
    names = np.array([p.label.encode() for p in predictions], dtype=object)
    probabilities = np.array([[p.probabilities.get(label, 0.0) for label in labels] for p in predictions],
                             dtype="<f4")
    sure = np.array([p.sure for p in predictions], dtype=bool)
    return {
        LABEL: ("BYTES", [len(predictions)], names),
        PROBABILITIES: ("FP32", [len(predictions), len(labels)], probabilities),
        SURE: ("BOOL", [len(predictions)], sure),
    }


def _binary(datatype: str, array: Any) -> bytes:
    if datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(item)) + item for item in array)
    if datatype == "BOOL":  # one byte per element, as Triton sends BOOL
        return np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def _json_data(datatype: str, array: Any) -> list:
    if datatype == "BYTES":
        return [item.decode() for item in array]
    if datatype == "BOOL":
        return [bool(x) for x in np.asarray(array).ravel()]
    return [round(float(x), 6) for x in np.asarray(array).ravel()]


def infer_response(head: JSON, outputs: list[tuple[str, bool]],
                   tensors: dict[str, tuple[str, list[int], Any]]) -> Response:
    """JSON, or (when any output is binary) the JSON header followed by the binary tensors."""
    chunks: list[bytes] = []
    described = []
    for name, as_binary in outputs:
        datatype, shape, array = tensors[name]
        tensor: JSON = {"name": name, "datatype": datatype, "shape": shape}
        if as_binary:
            raw = _binary(datatype, array)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _json_data(datatype, array)
        described.append(tensor)
    header = json.dumps({**head, "outputs": described}, separators=(",", ":")).encode()
    if not chunks:
        return Response(header, mimetype="application/json")
    response = Response(b"".join([header, *chunks]), mimetype="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(len(header))
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
        classifier = service.classifier
        onnx = classifier is not None and classifier.path is not None and classifier.path.suffix == ".onnx"
        return {
            "name": info.get("name"),
            "versions": [str(info.get("version"))],
            "platform": "onnxruntime_onnx" if onnx else "keras",
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
        started = time.perf_counter()
        service = self.service
        _check_model(service, name)
        if request.content_encoding:
            raise _invalid(f"Compressed requests (Content-Encoding: {request.content_encoding[:20]}) are not "
                           "accepted; send the request uncompressed.")
        require_infer_body(request)
        head, binary = split_body(request.get_data(cache=False), request.headers.get(HEADER_LENGTH))
        settings = service.settings
        photos = read_images(head, binary, settings.max_batch)
        outputs = requested_outputs(head)
        annotate(files=len(photos), size=sum(map(len, photos)), binary=bool(binary))
        charge_photos(len(photos))  # N photos cost N, as a /v1/predict/batch of N does, before any is decoded
        budget = BatchBudget(settings.batch_decode_bytes, settings.batch_seconds)
        results = service.engine.predict_batch(photos, return_errors=True, budget=budget)
        for index, result in enumerate(results):
            if isinstance(result, CatdogError):
                # A tensor has no slot for one element's error: the request fails, naming the photo.
                result.message = f"Element {index} of input 'image': {result.message}"
                raise result
        predictions = [r for r in results if isinstance(r, Prediction)]
        for prediction in predictions:
            service.metrics.predictions.labels(prediction.label).inc()
        response_head: JSON = {"model_name": service.model_info.get("name"),
                               "model_version": str(service.model_info.get("version"))}
        if isinstance(head.get("id"), str):
            response_head["id"] = head["id"]
        response_head["parameters"] = {"elapsed_ms": round((time.perf_counter() - started) * 1000, 2)}
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
