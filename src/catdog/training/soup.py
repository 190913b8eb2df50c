"""Average the weights of several open-world fine-tunes of one parent ("model soup").

Fine-tunes that start from the same weights stay in one basin of the loss, so their weights
can be averaged into one network (Wortsman et al., 2022, "Model soups"): the average costs
nothing more to serve and is often more robust out of distribution than any one of them.
Measured here by leaving people out (the model card): two fold models that never saw a person
answered other for 29% and 34% of people alone, 48% averaged, with more held-out pets right.

Runs with kinds of "other" (:class:`catdog.training.openworld.OtherKinds`) and runs without
can be mixed: a plain head's "other" row is copied into every kind's row, its bias lowered by
log(rows), which leaves its merged answers exactly as they were. The soup is then calibrated
and its "other" threshold fitted on the held-out split its runs share (never `val`), as
``catdog train`` does for one run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from catdog.model.recipe import RECIPE_FILENAME, Recipe
from catdog.training import metrics
from catdog.training.data import TrainingDataError, serving_inputs
from catdog.training.export import torch_from_onnx
from catdog.training.openworld import (
    OtherKinds,
    add_other_head,
    export_open_world,
    recorded_split,
    summarize,
)
from catdog.training.train import logits_of

log = logging.getLogger("catdog.train")

# What every run of a soup must share: one parent, one input, one held-out split.
SHARED = ("base_model", "holdout_fraction", "split", "seed", "parent_training")


def widened(state: dict, n_known: int, rows: int) -> dict:
    """A state dict whose head has one "other" row, given ``rows`` rows of it that merge
    (log-sum-exp) into exactly the same answer."""
    weight, bias = state["classifier.weight"], state["classifier.bias"]
    extra = rows - (weight.shape[0] - n_known)
    if extra == 0:
        return state
    if weight.shape[0] != n_known + 1:
        raise TrainingDataError(f"a head of {weight.shape[0]} rows cannot join a soup of {n_known + rows}")
    other_w, other_b = weight[n_known:], bias[n_known:] - math.log(rows)
    return state | {"classifier.weight": torch.cat([weight[:n_known], other_w.repeat(rows, 1)]),
                    "classifier.bias": torch.cat([bias[:n_known], other_b.repeat(rows)])}


def _same_recipe(runs: Sequence[Path], recipes: Sequence[Recipe]) -> None:
    first = recipes[0]
    for run, recipe in zip(runs[1:], recipes[1:]):
        if recipe.architecture != first.architecture or recipe.input != first.input \
                or recipe.labels != first.labels:
            raise TrainingDataError(f"{run} is not the same network, input or labels as {runs[0]}")
        differ = [k for k in SHARED if recipe.training.get(k) != first.training.get(k)]
        if differ:
            raise TrainingDataError(f"{run} differs from {runs[0]} in {', '.join(differ)}: a soup's runs "
                                    "share one parent and one held-out split")
    kinds = {json.dumps(r.training.get("other_kinds") or {}, sort_keys=True) for r in recipes} - {"{}"}
    if len(kinds) > 1:
        raise TrainingDataError("the runs teach different kinds of other; a soup takes one set of kinds")


def soup(runs: Sequence[Path], data: Sequence[Path], others: Sequence[Path], out: Path, *,
         other_cap: float = 0.003, name: str | None = None, version: str | None = None) -> dict:
    """Average ``runs`` (``catdog train --init --others`` folders with ``model.pt``), calibrate the
    average on their shared held-out split, export it. Returns the summary."""
    started = time.time()
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise TrainingDataError("a soup needs at least two runs")
    missing = [str(r) for r in runs if not (r / "model.pt").is_file() or not (r / "history.json").is_file()]
    if missing:
        raise TrainingDataError(f"no model.pt or history.json in {', '.join(missing)}: give `catdog train --out` "
                                "folders of open-world runs")
    recipes = [Recipe.read(r / RECIPE_FILENAME) for r in runs]
    _same_recipe(runs, recipes)
    first = recipes[0]
    known = first.known_labels
    other_kinds = next((r.training["other_kinds"] for r in recipes if r.training.get("other_kinds")), {})
    kinds = OtherKinds(other_kinds, len(known))
    relabel: dict[str, str] = {}
    for recipe in recipes:
        relabel |= recipe.training.get("relabel") or {}

    init = Path(json.loads((runs[0] / "history.json").read_text())["config"]["init"])
    model = torch_from_onnx(init / "model.onnx", first.architecture)
    add_other_head(model, len(known), kinds.rows)
    states = [widened(torch.load(r / "model.pt", map_location="cpu", weights_only=True), len(known), kinds.rows) for r in runs]
    model.load_state_dict({k: sum(s[k].float() for s in states) / len(states) for k in states[0]})
    model.eval()

    # The runs' shared split, with every correction any of them was taught (none moves a photo).
    recipe = first.model_copy(update={"training": first.training | {"relabel": relabel}})
    _, held = recorded_split(recipe, data, others)
    x, y = serving_inputs(held, first.input)
    logits = kinds.merge_np(logits_of(model, torch.from_numpy(x)))
    labels = first.labels
    temperature, report = metrics.calibrated_report(logits, y, labels, first.other_label, other_cap)
    log.info("soup of %d runs, held out: %s", len(runs), {k: report[k] for k in ("accuracy", "log_loss", "ece")}
             | report["open_world"])

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    diff = export_open_world(model, kinds, out, first.input.size, x[:8])
    method = (f"uniform weight average (model soup) of {len(runs)} open-world fine-tunes of {first.training.get('base_model')}: "
              + "; ".join(f"{r.name}: {rec.training.get('method', '')}" for r, rec in zip(runs, recipes)))
    training = first.training | {
        "method": method, "soup": [str(r) for r in runs], "relabel": relabel, "other_kinds": other_kinds,
        "data": [str(d) for d in data], "others": [str(o) for o in others], "other_cap": other_cap,
        "n_holdout": len(y), "onnx_max_abs_diff": diff, "seconds": round(time.time() - started, 1)}
    Recipe(name=name or first.name, version=version or first.version, architecture=first.architecture,
           labels=labels, input=first.input, output="logits", other_label=first.other_label,
           other_threshold=report["other_threshold"], temperature=temperature,
           metrics={"holdout": summarize(report)}, training=training).write(out / RECIPE_FILENAME)
    summary = {"temperature": temperature, "other_threshold": report["other_threshold"], "holdout": report,
               "onnx_max_abs_diff": diff, "runs": [str(r) for r in runs], "seconds": training["seconds"],
               "config": {"init": str(init)}}
    (out / "history.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary
