"""bench/logo.py: the leave-one-group-out folds and their scoring, on the fixture photos."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import logo


def test_kind_folds_deal_every_animal_kind_once():
    dealt = [kind for kinds in logo.ANIMAL_FOLDS.values() for kind in kinds]
    assert sorted(dealt) == sorted(logo.ANIMAL_KINDS) and len(set(dealt)) == len(dealt)
    assert len(logo.ANIMAL_FOLDS) == 4
    folds = logo.folds()
    assert folds["people"]["exclude"] == ["not-pets/people/*"] and folds["more-cats"]["kind"] == "pet"
    assert all(f"not-pets/animals/{kind}/*" in folds["animals 1/4"]["exclude"] for kind in logo.ANIMAL_FOLDS["animals 1/4"])


def test_a_fold_leaves_out_exactly_its_group(tmp_path):
    import shutil

    data = tmp_path / "data"
    for source in logo.PETS:
        shutil.copytree(DATA / "images", data / source)
    for group, photo in (("people", "tulips.jpg"), ("scenes", "sunflower.jpg")):
        (data / "not-pets" / group).mkdir(parents=True)
        shutil.copy(DATA / "not-pets" / photo, data / "not-pets" / group / photo)
    left_out = logo.photos_of(logo.folds()["people"], data)
    assert [s.path.name for s in left_out] == ["tulips.jpg"] and left_out[0].label == 2
    # A fold that leaves out more than it scores: animals are not trained on, only people scored.
    (data / "not-pets" / "animals" / "horse").mkdir(parents=True)
    shutil.copy(DATA / "not-pets" / "tulips.jpg", data / "not-pets" / "animals" / "horse" / "h.jpg")
    both = logo.folds()["people (animals left out too)"]
    assert [s.path.name for s in logo.photos_of(both, data)] == ["tulips.jpg"]
    assert "not-pets/animals/*" in both["exclude"]


def test_scores_and_the_table():
    from catdog.model.engine import Classifier, bundled_model_dir
    from catdog.training.data import Sample

    clf = Classifier.load(bundled_model_dir(), threads=1)
    cats = [Sample(p, 0) for p in sorted((DATA / "images" / "cat").glob("*.jpg"))]
    row = logo.score(clf, cats)
    assert row == {"n": len(cats), "right": 1.0, "answered_other": 0.0}
    table = logo.markdown({"people": {"kind": "other", "fold": {"n": 3, "right": 2 / 3},
                                      "models": {"v2": {"right": 1 / 3}}}}, ["v2"])
    assert "| people | answered other | 3 | 66.7% | 33.3% |" in table
