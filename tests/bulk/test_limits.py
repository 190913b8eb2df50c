"""``catdog bulk`` loads its model with every engine limit of the settings (Classifier.from_settings)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("apache_beam", reason="needs the bulk extra: pip install -e '.[bulk]' (scripts/test.sh does)")

from apache_beam.pvalue import TaggedOutput

from catdog.bulk.handler import ModelSpec, shared_classifier
from catdog.bulk.pipeline import ERRORS, ReadAndPrepare
from catdog.cli import main
from tests.conftest import CAT_PHOTOS


def test_the_workers_model_has_the_settings_engine_limits(monkeypatch):
    monkeypatch.setenv("CATDOG_MAX_DECODE_MB", "0.001")
    monkeypatch.setenv("CATDOG_MAX_PIXELS", "123456")
    clf = shared_classifier(ModelSpec(threads=1))
    assert clf.max_decode_bytes == 1000 and clf.max_pixels == 123_456
    assert ModelSpec(threads=1, max_decode_mb=2.0).load().max_decode_bytes == 2_000_000  # the spec wins


def test_a_photo_over_the_decode_limit_is_an_error_row(monkeypatch):
    monkeypatch.setenv("CATDOG_MAX_DECODE_MB", "0.001")  # 1000 bytes: any real photo costs more to decode
    step = ReadAndPrepare(ModelSpec(threads=1), max_bytes=10_000_000)
    step.setup()
    path = str(CAT_PHOTOS[0])
    (out,) = list(step.process((path, CAT_PHOTOS[0].stat().st_size)))
    assert isinstance(out, TaggedOutput) and out.tag == ERRORS
    assert out.value["error"]["code"] == "decode_too_costly" and out.value["path"] == path


@pytest.mark.slow
def test_catdog_bulk_honours_catdog_max_decode_mb(monkeypatch, tmp_path):
    monkeypatch.setenv("CATDOG_MAX_DECODE_MB", "0.001")
    out = tmp_path / "out"
    assert main(["bulk", str(CAT_PHOTOS[0]), "--out", str(out), "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["photos"] == 0 and summary["error_codes"] == {"decode_too_costly": 1}
