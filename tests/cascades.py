"""Cascade models for the tests, built by ``catdog cascade`` itself from the repository's models:
``models/catdog-lite0`` (2 labels, 256 px) as the fast model and ``models/catdog-lite2-v1``
(2 labels, 288 px) as the accurate one, on the fixture photos (``--holdout 0.5``: 2 cats and
2 dogs held out, since the six photos are all there is).

Four held-out photos fit the fast copy's temperature to almost nothing (every confidence
rounds to 1), which is right for them and useless for testing the routing: :func:`variant`
copies the cascade with a chosen hand-off and, by default, the fast copy's temperature set
to 2 so its confidences spread out between 0.5 and 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tests.conftest import CAT_PHOTOS, DATA, DOG_PHOTOS, IMAGES

MODELS = DATA.parents[1] / "models"
FAST, ACCURATE = MODELS / "catdog-lite0", MODELS / "catdog-lite2-v1"
NOT_PETS = sorted((DATA / "not-pets").glob("*.jpg"))
#: Cats, dogs and flowers interleaved, so any routing mixes the order.
PHOTOS = [p for trio in zip(CAT_PHOTOS, DOG_PHOTOS, NOT_PETS + [None]) for p in trio if p is not None]


def build(out: Path) -> Path:
    """``catdog cascade FAST ACCURATE tests/data/images --out OUT --holdout 0.5 --threads 1``."""
    from catdog.cli import main

    code = main(["cascade", str(FAST), str(ACCURATE), str(IMAGES), "--out", str(out), "--holdout", "0.5",
                 "--threads", "1"])
    if code != 0:
        raise RuntimeError(f"catdog cascade failed ({code})")
    return out


def edit_json(path: Path, **changes) -> None:
    recipe = json.loads(path.read_text())
    for key, value in changes.items():
        target = recipe
        *parents, leaf = key.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    path.write_text(json.dumps(recipe))


def variant(built: Path, out: Path, handoff: float | None = None, fast_temperature: float | None = 2.0) -> Path:
    """A copy of the built cascade with another hand-off and fast temperature (edited in the
    JSON, so the engine's own checks judge them)."""
    shutil.copytree(built, out)
    if handoff is not None:
        edit_json(out / "model.json", cascade__handoff=handoff)
    if fast_temperature is not None:
        edit_json(out / "fast" / "model.json", temperature=fast_temperature)
    return out


def fast_confidences(cascade_dir: Path, photos) -> np.ndarray:
    """The fast model's largest probability for each photo, from the fast model alone."""
    from catdog.model.engine import Classifier

    fast = Classifier.load(cascade_dir / "fast", threads=1, warmup=False)
    return fast.probabilities(np.stack([fast.prepare(p) for p in photos])).max(axis=1)


def mixed_handoff(cascade_dir: Path, photos=PHOTOS) -> float:
    """A hand-off with some of ``photos`` on each path (the median of the fast confidences)."""
    confidences = np.unique(fast_confidences(cascade_dir, photos))
    if len(confidences) < 2:
        raise AssertionError(f"the fast model is equally sure of every photo: {confidences}")
    handoff = float(confidences[len(confidences) // 2])
    if not 0.5 <= handoff < 1.0:
        raise AssertionError(f"no hand-off in [0.5, 1) splits {confidences}")
    return handoff
