"""bench/openworld.py's val scores, plot and label correction, on the fixture photos (no ../shared needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import openworld


def test_val_scores_count_other_as_wrong_and_the_plot_is_drawn(tmp_path):
    from catdog.model.engine import Classifier, bundled_model_dir

    model = bundled_model_dir()
    scores = openworld.val_scores({str(model): Classifier.load(model, threads=1)}, DATA / "images")[str(model)]
    assert scores == {"val_accuracy": 1.0, "val_answered_other": 0.0, "val_n": 6}
    results = {str(model): {"others_answered_other": 0.93, **scores}, "other/run": {
        "others_answered_other": 0.96, "val_accuracy": 0.985}}
    openworld.plot(results, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").stat().st_size > 10_000


def test_photos_that_show_a_pet_leave_the_non_pet_share():
    shown = sorted(openworld.SHOWS_A_PET)
    non_pets = {"not-pets/imagenet:101_tusker", "not-pets/cifar10:ship_1", *shown}
    assert openworld.caught_without_pets({"not-pets/imagenet:101_tusker", *shown}, non_pets) == pytest.approx(0.5)
    assert openworld.caught_without_pets(set(shown), non_pets) == 1.0


def test_plot_needs_val():
    with pytest.raises(SystemExit):
        openworld.main(["some/model", "--plot", "x.png"])


def test_failures_figure_shows_the_misses(tmp_path):
    photos = sorted((DATA / "not-pets").iterdir())
    worst = [(str(p), "dog", 0.01 * i) for i, p in enumerate(photos)]
    openworld.failures_figure("runs/some-model", worst, tmp_path / "failures.png")
    assert (tmp_path / "failures.png").stat().st_size > 10_000
