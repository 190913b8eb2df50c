"""The v2 codec on its own (no Flask), and the JSON it refuses: never a 500."""

from __future__ import annotations

import subprocess
import sys

import pytest

from catdog.api.request_errors import InvalidInferenceRequest
from catdog.api.v2_codec import MAX_JSON_DEPTH, encode_response, split_body
from tests.api.test_v2 import _post, v2_error

#: Bodies a parser can choke on; each must be a 400 invalid_inference_request with a message.
HOSTILE = {
    "10 KB of [": b"[" * 10_000,
    "10 KB of [ closed": b"[" * 10_000 + b"]" * 10_000,
    "100 KB of {": b'{"a":' * 100_000,
    "nested just past the limit": b'{"inputs": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}",
    "NaN": b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [NaN]}]}',
    "-Infinity": b'{"id": -Infinity, "inputs": []}',
    "a 5000-digit number": b'{"id": ' + b"9" * 5000 + b', "inputs": []}',
    "Latin-1 text": b'{"id": "caf\xe9", "inputs": []}',
    "UTF-16 without a BOM, odd length": b'{\x00"\x00i',
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_json_is_a_400_from_the_codec(body):
    with pytest.raises(InvalidInferenceRequest) as caught:
        split_body(body, None)
    assert caught.value.status == 400 and caught.value.message


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_json_to_infer_is_a_400_json_error(live_url, body):
    v2_error(_post(live_url, body, **{"Content-Type": "application/json"}), 400, "invalid_inference_request")


def test_nesting_up_to_the_limit_is_parsed():
    depth = MAX_JSON_DEPTH - 1  # the outer object is one level
    head, rest = split_body(b'{"x": ' + b"[" * depth + b"]" * depth + b"}", None)
    assert rest == b"" and isinstance(head["x"], list)
    with pytest.raises(InvalidInferenceRequest, match=f"more than {MAX_JSON_DEPTH} deep"):
        split_body(b'{"x": ' + b"[" * (depth + 1) + b"]" * (depth + 1) + b"}", None)


def test_encode_response_is_json_or_header_then_binary():
    tensors = {"label": ("BYTES", [1], [b"cat"])}
    body, media_type, length = encode_response({"model_name": "m"}, [("label", False)], tensors)
    assert media_type == "application/json" and length is None and b'"data":["cat"]' in body
    body, media_type, length = encode_response({"model_name": "m"}, [("label", True)], tensors)
    assert media_type == "application/octet-stream" and body[length:] == b"\x03\x00\x00\x00cat"


def test_the_codec_imports_no_flask():
    code = "import sys, catdog.api.v2_codec; print('flask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
