"""POST /v1/feedback, GET /v1/feedback/summary, DELETE /v1/feedback/<id>: the rules of the prediction
endpoints (keys, rate limit, size limits, JSON errors), and nothing stored by a refused post."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from catdog.client import APIError, Client
from catdog.config import Settings
from catdog.feedback.store import FeedbackStore
from tests.api.conftest import serving

KEY = "k" * 24


@pytest.fixture
def db(tmp_path):
    return tmp_path / "feedback.sqlite3"


@pytest.fixture
def feedback_app(make_app, db):
    def build(**overrides):
        return make_app(feedback_path=db, **overrides)

    return build


def stored(db) -> int:
    store = FeedbackStore.open(Settings(feedback_path=db))
    try:
        return store.count()
    finally:
        store.close()


def post(client, headers=None, **fields):
    data = {k: (io.BytesIO(v), "photo.jpg") if isinstance(v, bytes) else v for k, v in fields.items()}
    return client.post("/v1/feedback", data=data, headers=headers or {}, content_type="multipart/form-data")


def test_a_shared_photo_is_stored_and_a_second_post_updates_it(feedback_app, db, cat_bytes):
    client = feedback_app().test_client()
    first = post(client, image=cat_bytes, answer="dog", correct="cat",
                 probabilities=json.dumps({"cat": 0.3, "dog": 0.7}))
    assert first.status_code == 201, first.json
    body = first.json
    assert body["status"] == "created" and body["photo_stored"] is True
    assert body["sha256"] == hashlib.sha256(cat_bytes).hexdigest()
    assert body["model"]["name"] == "catdog-lite2"  # the served model's, when the client does not say
    again = post(client, sha256=body["sha256"], answer="dog", correct="other")
    assert again.status_code == 200 and again.json["id"] == body["id"] and again.json["status"] == "updated"
    assert stored(db) == 1
    summary = client.get("/v1/feedback/summary").json
    assert summary["total"] == 1 and summary["corrected"] == 1 and summary["photos"] == 0
    assert summary["by_version"][0]["counts"] == [{"answer": "dog", "correct": "other", "count": 1}]


def test_labels_come_from_the_model(feedback_app, db):
    client = feedback_app(open_world=False).test_client()
    # "other" is one of the model's labels even when the server never answers it
    assert post(client, sha256="a" * 64, answer="dog", correct="other").status_code == 201
    refused = post(client, sha256="b" * 64, answer="dog", correct="horse")
    assert refused.status_code == 400 and refused.json["error"]["code"] == "invalid_field"
    assert "'cat' or 'dog' or 'other'" in refused.json["error"]["message"]
    assert stored(db) == 1


@pytest.mark.parametrize("fields, status, code", [
    ({"answer": "dog", "correct": "cat"}, 400, "missing_field"),
    ({"sha256": "a" * 64, "answer": "dog"}, 400, "missing_field"),
    ({"sha256": "a" * 64, "correct": "cat"}, 400, "missing_field"),
    ({"sha256": "a" * 64, "answer": "dog", "correct": "tiger"}, 400, "invalid_field"),
    ({"sha256": "a" * 64, "answer": "wolf", "correct": "cat"}, 400, "invalid_field"),
    ({"sha256": "not-a-hash", "answer": "dog", "correct": "cat"}, 400, "invalid_field"),
    ({"sha256": "a" * 64, "answer": "dog", "correct": "cat", "probabilities": "{nope"}, 400, "invalid_field"),
    ({"sha256": "a" * 64, "answer": "dog", "correct": "cat", "probabilities": '{"cat": 1.5}'}, 400, "invalid_field"),
    ({"sha256": "a" * 64, "answer": "dog", "correct": "cat", "probabilities": '{"horse": 0.5}'}, 400,
     "invalid_field"),
    ({"sha256": "a" * 64, "answer": "dog", "correct": "cat", "version": "v" * 65}, 400, "invalid_field"),
    ({"sha256": "a" * 64, "answer": "dog", "correct": "cat", "model": "lite\x1b[31m"}, 400, "invalid_field"),
    ({"sha256": "a" * 64, "answer": "dog", "correct": "cat", "probabilities": "[" * 3000}, 400, "invalid_field"),
    ({"sha256": "a" * 64, "answer": "dog", "correct": "cat", "probabilities": '{"cat": 0.5' + " " * 5000 + "}"}, 400, "invalid_field"),
])
def test_a_bad_field_is_a_json_error_and_stores_nothing(feedback_app, db, fields, status, code):
    response = post(feedback_app().test_client(), **fields)
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code and response.json["error"]["message"]
    assert stored(db) == 0


@pytest.mark.parametrize("code", ["empty_file", "not_an_image", "truncated_image", "unsupported_format",
                                  "too_many_pixels"])
def test_a_bad_photo_is_the_prediction_error_and_stores_nothing(feedback_app, db, bad_inputs, code):
    response = post(feedback_app().test_client(), image=bad_inputs[code], answer="dog", correct="cat")
    assert 400 <= response.status_code < 500
    assert response.json["error"]["code"] == code
    assert stored(db) == 0


def test_a_photo_over_the_decode_budget_stores_nothing(feedback_app, db, cat_bytes, classifier, monkeypatch):
    monkeypatch.setattr(classifier, "max_decode_bytes", 10_000)  # the served engine's budget, as predictions
    response = post(feedback_app().test_client(), image=cat_bytes, answer="dog", correct="cat")
    assert response.status_code == 422 and response.json["error"]["code"] == "decode_too_costly"
    assert stored(db) == 0


def test_an_oversized_upload_is_413_and_stores_nothing(feedback_app, db, cat_bytes):
    client = feedback_app(max_upload_mb=0.01).test_client()
    response = post(client, image=cat_bytes + b"\0" * 20_000, answer="dog", correct="cat")
    assert response.status_code == 413 and response.json["error"]["code"] == "file_too_large"
    assert stored(db) == 0


def test_a_hash_that_is_not_the_photos_stores_nothing(feedback_app, db, cat_bytes):
    response = post(feedback_app().test_client(), image=cat_bytes, sha256="a" * 64, answer="dog", correct="cat")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_field"
    assert stored(db) == 0


def test_other_body_types_are_415(feedback_app, db):
    response = feedback_app().test_client().post("/v1/feedback", json={"answer": "dog"})
    assert response.status_code == 415 and response.json["error"]["code"] == "unsupported_media_type"


def test_api_keys_guard_every_feedback_call(feedback_app, db):
    client = feedback_app(api_keys=[KEY]).test_client()
    fields = {"sha256": "c" * 64, "answer": "dog", "correct": "cat"}
    assert post(client, **fields).status_code == 401
    assert client.get("/v1/feedback/summary").status_code == 401
    assert client.delete("/v1/feedback/1").status_code == 401
    assert stored(db) == 0
    created = post(client, headers={"X-API-Key": KEY}, **fields)
    assert created.status_code == 201
    assert client.get("/v1/feedback/summary", headers={"X-API-Key": KEY}).json["total"] == 1
    wrong = client.delete(f"/v1/feedback/{created.json['id']}", headers={"X-API-Key": "x" * 24})
    assert wrong.status_code == 401 and stored(db) == 1
    deleted = client.delete(f"/v1/feedback/{created.json['id']}", headers={"X-API-Key": KEY})
    assert deleted.status_code == 200 and deleted.json == {"deleted": created.json["id"]}
    missing = client.delete(f"/v1/feedback/{created.json['id']}", headers={"X-API-Key": KEY})
    assert missing.status_code == 404 and missing.json["error"]["code"] == "feedback_not_found"
    for bad in ("abc", "-1", "1.5", "9" * 30):
        response = client.delete(f"/v1/feedback/{bad}", headers={"X-API-Key": KEY})
        assert response.status_code == 404 and response.json["error"]["code"] == "feedback_not_found", bad
    assert stored(db) == 0


def test_posts_share_the_photo_rate_limit(feedback_app, db):
    client = feedback_app(rate_limit="2/minute").test_client()
    for n in range(2):
        assert post(client, sha256=f"{n}" * 64, answer="dog", correct="cat").status_code == 201
    refused = post(client, sha256="9" * 64, answer="dog", correct="cat")
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
    assert stored(db) == 2


def test_metrics_count_feedback_by_answer_and_correction(feedback_app):
    client = feedback_app().test_client()
    post(client, sha256="a" * 64, answer="dog", correct="cat")
    post(client, sha256="b" * 64, answer="dog", correct="cat")
    post(client, sha256="c" * 64, answer="cat", correct="cat")
    text = client.get("/metrics").text
    assert 'catdog_feedback_total{answer="dog",correct="cat",corrected="true"} 2.0' in text
    assert 'catdog_feedback_total{answer="cat",correct="cat",corrected="false"} 1.0' in text


def test_predictions_never_touch_the_feedback_store(feedback_app, db, cat_bytes):
    app = feedback_app()
    response = app.test_client().post("/v1/predict", data={"image": (io.BytesIO(cat_bytes), "cat.jpg")})
    assert response.status_code == 200
    assert app.extensions["catdog_feedback"]._store is None
    assert not db.exists()


def test_the_python_client(feedback_app, db, cat_bytes):
    with serving(feedback_app()) as url, Client(url) as api:
        shared = api.feedback(answer="dog", correct="cat", image=cat_bytes, probabilities={"cat": 0.4, "dog": 0.6})
        assert shared["id"] >= 1 and shared["photo_stored"] is True and shared["status"] == "created"
        digest = hashlib.sha256(cat_bytes).hexdigest()
        assert api.feedback(answer="dog", correct="other", sha256=digest)["id"] == shared["id"]
        hashed = api.feedback(answer="cat", correct="dog", sha256="d" * 64, model="catdog-lite0", version="1.0.0")
        assert hashed["model"] == {"name": "catdog-lite0", "version": "1.0.0"}
        summary = api.feedback_summary()
        assert summary["total"] == 2 and summary["corrected"] == 2
        with pytest.raises(APIError) as refused:
            api.feedback(answer="dog", correct="horse", sha256="e" * 64)
        assert refused.value.code == "invalid_field" and refused.value.status == 400
        with pytest.raises(ValueError, match="sha256"):
            api.feedback(answer="dog", correct="cat")
        assert api.delete_feedback(hashed["id"]) == {"deleted": hashed["id"]}
        with pytest.raises(APIError) as gone:
            api.delete_feedback(hashed["id"])
        assert gone.value.code == "feedback_not_found" and gone.value.status == 404
    assert stored(db) == 1


def test_the_openapi_document_describes_feedback_with_the_models_labels(feedback_app):
    from openapi_spec_validator import validate

    document = feedback_app().test_client().get("/openapi.json").json
    validate(document)
    post_op = document["paths"]["/v1/feedback"]["post"]
    fields = post_op["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert fields["correct"]["enum"] == ["cat", "dog", "other"]
    assert {"201", "200", "400", "413", "415", "422"} <= set(post_op["responses"])
    assert "feedback_not_found" in document["paths"]["/v1/feedback/{entry_id}"]["delete"]["responses"]["404"][
        "description"]


def test_no_client_address_is_stored(feedback_app, db, cat_bytes):
    """Privacy: nothing that identifies the sender (address, forwarded address, file name) is kept."""
    app = feedback_app(proxy_hops=1)
    client = app.test_client()
    response = client.post("/v1/feedback", data={"answer": "dog", "correct": "cat",
                                                 "image": (io.BytesIO(cat_bytes), "holiday-with-alice.jpg")},
                           headers={"X-Forwarded-For": "203.0.113.7"}, environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert response.status_code == 201
    store = FeedbackStore.open(Settings(feedback_path=db))
    with store.engine.connect() as conn:
        columns = conn.exec_driver_sql("SELECT * FROM feedback").keys()
        rows = conn.exec_driver_sql("SELECT * FROM feedback").all()
    store.close()
    text = repr([value for row in rows for value in row if not isinstance(value, bytes)])
    for needle in ("203.0.113.7", "198.51.100.9", "127.0.0.1", "alice"):
        assert needle not in text
    assert not any(word in name for name in columns for word in ("ip", "addr", "user", "file", "agent"))


def test_a_database_that_does_not_answer_is_503_and_the_api_keeps_serving(feedback_app, cat_bytes):
    app = feedback_app(feedback_url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    client = app.test_client()
    answer = post(client, image=cat_bytes, answer="dog", correct="cat")
    assert answer.status_code == 503, answer.json
    assert answer.json["error"]["code"] == "feedback_unavailable" and answer.headers["Retry-After"] == "5"
    assert "nothing was stored" in answer.json["error"]["message"]
    assert "127.0.0.1" not in answer.json["error"]["message"]  # what the database said goes to the log only
    assert client.get("/v1/feedback/summary").status_code == 503
    assert client.post("/v1/predict", data={"image": (io.BytesIO(cat_bytes), "cat.jpg")}).status_code == 200
