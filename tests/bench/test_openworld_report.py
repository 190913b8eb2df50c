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


def test_the_trade_off_does_not_hang_on_one_threshold_photo():
    pets = [0.01 * i for i in range(100)]  # P(other) of 100 pets: 0.00 .. 0.99
    non_pets = [0.5, 0.95, 0.985, 0.999]
    curve = openworld.trade_off(pets, non_pets)
    # letting 2% of pets go to other puts the threshold at 0.97 (two of four caught), 5% at 0.94
    # (three), 0.3% at 0.987 (only the 0.999)
    assert curve["caught_at_pet_loss"]["0.02"] == pytest.approx(0.5)
    assert curve["caught_at_pet_loss"]["0.05"] == pytest.approx(0.75)
    assert curve["caught_at_pet_loss"]["0.003"] == pytest.approx(0.25)
    assert 0.5 < curve["auroc"] < 1
    assert openworld.trade_off([], non_pets) == {}
