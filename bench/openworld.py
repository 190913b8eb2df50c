"""Open world, source by source: how an open-world model does on its held-out split.

The held-out split is the one the model's training recorded (``model.json`` -> ``training``):
photos no training step saw and no threshold was fitted on... except the temperature and
the "other" threshold themselves, which are fitted on this split by design (the model card
says so; val is the independent check). For each source folder (Kaggle, pet breeds,
ImageNet pets, and the non-pet sources: ImageNet classes, flowers, CIFAR-10) it prints the
number of photos, the share answered correctly and the share answered "other", then the
errors on non-pets by ImageNet class when the file names carry one.

    python bench/openworld.py src/catdog/models/catdog-lite2 runs/kd3-int8
    python bench/openworld.py MODEL_DIR... --data ../shared/data --json out.json

Several models are run on the very same photos, side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT

from models import _locate

DEFAULT_DATA = ROOT.parent / "shared" / "data"


def held_out(recipe, data_root: Path):
    """The held-out samples of an open-world model, found again under ``data_root``."""
    from catdog.training.openworld import open_world_split

    training = recipe.training
    parent = training.get("parent_training", training)

    def locate(recorded: str) -> Path:
        found = _locate(Path(recorded), data_root)
        if found is None:
            raise SystemExit(f"{recorded} not found under {data_root}")
        return found

    data = [locate(d) for d in training.get("data", [])]
    others = [locate(d) for d in training.get("others", [])]
    _, held = open_world_split(parent, data, others, training.get("holdout_fraction", 0.2), training.get("seed", 0))
    return held


def source_of(path: Path, data_root: Path) -> str:
    rel = path.relative_to(data_root).parts
    return "/".join(rel[:2]) if rel[0] == "not-pets" else rel[0]


def run(models: list[Path], data_root: Path) -> dict:
    from catdog.model.engine import Classifier

    clfs = [Classifier.load(m, threads=2) for m in models]
    samples = held_out(clfs[0].recipe, data_root)
    truth = ["cat", "dog", "other"]
    results: dict = {}
    for model, clf in zip(models, clfs):
        answers = [p.label for p in clf.predict_batch([s.path for s in samples])]
        per: dict = defaultdict(Counter)
        misses = Counter()
        for s, answer in zip(samples, answers):
            src = source_of(s.path, data_root)
            per[src]["n"] += 1
            per[src]["right"] += answer == truth[s.label]
            per[src]["other"] += answer == "other"
            if s.label == 2 and answer != "other":
                misses[f"{src}:{s.path.stem}"] += 1
        pets = [a for s, a in zip(samples, answers) if s.label < 2]
        non = [a for s, a in zip(samples, answers) if s.label == 2]
        pet_right = sum(a == truth[s.label] for s, a in zip(samples, answers) if s.label < 2)
        results[str(model)] = {
            "n": len(samples),
            "pet_accuracy": pet_right / max(1, len(pets)),
            "pets_answered_other": sum(a == "other" for a in pets) / max(1, len(pets)),
            "others_answered_other": sum(a == "other" for a in non) / max(1, len(non)),
            "sources": {k: dict(v) for k, v in sorted(per.items())},
            "non_pets_missed": sorted(misses),
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the folder holding the training data")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--misses", action="store_true", help="list the non-pets each model missed")
    args = parser.parse_args(argv)
    results = run(args.models, args.data.resolve())
    for model, r in results.items():
        print(f"\n{model}: {r['n']} held-out photos; pets right {r['pet_accuracy']:.2%}, pets answered other "
              f"{r['pets_answered_other']:.2%}, non-pets answered other {r['others_answered_other']:.2%}")
        for src, c in r["sources"].items():
            print(f"  {src:28s} n={c['n']:4d}  right {c.get('right', 0) / c['n']:7.2%}  "
                  f"other {c.get('other', 0) / c['n']:7.2%}")
        if args.misses:
            print("  missed:", ", ".join(r["non_pets_missed"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
