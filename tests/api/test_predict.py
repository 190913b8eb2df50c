"""Predictions through the Flask test client: both labels from real photos, every input route."""

from __future__ import annotations

import io

import pytest

from tests.api.conftest import PHOTOS


def upload(data: bytes, name: str = "photo.jpg", field: str = "image") -> dict:
    return {field: (io.BytesIO(data), name)}


@pytest.mark.parametrize("path,label", PHOTOS, ids=[p.name for p, _ in PHOTOS])
def test_real_photos_get_their_label(client, path, label):
    response = client.post("/v1/predict", data=upload(path.read_bytes()))
    assert response.status_code == 200, response.json
    assert response.json["label"] == label


@pytest.mark.parametrize("route", ["/predict", "/v1/predict"])
def test_predict_response_shape(client, classifier, cat_bytes, route):
    response = client.post(route, data=upload(cat_bytes), content_type="multipart/form-data")
    assert response.status_code == 200
    body = response.json
    assert list(body) == ["label", "confidence", "sure", "probabilities", "model", "elapsed_ms"]
    assert isinstance(body["sure"], bool)
    assert set(body["probabilities"]) == set(classifier.labels) == {"cat", "dog", "other"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["confidence"] == body["probabilities"][body["label"]]
    assert body["model"] == {"name": classifier.recipe.name, "version": classifier.recipe.version}
    assert body["elapsed_ms"] > 0
    assert response.mimetype == "application/json"


def test_raw_image_body_for_curl_users(client, dog_bytes):
    multipart = client.post("/v1/predict", data=upload(dog_bytes)).json
    raw = client.post("/v1/predict", data=dog_bytes, content_type="image/jpeg").json
    assert raw["label"] == multipart["label"]
    assert raw["probabilities"] == multipart["probabilities"]


def test_file_name_and_declared_type_do_not_matter(client, cat_bytes):
    """The format is decided by content: a JPEG called cat.png sent as text/plain is still a JPEG."""
    response = client.post("/v1/predict", data={"image": (io.BytesIO(cat_bytes), "cat.png", "text/plain")})
    assert response.status_code == 200


def test_batch_one_result_per_file_in_order(client, classifier, cat_photo, dog_photo):
    files = [(io.BytesIO(p.read_bytes()), p.name) for p in (cat_photo, dog_photo, cat_photo)]
    response = client.post("/v1/predict/batch", data={"images": files})
    assert response.status_code == 200
    body = response.json
    assert [r["label"] for r in body["results"]] == ["cat", "dog", "cat"]
    assert [r["sure"] for r in body["results"]] == [classifier.predict(p).sure for p in (cat_photo, dog_photo, cat_photo)]
    assert body["model"]["name"] == classifier.recipe.name
    assert body["elapsed_ms"] > 0


def test_batch_bad_file_does_not_fail_the_others(client, cat_bytes, dog_bytes, bad_inputs):
    files = [
        (io.BytesIO(cat_bytes), "a.jpg"),
        (io.BytesIO(bad_inputs["not_an_image"]), "b.jpg"),
        (io.BytesIO(bad_inputs["empty_file"]), "c.jpg"),
        (io.BytesIO(dog_bytes), "d.jpg"),
    ]
    results = client.post("/v1/predict/batch", data={"images": files}).json["results"]
    assert results[0]["label"] == "cat"
    assert results[1]["error"]["code"] == "not_an_image"
    assert results[2]["error"]["code"] == "empty_file"
    assert results[3]["label"] == "dog"
    assert "PDF" in results[1]["error"]["message"]


def test_batch_is_one_model_call(app, classifier, cat_bytes, monkeypatch):
    calls = []
    real = classifier.probabilities
    monkeypatch.setattr(classifier, "probabilities", lambda batch: calls.append(len(batch)) or real(batch))
    files = [(io.BytesIO(cat_bytes), f"{i}.jpg") for i in range(5)]
    assert app.test_client().post("/v1/predict/batch", data={"images": files}).status_code == 200
    assert calls == [5]
