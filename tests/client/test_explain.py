"""Client.explain against the real app on a loopback port."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from catdog.api import create_app
from catdog.client import APIError, Client
from catdog.config import Settings
from catdog.model.engine import Classifier
from tests.api.conftest import serving
from tests.model.test_explain import without_class_maps


@pytest.fixture
def api(live_url):
    with Client(live_url, timeout=30) as client:
        yield client


def test_explain_gives_the_engines_prediction_and_map(api, classifier, cat_photo):
    local = classifier.explain(cat_photo.read_bytes())
    result = api.explain(cat_photo)
    assert result.prediction.label == local.prediction.label == result.label
    assert result.prediction.probabilities == pytest.approx(local.prediction.probabilities, abs=1e-6)
    grid = local.heatmap()
    assert len(result.heatmap) == grid.shape[0] and len(result.heatmap[0]) == grid.shape[1]
    assert result.heatmap[5][10] == pytest.approx(float(grid[5, 10]), abs=1e-4)
    assert result.overlay_png is None


def test_explain_with_overlay_gets_png_bytes_of_the_photos_size(api, dog_photo):
    result = api.explain(dog_photo, overlay=True)
    assert result.overlay_png is not None
    overlay = Image.open(io.BytesIO(result.overlay_png))
    assert overlay.format == "PNG" and overlay.size == Image.open(dog_photo).size


def test_a_model_that_cannot_explain_raises_its_code(tmp_path, classifier, cat_photo):
    model = without_class_maps(tmp_path / "m", classifier)
    app = create_app(Settings(), classifier=Classifier.load(model, threads=1, warmup=False))
    with serving(app) as url, Client(url, timeout=30) as client, pytest.raises(APIError) as err:
        client.explain(cat_photo)
    assert err.value.code == "explain_unavailable" and err.value.status == 422
