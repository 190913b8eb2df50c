"""The Open Inference Protocol (v2) endpoints, spoken to by the real ``tritonclient[http]``
(binary and JSON tensors) and by plain HTTP, against the real app on a loopback port."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from catdog.model.decode import estimate_cost
from tests.api.conftest import PHOTOS, serving

ALIAS = "catdog"
#: An API key long enough for the server to accept (16 characters at least).
KEY = "sesame-open-sesame"


@pytest.fixture
def triton_client(live_url):
    client = triton.InferenceServerClient(url=live_url.removeprefix("http://"))
    yield client
    client.close()


def image_input(photos: list[bytes], *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(photos)], "BYTES")
    elements = photos if binary else [base64.b64encode(photo) for photo in photos]
    tensor.set_data_from_numpy(np.array(elements, dtype=object), binary_data=binary)
    return tensor


def infer_json(url: str, photos: list[bytes], model: str = ALIAS, **extra) -> requests.Response:
    """A plain JSON request, as curl would send it."""
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(photos)],
                        "data": [base64.b64encode(p).decode() for p in photos]}], **extra}
    return requests.post(f"{url}/v2/models/{model}/infer", json=body, timeout=30)


def v2_error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["code"] == code
    assert body["error"].startswith(f"{code}: ")
    return body["error"]


# -- health and metadata ---------------------------------------------------------------------------


def test_server_is_live_and_ready_and_describes_itself(triton_client):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    metadata = triton_client.get_server_metadata()
    assert metadata["name"] == "catdog" and "binary_tensor_data" in metadata["extensions"]


def test_model_answers_to_catdog_and_to_its_own_name(triton_client, classifier):
    own = classifier.recipe.name
    for name in (ALIAS, own):
        assert triton_client.is_model_ready(name)
        metadata = triton_client.get_model_metadata(name)
        assert metadata["name"] == own
        assert metadata["versions"] == [classifier.recipe.version]
        assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
        labels = list(classifier.recipe.labels)
        assert metadata["outputs"] == [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]},
            {"name": "sure", "datatype": "BOOL", "shape": [-1]},
        ]
        assert metadata["parameters"]["labels"] == labels


def test_unknown_model_is_404_in_the_protocols_shape(triton_client, live_url):
    with pytest.raises(InferenceServerException) as info:
        triton_client.get_model_metadata("resnet50")
    assert info.value.status() == "404"
    assert "model_not_found" in info.value.message() and "'catdog'" in info.value.message()
    assert not triton_client.is_model_ready("resnet50")
    v2_error(requests.get(f"{live_url}/v2/models/resnet50/ready", timeout=5), 404, "model_not_found")
    v2_error(requests.get(f"{live_url}/v2/nothing", timeout=5), 404, "not_found")


# -- inference ---------------------------------------------------------------------------------------


def engine_answers(classifier, photos: list[bytes]) -> tuple[list[str], np.ndarray]:
    predictions = classifier.predict_batch(photos)
    labels = list(classifier.recipe.labels)
    return ([p.label for p in predictions],
            np.array([[p.probabilities[label] for label in labels] for p in predictions]))


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-input", "json-input"])
@pytest.mark.parametrize("binary_out", [None, True, False], ids=["default-outputs", "binary-outputs",
                                                                 "json-outputs"])
def test_tritonclient_infer_gives_the_engines_answers(triton_client, classifier, binary_in, binary_out):
    paths = [path for path, _ in PHOTOS]
    photos = [path.read_bytes() for path in paths]
    outputs = None if binary_out is None else [
        triton.InferRequestedOutput(name, binary_data=binary_out) for name in ("label", "probabilities", "sure")
    ]
    result = triton_client.infer(ALIAS, [image_input(photos, binary=binary_in)], outputs=outputs,
                                 request_id="req-7")
    # tritonclient gives BYTES as bytes from binary outputs, as str from JSON ones
    labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")]
    probabilities = result.as_numpy("probabilities")
    assert labels == [expected for _, expected in PHOTOS]
    want_labels, want_probabilities = engine_answers(classifier, photos)
    assert labels == want_labels
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(photos), len(classifier.recipe.labels))
    np.testing.assert_allclose(probabilities, want_probabilities, atol=1e-6)
    sure = result.as_numpy("sure")
    assert sure.dtype == np.bool_ and sure.tolist() == [classifier.predict(photo).sure for photo in photos]
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_name"] == classifier.recipe.name
    sent_binary = binary_out if binary_out is not None else True  # tritonclient's default: binary
    assert ("parameters" in result.get_output("label")) == sent_binary


def test_one_output_only(triton_client, cat_bytes):
    result = triton_client.infer(ALIAS, [image_input([cat_bytes], binary=True)],
                                 outputs=[triton.InferRequestedOutput("label", binary_data=False)])
    assert result.as_numpy("probabilities") is None
    assert result.get_output("label")["data"] == ["cat"]


def test_plain_json_request_like_curl(live_url, classifier, cat_bytes, dog_bytes):
    response = infer_json(live_url, [cat_bytes, dog_bytes], model=classifier.recipe.name)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["label"] == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]}
    k = len(classifier.recipe.labels)
    assert outputs["probabilities"]["shape"] == [2, k] and len(outputs["probabilities"]["data"]) == 2 * k
    assert sum(outputs["probabilities"]["data"][:k]) == pytest.approx(1, abs=1e-5)
    assert outputs["sure"] == {"name": "sure", "datatype": "BOOL", "shape": [2], "data": [True, True]}


# -- errors: the REST API's codes, in the protocol's shape -----------------------------------------


def test_a_bad_photo_fails_the_request_with_its_code_and_element(triton_client, live_url, cat_bytes, bad_inputs):
    photos = [cat_bytes, bad_inputs["not_an_image"]]
    with pytest.raises(InferenceServerException) as info:
        triton_client.infer(ALIAS, [image_input(photos, binary=True)])
    assert info.value.status() == "415"
    assert info.value.message().startswith("not_an_image: Element 1 of input 'image': ")
    message = v2_error(infer_json(live_url, photos), 415, "not_an_image")
    assert "Element 1" in message
    # the server keeps serving
    assert triton_client.infer(ALIAS, [image_input([cat_bytes], binary=True)]).as_numpy("label")[0] == b"cat"


@pytest.mark.parametrize("code,status", [("empty_file", 400), ("truncated_image", 400),
                                         ("unsupported_format", 415), ("too_many_pixels", 422)])
def test_image_errors_keep_their_status_and_code(live_url, bad_inputs, code, status):
    v2_error(infer_json(live_url, [bad_inputs[code]]), status, code)


def _post(url: str, body: bytes, **headers: str) -> requests.Response:
    return requests.post(f"{url}/v2/models/catdog/infer", data=body, headers=headers, timeout=10)


@pytest.mark.parametrize("body,expected", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"inputs": []}', "no inputs"),
    (b'{"inputs": [{"name": "input_1", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}',
     "Unknown input 'input_1'"),
    (b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1]}]}', "must be 'BYTES'"),
    (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 3], "data": ["a", "b", "c"]}]}',
     "must be [N]"),
    (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGk="]}]}',
     "but 1 elements"),
    (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}',
     "not valid base64"),
    (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [7]}]}', "base64-encoded"),
    (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}', "no data"),
    ((b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}], '
      b'"outputs": [{"name": "logits"}]}'), "Unknown output 'logits'"),
])
def test_protocol_violations_are_400_with_what_to_do(live_url, body, expected):
    message = v2_error(_post(live_url, body), 400, "invalid_inference_request")
    assert expected in message


def test_binary_data_that_does_not_add_up_is_400(live_url, cat_bytes):
    head = b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], ' \
           b'"parameters": {"binary_data_size": 100}}]}'
    element = len(cat_bytes).to_bytes(4, "little") + cat_bytes
    cases = {
        "does not fit the 10 bytes": (head, b"x" * 10),        # fewer bytes than declared
        "no input claims": (head, b"\x00" * 100 + b"extra"),   # more bytes than declared
        "claims": (head.replace(b"100", str(len(element)).encode()),
                   (len(cat_bytes) + 9).to_bytes(4, "little") + cat_bytes),  # element overruns
        "not a length": (head, b""),
    }
    for expected, (json_part, binary) in cases.items():
        length = "zz" if expected == "not a length" else str(len(json_part))
        response = _post(live_url, json_part + binary, **{"Inference-Header-Content-Length": length})
        assert expected in v2_error(response, 400, "invalid_inference_request")


def test_batch_limit_and_body_limit(make_app, cat_bytes):
    with serving(make_app(max_batch=2, max_upload_mb=1)) as url:
        v2_error(infer_json(url, [cat_bytes] * 3), 400, "too_many_files")
        assert "over the limit of 1 MB" in v2_error(infer_json(url, [b"\xff" * 900_000]), 413, "file_too_large")


def test_wrong_method_is_405_in_the_protocols_shape(live_url):
    v2_error(requests.get(f"{live_url}/v2/models/catdog/infer", timeout=5), 405, "method_not_allowed")


def test_api_keys_apply_to_models_not_to_health(make_app, cat_bytes):
    with serving(make_app(api_keys=[KEY])) as url:
        client = triton.InferenceServerClient(url=url.removeprefix("http://"))
        try:
            assert client.is_server_live() and client.is_server_ready()
            with pytest.raises(InferenceServerException) as info:
                client.infer(ALIAS, [image_input([cat_bytes], binary=True)])
            assert info.value.status() == "401" and info.value.message().startswith("unauthorized: ")
            result = client.infer(ALIAS, [image_input([cat_bytes], binary=True)], headers={"X-API-Key": KEY})
            assert result.as_numpy("label")[0] == b"cat"
        finally:
            client.close()


def test_predictions_are_counted_in_metrics(live_url, cat_bytes):
    infer_json(live_url, [cat_bytes, cat_bytes])
    text = requests.get(f"{live_url}/metrics", timeout=5).text
    assert 'catdog_predictions_total{label="cat"} 2.0' in text


def _binary_request(photos: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """A binary-extension infer body and its header, built by hand (as tritonclient does)."""
    data = b"".join(len(p).to_bytes(4, "little") + p for p in photos)
    head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(photos)],
                                   "parameters": {"binary_data_size": len(data)}}]}).encode()
    return head + data, {"Inference-Header-Content-Length": str(len(head))}


def test_infer_reads_json_and_the_binary_extension_and_refuses_other_bodies(app, classifier, cat_bytes):
    """The REST endpoints' 415 for non-upload bodies must not refuse v2's own body types."""
    client = app.test_client()
    url = "/v2/models/catdog/infer"
    json_body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                        "data": [base64.b64encode(cat_bytes).decode()]}]}).encode()
    binary_body, header = _binary_request([cat_bytes])
    accepted = [
        client.post(url, data=json_body, content_type="application/json"),
        client.post(url, data=json_body),  # no Content-Type: tritonclient's way
        client.post(url, data=binary_body, content_type="application/octet-stream", headers=header),
        client.post(url, data=binary_body, headers=header),
    ]
    for response in accepted:
        assert response.status_code == 200, response.get_data(as_text=True)
        label = next(o for o in response.json["outputs"] if o["name"] == "label")
        assert label["data"] == [classifier.predict(cat_bytes).label]
    refused = [
        client.post(url, data=json_body, content_type="application/x-www-form-urlencoded"),  # curl -d
        client.post(url, data=json_body, content_type="multipart/form-data; boundary=x"),
        client.post(url, data=json_body, content_type="text/plain"),
        client.post(url, data=binary_body, content_type="application/octet-stream"),  # no header length
    ]
    for response in refused:
        assert response.status_code == 415
        body = response.json
        assert body["code"] == "unsupported_media_type" and body["error"].startswith("unsupported_media_type: ")
        assert "application/json" in body["error"] and "Inference-Header-Content-Length" in body["error"]


def test_infer_charges_the_rate_limit_per_photo_shared_with_rest(make_app, cat_bytes):
    client = make_app(rate_limit="4/minute").test_client()
    url = "/v2/models/catdog/infer"

    def infer(n: int):
        body, header = _binary_request([cat_bytes] * n)
        return client.post(url, data=body, headers=header)

    assert infer(3).status_code == 200  # 3 photos cost 3
    refused = infer(2)  # 3 + 2 > 4: refused whole, nothing spent, in the protocol's shape
    assert refused.status_code == 429 and refused.json["code"] == "rate_limited"
    assert "asked for 2 photos" in refused.json["error"] and int(refused.headers["Retry-After"]) > 0
    assert client.post("/v1/predict", data=cat_bytes, content_type="image/jpeg").status_code == 200  # the 4th
    assert infer(1).status_code == 429  # spent, across v2 and REST
    assert client.post("/v1/predict", data=cat_bytes, content_type="image/jpeg").status_code == 429
    assert client.get("/v2/health/ready").status_code == 200  # probes are never throttled
    assert client.get("/v2/models/catdog").status_code == 200  # nor is reading the metadata


def test_infer_decoding_is_bounded_like_a_rest_batch(make_app, classifier, cat_bytes):
    one_photo = estimate_cost(cat_bytes, min_side=classifier.recipe.input.resize)
    assert one_photo > 0
    client = make_app(batch_decode_mb=1.5 * one_photo / 1e6).test_client()  # room for one photo, not two
    body, header = _binary_request([cat_bytes, cat_bytes])
    response = client.post("/v2/models/catdog/infer", data=body, headers=header)
    assert response.status_code == 413 and response.json["code"] == "batch_budget_exceeded"
    assert "Element 1 of input 'image'" in response.json["error"]


def test_openapi_lists_429_where_photos_are_counted(make_app):
    document = make_app(rate_limit="10/minute").test_client().get("/openapi.json").json
    paths = document["paths"]
    for path in ("/v1/predict", "/v1/explain", "/v1/predict/batch", "/v2/models/{name}/infer"):
        assert "429" in paths[path]["post"]["responses"], path
    for path in ("/v1/model", "/v2/models/{name}", "/healthz"):
        assert "429" not in paths[path]["get"]["responses"], path
