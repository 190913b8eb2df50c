"""Every error in the contract: status, stable code, a message that says what to do, always JSON."""

from __future__ import annotations

import io
import logging

import pytest

from catdog.api.errors import ERROR_TABLE, STATUS, status_of
from catdog.model.errors import CatdogError, ImageError, TooManyPixels
from tests.api.conftest import png_claiming
from tests.api.test_predict import upload


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    assert response.headers["X-Request-ID"]
    return response.json["error"]


@pytest.mark.parametrize(
    "code,status",
    [
        ("empty_file", 400),
        ("truncated_image", 400),
        ("not_an_image", 415),
        ("unsupported_format", 415),
        ("too_many_pixels", 422),
    ],
)
@pytest.mark.parametrize("route", ["/predict", "/v1/predict"])
def test_bad_uploads(client, bad_inputs, route, code, status):
    # Every file is named cat.jpg: the name must not fool the server.
    assert_error(client.post(route, data=upload(bad_inputs[code], "cat.jpg")), status, code)


def test_pdf_message_says_what_it_is_and_what_to_send(client, bad_inputs):
    error = assert_error(client.post("/v1/predict", data=upload(bad_inputs["not_an_image"])), 415, "not_an_image")
    assert "PDF" in error["message"] and "JPEG" in error["message"]


def test_html_named_jpg_is_not_an_image(client):
    page = b"<!doctype html><html><body>not a cat</body></html>"
    error = assert_error(client.post("/v1/predict", data=upload(page, "cat.jpg")), 415, "not_an_image")
    assert "HTML" in error["message"]


def test_bomb_within_pillow_limits_is_refused_by_ours(client):
    """8000x8000 passes Pillow's own bomb check; catdog's 40 MP limit still refuses it, undecoded."""
    error = assert_error(client.post("/v1/predict", data=upload(png_claiming(8000, 8000))), 422, "too_many_pixels")
    assert "8000x8000" in error["message"]


def test_raw_body_errors_too(client, bad_inputs):
    assert_error(client.post("/v1/predict", data=bad_inputs["unsupported_format"], content_type="image/tiff"),
                 415, "unsupported_format")


def test_wrong_field_name_names_both_fields(client, cat_bytes):
    error = assert_error(client.post("/v1/predict", data=upload(cat_bytes, field="file")), 400, "missing_field")
    assert "'image'" in error["message"] and "'file'" in error["message"]


def test_no_body_at_all(client):
    error = assert_error(client.post("/v1/predict"), 400, "missing_field")
    assert "'image'" in error["message"]


def test_json_body_is_refused_before_parsing(client):
    assert_error(client.post("/v1/predict", json={"image": "aGVsbG8="}), 415, "unsupported_media_type")


def test_batch_missing_field(client, cat_bytes):
    error = assert_error(client.post("/v1/predict/batch", data=upload(cat_bytes)), 400, "missing_field")
    assert "'images'" in error["message"]


def test_batch_over_the_limit(make_app, cat_bytes):
    client = make_app(max_batch=2).test_client()
    files = [(io.BytesIO(cat_bytes), f"{i}.jpg") for i in range(3)]
    error = assert_error(client.post("/v1/predict/batch", data={"images": files}), 400, "too_many_files")
    assert "3" in error["message"] and "2" in error["message"]


@pytest.mark.parametrize("raw", [False, True], ids=["multipart", "raw"])
def test_body_over_the_limit_is_413(make_app, cat_bytes, raw):
    client = make_app(max_upload_mb=0.05).test_client()  # 52 KB; the photo is ~90 KB
    if raw:
        response = client.post("/v1/predict", data=cat_bytes, content_type="image/jpeg")
    else:
        response = client.post("/v1/predict", data=upload(cat_bytes))
    error = assert_error(response, 413, "file_too_large")
    assert "MB" in error["message"]


def test_413_is_decided_from_content_length_without_reading_the_body(make_app):
    """A client announcing 1 GB is refused before a byte of the body is read."""

    class Unreadable(io.RawIOBase):
        def readinto(self, buffer):
            raise AssertionError("the body was read")

    app = make_app(max_upload_mb=1)
    environ = {"CONTENT_LENGTH": str(1 << 30), "wsgi.input": Unreadable()}
    response = app.test_client().post("/v1/predict", environ_overrides=environ,
                                      content_type="multipart/form-data; boundary=x")
    assert_error(response, 413, "file_too_large")


def test_wrong_method_is_405_with_allow(client):
    error = assert_error(client.get("/predict"), 405, "method_not_allowed")
    assert "POST" in error["message"]
    assert "POST" in client.get("/v1/predict").headers["Allow"]


def test_unknown_path_is_404(client):
    error = assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert "/docs" in error["message"]


def test_bug_is_500_with_request_id_in_body_and_log(client, classifier, cat_bytes, monkeypatch, caplog):
    def broken(source):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(classifier, "predict", broken)
    with caplog.at_level(logging.ERROR, logger="catdog.api"):
        response = client.post("/v1/predict", data=upload(cat_bytes), headers={"X-Request-ID": "trace-42"})
    error = assert_error(response, 500, "internal_error")
    assert error["request_id"] == "trace-42" == response.headers["X-Request-ID"]
    assert "secret internals" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("trace-42" in r.getMessage() and r.exc_info for r in logged)


def test_every_image_error_has_a_status():
    for cls in (*ImageError.__subclasses__(), ImageError):
        assert status_of(cls.__new__(cls)) in (400, 413, 415, 422)
    assert status_of(TooManyPixels(1, 1, 1)) == 422
    assert status_of(CatdogError("x")) == 500


def test_error_table_matches_the_mapping():
    """The docs' table and the real mapping cannot drift apart."""
    by_code = {cls.code: status for cls, status in STATUS.items()}
    for status, code, _ in ERROR_TABLE:
        if code in by_code:
            assert by_code[code] == status, code


def test_each_error_declares_its_status_once_and_the_table_is_made_from_the_classes():
    from catdog.api import errors as api_errors
    from catdog.api.codes import HTTP_CODES, HTTP_WHEN

    for cls, status in STATUS.items():
        assert status == cls.status and status_of(cls.__new__(cls)) == status
    documented = [cls for cls in STATUS if "when" in vars(cls) and cls.when]
    assert {(cls.status, cls.code, cls.when) for cls in documented} | {
        (status, HTTP_CODES[status], when) for status, when in HTTP_WHEN.items()} == set(ERROR_TABLE)
    # The codes Werkzeug's and gunicorn's answers share with an error class are the class's.
    for cls in (api_errors.ImageTooLarge, api_errors.UnsupportedBody, api_errors.Unauthorized,
                api_errors.RateLimited, api_errors.RequestError):
        assert HTTP_CODES[cls.status] == cls.code


def test_backends_declare_what_they_can_do(classifier):
    from catdog.model.backends import KerasBackend, OnnxBackend

    assert (OnnxBackend.platform, OnnxBackend.explains) == ("onnxruntime_onnx", True)
    assert (KerasBackend.platform, KerasBackend.explains) == ("keras", False)
    assert classifier.platform == "onnxruntime_onnx" and classifier.info()["explain"] is True
