"""Every photo endpoint goes through the one data plane: charged, counted and timed alike."""

from __future__ import annotations

import base64
import io

from catdog.api.dataplane import DataPlane


def predictions_counted(client) -> float:
    """The sum of catdog_predictions_total over every label."""
    text = client.get("/metrics").get_data(as_text=True)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("catdog_predictions_total{"))


def _photo_requests(cat_bytes: bytes, dog_bytes: bytes) -> dict[str, tuple[str, dict, int]]:
    """Route -> (path, test-client keyword arguments, photos sent)."""
    infer = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                         "data": [base64.b64encode(p).decode() for p in (cat_bytes, dog_bytes)]}]}
    return {
        "/predict": ("/predict", {"data": {"image": (io.BytesIO(cat_bytes), "c.jpg")}}, 1),
        "/v1/predict raw": ("/v1/predict", {"data": dog_bytes, "content_type": "image/jpeg"}, 1),
        "/v1/predict/batch": ("/v1/predict/batch", {"data": {"images": [
            (io.BytesIO(cat_bytes), "c.jpg"), (io.BytesIO(dog_bytes), "d.jpg")]}}, 2),
        "/v1/explain": ("/v1/explain", {"data": {"image": (io.BytesIO(cat_bytes), "c.jpg")}}, 1),
        "v2 infer": ("/v2/models/catdog/infer", {"json": infer}, 2),
    }


def test_every_photo_endpoint_is_admitted_by_the_data_plane(app, cat_bytes, dog_bytes, monkeypatch):
    admitted: list[int] = []
    real = DataPlane._admit

    def spy(photos, sent):
        admitted.append(photos)
        real(photos, sent)

    monkeypatch.setattr(DataPlane, "_admit", staticmethod(spy))
    client = app.test_client()
    for route, (path, kwargs, photos) in _photo_requests(cat_bytes, dog_bytes).items():
        before = predictions_counted(client)
        response = client.post(path, **kwargs)
        assert response.status_code == 200, (route, response.data[:300])
        assert admitted.pop() == photos and not admitted, route
        assert predictions_counted(client) == before + photos, route


def test_a_spent_budget_is_refused_before_the_engine_runs(make_app, cat_bytes, dog_bytes, classifier,
                                                          monkeypatch):
    client = make_app(rate_limit="1/minute").test_client()
    calls = []
    monkeypatch.setattr(classifier, "predict_batch", lambda *a, **k: calls.append(a) or [])
    path, kwargs, _ = _photo_requests(cat_bytes, dog_bytes)["v2 infer"]
    response = client.post(path, **kwargs)  # 2 photos against a budget of 1
    assert response.status_code == 429 and response.json["code"] == "rate_limited"
    assert calls == []
