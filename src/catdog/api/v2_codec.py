"""The Open Inference Protocol's ("v2") wire format for this model, as pure functions: no Flask.

Reading: :func:`split_body` (the JSON header, and the binary tensor data after it with the
binary extension), :func:`read_images` (the photos of input ``image``) and
:func:`requested_outputs`. Writing: :func:`output_tensors` and :func:`encode_response` (JSON,
or the JSON header followed by the binary tensors). Every malformed request is an
:class:`~catdog.api.request_errors.InvalidInferenceRequest` (400): JSON nested deeper than
:data:`MAX_JSON_DEPTH`, numbers JSON does not have (``NaN``, ``Infinity``), text that is not
UTF-8 included, never a 500. The endpoints (:mod:`catdog.api.v2`) parse with these, hand
the photos to the data plane and send what these encode.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from catdog.api.request_errors import InvalidInferenceRequest, TooManyFiles
from catdog.prediction import Prediction

JSON = dict[str, Any]

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


#: Deepest nesting of lists and objects a request may have. The protocol's requests are a few
#: levels deep (``{"inputs": [{"data": [[...]]}]}``); thousands of ``[`` are an attack on the parser.
MAX_JSON_DEPTH = 64

# -- reading a request -----------------------------------------------------------------------------

JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


def invalid_request(message: str) -> InvalidInferenceRequest:
    return InvalidInferenceRequest(message)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_deep() -> InvalidInferenceRequest:
    return invalid_request(f"The inference request nests lists or objects more than {MAX_JSON_DEPTH} deep; "
                    'send {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [N], "data": [...]}]}.')


def _check_depth(value: Any) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (list, dict)):
                if depth + 1 > MAX_JSON_DEPTH:
                    raise _too_deep()
                stack.append((child, depth + 1))


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
            raise invalid_request(f"{HEADER_LENGTH}: {header_length[:20]!r} is not a length within the "
                           f"{len(body)}-byte body.")
        head, rest = body[:size], body[size:]
    where = f" (its first {HEADER_LENGTH} bytes)" if header_length is not None else ""
    try:
        parsed = json.loads(head, parse_constant=_no_constant)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError):  # UnicodeDecodeError is a ValueError; named for the reader
        raise invalid_request(f"The inference request is not valid JSON{where}: send UTF-8 JSON text with "
                       "plain numbers.") from None
    _check_depth(parsed)
    if not isinstance(parsed, dict):
        raise invalid_request('The inference request must be a JSON object like {"inputs": [...]}.')
    return parsed, rest


def split_bytes_tensor(raw: bytes) -> list[bytes]:
    """A binary BYTES tensor: each element is its 4-byte little-endian length, then its bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise invalid_request("The binary data of input 'image' ends inside an element's 4-byte length.")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise invalid_request(f"Element {len(elements)} of input 'image' claims {size} bytes; "
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
        raise invalid_request(f"Element {index} of input 'image' is {type(value).__name__}; in a JSON request "
                       "each element is a photo file, base64-encoded as a string.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(f"Element {index} of input 'image' is not valid base64; encode each photo file "
                       "with base64 (or send it as binary tensor data).") from None


def _parameters(item: dict) -> dict:
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise invalid_request("'parameters' must be a JSON object.")
    return parameters


def read_images(infer: JSON, binary: bytes, max_batch: int) -> list[bytes]:
    """The photos in input ``image``, checked against the protocol and this model's tensor."""
    inputs = infer.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise invalid_request("The request has no inputs; send "
                       '{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [N], "data": [...]}]}.')
    found: tuple[dict, bytes | None] | None = None
    offset = 0
    for tensor in inputs:
        if not isinstance(tensor, dict):
            raise invalid_request("Each input must be a JSON object with name, datatype, shape and data.")
        size = _parameters(tensor).get("binary_data_size")
        chunk = None
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise invalid_request(f"binary_data_size {size!r} of input {str(tensor.get('name'))[:40]!r} does not "
                               f"fit the {len(binary) - offset} bytes of binary data left.")
            chunk = binary[offset:offset + size]
            offset += size
        name = tensor.get("name")
        if name != INPUT:
            raise invalid_request(f"Unknown input {str(name)[:40]!r}: this model takes one input, "
                           "'image' (BYTES, shape [N], one photo file per element).")
        if found is not None:
            raise invalid_request("Input 'image' is given twice.")
        found = (tensor, chunk)
    if offset != len(binary):
        raise invalid_request(f"The request carries {len(binary) - offset} bytes of binary data that no input "
                       "claims (binary_data_size).")
    if found is None:  # cannot happen: inputs is a non-empty list of 'image' tensors
        raise invalid_request("The request has no input 'image'.")
    tensor, chunk = found
    if tensor.get("datatype") != "BYTES":
        raise invalid_request(f"Input 'image' has datatype {str(tensor.get('datatype'))[:20]!r}; it must be "
                       "'BYTES' (each element one photo file).")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or (len(shape) == 2 and shape[1] != 1)):
        raise invalid_request(f"Input 'image' has shape {str(shape)[:40]}; it must be [N] (or [N, 1]), "
                       "N photos.")
    count = shape[0]
    if count == 0:
        raise invalid_request("Input 'image' has no elements (shape [0]); send at least one photo.")
    if count > max_batch:
        raise TooManyFiles(count, max_batch)
    if chunk is not None:
        photos = split_bytes_tensor(chunk)
    else:
        if "data" not in tensor:
            raise invalid_request("Input 'image' has no data: put the base64-encoded photos in 'data', or "
                           "send them as binary tensor data.")
        photos = [_decode_base64(i, value) for i, value in enumerate(_flatten(tensor["data"]))]
    if len(photos) != count:
        raise invalid_request(f"Input 'image' has shape {shape} but {len(photos)} elements.")
    return photos


def requested_outputs(infer: JSON) -> list[tuple[str, bool]]:
    """``(name, as_binary)`` for each output to return, in the order asked (all by default)."""
    default_binary = bool(_parameters(infer).get("binary_data_output", False))
    asked = infer.get("outputs")
    if asked is None:
        return [(name, default_binary) for name in OUTPUTS]
    if not isinstance(asked, list):
        raise invalid_request("'outputs' must be a list of {\"name\": ...} objects.")
    chosen = []
    for output in asked:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise invalid_request(f"Unknown output {str(name)[:40]!r}; this model has outputs "
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


def encode_response(head: JSON, outputs: list[tuple[str, bool]],
                    tensors: dict[str, tuple[str, list[int], Any]]) -> tuple[bytes, str, int | None]:
    """``(body, media type, JSON header length)``: JSON, or (when any output is binary) the JSON
    header followed by the binary tensors, whose length goes in ``Inference-Header-Content-Length``."""
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
        return header, JSON_TYPE, None
    return b"".join([header, *chunks]), BINARY_TYPE, len(header)
