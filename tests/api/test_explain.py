"""POST /v1/explain: the prediction plus where the model looked, through the test client and real HTTP."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image

from catdog.api import create_app
from catdog.config import Settings
from catdog.model.engine import Classifier
from tests.api.conftest import PHOTOS, serving
from tests.conftest import encode
from tests.model.test_explain import without_class_maps


def upload(data: bytes, name: str = "photo.jpg") -> dict:
    return {"image": (io.BytesIO(data), name)}


@pytest.mark.parametrize("path,label", PHOTOS[::2], ids=[p.name for p, _ in PHOTOS[::2]])
def test_explain_answers_like_predict_and_adds_the_heatmap(client, classifier, path, label):
    predicted = client.post("/v1/predict", data=upload(path.read_bytes())).json
    response = client.post("/v1/explain", data=upload(path.read_bytes()))
    assert response.status_code == 200, response.json
    body = response.json
    assert list(body) == ["label", "confidence", "sure", "probabilities", "heatmap", "model", "elapsed_ms"]
    assert body["sure"] == predicted["sure"]
    assert body["label"] == predicted["label"] == label
    assert body["probabilities"] == predicted["probabilities"]
    assert set(body["probabilities"]) == set(classifier.labels)
    heatmap = body["heatmap"]
    assert heatmap["label"] == body["label"]
    width, height = Image.open(path).size
    assert max(heatmap["rows"], heatmap["cols"]) == 32
    assert (heatmap["cols"] > heatmap["rows"]) == (width > height)
    values = heatmap["values"]
    assert len(values) == heatmap["rows"] and all(len(row) == heatmap["cols"] for row in values)
    flat = [v for row in values for v in row]
    assert min(flat) >= 0 and 0.9 < max(flat) <= 1
    left, top, right, bottom = heatmap["box"]  # the model's square, in fractions of the photo
    assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
    assert (right - left) * width == pytest.approx((bottom - top) * height, rel=0.01)
    assert "overlay" not in body


def test_overlay_png_is_the_photo_with_the_heatmap_on_it(client, cat_photo):
    photo = Image.open(cat_photo).convert("RGB")
    body = client.post("/v1/explain?overlay=png", data=photo_upload(photo)).json
    overlay = body["overlay"]
    assert overlay["media_type"] == "image/png"
    png = Image.open(io.BytesIO(base64.b64decode(overlay["data"])))
    assert png.format == "PNG" and png.size == photo.size == (overlay["width"], overlay["height"])
    assert png.convert("RGB").tobytes() != photo.tobytes()


def photo_upload(photo: Image.Image) -> dict:
    return upload(encode(photo, "PNG"), "photo.png")


def test_a_large_photo_gets_an_overlay_no_larger_than_the_limit(client, cat_photo):
    big = Image.open(cat_photo).convert("RGB").resize((2400, 1000))
    body = client.post("/v1/explain?overlay=png", data=photo_upload(big)).json
    png = Image.open(io.BytesIO(base64.b64decode(body["overlay"]["data"])))
    assert png.size == (1024, round(1024 * 1000 / 2400))
    assert body["heatmap"]["cols"] == 32 and body["heatmap"]["rows"] == round(32 * 1000 / 2400)


def test_an_exif_rotated_upload_gets_the_shown_shape(client, cat_photo):
    photo = Image.open(cat_photo).convert("RGB")  # stored landscape...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...shown turned 90 degrees clockwise: portrait
    body = client.post("/v1/explain?overlay=png",
                       data=upload(encode(photo, "JPEG", exif=exif.tobytes()))).json
    assert body["heatmap"]["rows"] == 32 and body["heatmap"]["cols"] < 32
    assert (body["overlay"]["width"], body["overlay"]["height"]) == (photo.height, photo.width)


def test_unknown_overlay_kind_is_a_coded_400(client, cat_bytes):
    response = client.post("/v1/explain?overlay=jpeg", data=upload(cat_bytes))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_parameter"
    assert "overlay=png" in response.json["error"]["message"]


def test_bad_uploads_get_the_same_errors_as_predict(client, bad_inputs):
    for code, data in bad_inputs.items():
        response = client.post("/v1/explain", data=upload(data))
        assert response.json["error"]["code"] == code
        assert response.status_code == client.post("/v1/predict", data=upload(data)).status_code
    missing = client.post("/v1/explain", data={"file": (io.BytesIO(b"x"), "a.jpg")})
    assert missing.status_code == 400 and missing.json["error"]["code"] == "missing_field"


def test_a_model_without_class_maps_answers_422_and_keeps_serving(tmp_path, classifier, cat_bytes):
    """A model whose recipe declares no class maps, over real HTTP: 422 explain_unavailable, and the
    server goes on predicting."""
    model = without_class_maps(tmp_path / "m", classifier)
    app = create_app(Settings(), classifier=Classifier.load(model, threads=1, warmup=False))
    with serving(app) as url, requests.Session() as http:
        assert http.get(f"{url}/v1/model", timeout=10).json()["explain"] is False
        response = http.post(f"{url}/v1/explain", files={"image": ("cat.jpg", cat_bytes)}, timeout=30)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "explain_unavailable" and "class activation map" in error["message"]
        assert http.post(f"{url}/v1/predict", files={"image": ("cat.jpg", cat_bytes)}, timeout=30).status_code == 200


def test_the_bundled_model_says_it_can_explain(client):
    assert client.get("/v1/model").json["explain"] is True


def test_openapi_documents_explain(client):
    spec = client.get("/openapi.json").json
    operation = spec["paths"]["/v1/explain"]["post"]
    assert operation["operationId"] == "explain"
    assert [p["name"] for p in operation["parameters"]] == ["overlay"]
    assert "422" in operation["responses"] and "explain_unavailable" in operation["responses"]["422"]["description"]
    assert "heatmap" in str(spec["components"]["schemas"]["ExplainResponse"])
