"""Teach a trained cat/dog model to answer "other": a new three-way head on its own backbone.

The fine-tuned backbone already tells cats from dogs at 99%; what it lacks is an answer
for photos of anything else. Outlier exposure (Hendrycks et al., 2019) adds that answer
by training on photos that are neither: here a new linear head over the backbone's
pooled features, fitted on cat, dog and non-pet photos, so the third answer costs
nothing at serving time (same forward pass, a 3-column instead of a 2-column head).

Every choice is made on a held-out split of the training folders, never on the
validation set: the weight decay (held-out log loss), the temperature (held-out log
loss) and the "other" threshold (the highest P(other) among held-out *pets* allowed to
stay a pet, so that at most ``other_cap`` of real pets are lost to "other").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from catdog.model.errors import ImageError
from catdog.model.preprocess import prepare
from catdog.model.recipe import RECIPE_FILENAME, InputSpec, Recipe
from catdog.training import metrics
from catdog.training.data import Sample, find_samples, find_unlabelled, stratified_split
from catdog.training.export import export_onnx, max_abs_difference, torch_from_onnx

log = logging.getLogger("catdog.train")

PET_LABELS = ("cat", "dog")
OTHER = "other"


@dataclass
class HeadConfig:
    init: Path  # a catdog model directory (float ONNX + model.json): its backbone is kept
    data: list[Path]  # folders with cat/ and dog/
    others: list[Path]  # folders of photos that are neither (searched recursively)
    out: Path
    holdout_fraction: float = 0.2
    seed: int = 0
    other_cap: float = 0.003  # most held-out pets allowed to be answered "other"
    weight_decays: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    flip: bool = True  # also learn from mirrored training photos
    threads: int | None = None
    name: str | None = None
    version: str = "2.0.0"
    extra: dict = field(default_factory=dict)


def open_world_samples(data: Sequence[Path], others: Sequence[Path]) -> list[Sample]:
    """Pets labelled 0 (cat) / 1 (dog) by folder, every photo under ``others`` labelled 2."""
    pets = find_samples(data, PET_LABELS) if data else []
    return pets + [s for folder in others for s in find_unlabelled(folder, 2)]


def _is_parent_folder(folder: Path, parent_data: Sequence[str]) -> bool:
    return any(folder.resolve().as_posix().endswith("/" + name.strip("/")) for name in parent_data)


def open_world_split(parent_training: dict, data: Sequence[Path], others: Sequence[Path],
                     holdout_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(fit, held out), where no held-out photo was seen by the parent model's training.

    The folders the parent was fine-tuned on are split exactly as its training split them
    (its seed and held-out fraction), so its held-out photos stay held out here: a
    threshold or temperature fitted on photos the backbone had learned would be
    over-confident. New folders (more pets, the non-pets) get their own stratified split.
    """
    parent_data = parent_training.get("data", [])
    old = [Path(d) for d in data if _is_parent_folder(Path(d), parent_data)]
    new = [Path(d) for d in data if not _is_parent_folder(Path(d), parent_data)]
    fit: list[Sample] = []
    held: list[Sample] = []
    if old:
        n = parent_training.get("n_train", 0) + parent_training.get("n_holdout", 0)
        fraction = parent_training["n_holdout"] / n if n else holdout_fraction
        fit, held = stratified_split(find_samples(old, PET_LABELS), round(fraction, 3),
                                     parent_training.get("seed", seed))
        if parent_training.get("n_holdout") not in (None, len(held)):
            log.warning("the parent held out %s photos, this split %d: are these its training folders?",
                        parent_training["n_holdout"], len(held))
    more_fit, more_held = stratified_split(open_world_samples(new, others), holdout_fraction, seed)
    return fit + more_fit, held + more_held


@torch.no_grad()
def pooled_features(model: nn.Module, samples: Sequence[Sample], spec: InputSpec, *, flip: bool = False,
                    batch_size: int = 32, desc: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """The backbone's pooled features of each photo through the serving path (and its mirror image)."""
    model.eval()
    feats, labels, batch, batch_y = [], [], [], []

    def flush():
        x = torch.from_numpy(np.stack(batch))
        feats.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
        labels.extend(batch_y)
        batch.clear()
        batch_y.clear()

    for s in tqdm(samples, desc=desc, unit="img", dynamic_ncols=True):
        try:
            x = prepare(s.path, spec)
        except (ImageError, OSError):
            continue
        views = [x, np.ascontiguousarray(x[..., ::-1])] if flip else [x]
        batch.extend(views)
        batch_y.extend([s.label] * len(views))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    dim = model.num_features
    return (np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)), np.asarray(labels, dtype=int)


def fit_linear(x: np.ndarray, y: np.ndarray, k: int, weight_decay: float, max_iter: int = 500
               ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (L-BFGS, L2 penalty, classes weighted equally): (W (D, K), b (K,))."""
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(y).long()
    counts = np.bincount(y, minlength=k).astype(np.float32)
    weight = torch.from_numpy(counts.sum() / (k * np.maximum(counts, 1)))
    w = torch.zeros(x.shape[1], k, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(xt @ w + b, yt, weight=weight) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def train_head(cfg: HeadConfig) -> dict:
    """Fit, select, calibrate and export the three-way model. Returns the summary."""
    started = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.out = Path(cfg.out)
    cfg.out.mkdir(parents=True, exist_ok=True)
    parent = Recipe.read(Path(cfg.init) / RECIPE_FILENAME)
    model = torch_from_onnx(Path(cfg.init) / "model.onnx", parent.architecture).eval()
    spec = parent.input
    labels = (*PET_LABELS, OTHER)

    train_samples, holdout = open_world_split(parent.training, cfg.data, cfg.others, cfg.holdout_fraction, cfg.seed)
    log.info("%d photos to fit, %d held out", len(train_samples), len(holdout))
    x_train, y_train = pooled_features(model, train_samples, spec, flip=cfg.flip, desc="features (train)")
    x_hold, y_hold = pooled_features(model, holdout, spec, desc="features (held out)")

    # Standardised features condition L-BFGS; the scaling is folded back into the head.
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    z_train, z_hold = (x_train - mean) / std, (x_hold - mean) / std
    candidates = []
    for wd in cfg.weight_decays:
        w, b = fit_linear(z_train, y_train, len(labels), wd)
        loss = metrics.log_loss(y_hold, metrics.softmax(z_hold @ w + b))
        log.info("weight decay %g: held-out log loss %.4f", wd, loss)
        candidates.append((loss, wd, w, b))
    loss, wd, w, b = min(candidates, key=lambda c: c[0])
    head_w = (w / std[:, None]).T.astype(np.float32)  # (K, D) as nn.Linear stores it
    head_b = (b - (mean / std) @ w).astype(np.float32)
    model.reset_classifier(len(labels))
    with torch.no_grad():
        model.get_classifier().weight.copy_(torch.from_numpy(head_w))
        model.get_classifier().bias.copy_(torch.from_numpy(head_b))

    logits = x_hold @ head_w.T + head_b
    temperature = metrics.fit_temperature(logits, y_hold)
    probs = metrics.softmax(logits / temperature)
    threshold = metrics.choose_other_threshold(probs, y_hold, labels.index(OTHER), cfg.other_cap)
    pred = metrics.open_world_decisions(probs, labels.index(OTHER), threshold)
    report = metrics.classification_report(y_hold, probs, labels, pred=pred, other_label=OTHER)
    log.info("held out: %s", {k: report[k] for k in ("accuracy", "log_loss", "ece")} | report["open_world"])

    onnx_path = export_onnx(model, cfg.out / "model.onnx", image_size=spec.size)
    probe = np.stack([prepare(s.path, spec) for s in holdout[:8]])
    diff = max_abs_difference(model, onnx_path, probe)
    log.info("ONNX export verified: max |torch - onnxruntime| = %.2e", diff)
    summary = {
        "weight_decay": wd, "temperature": temperature, "other_threshold": threshold,
        "holdout": report, "onnx_max_abs_diff": diff, "n_fit": len(y_train), "n_holdout": len(y_hold),
        "seconds": round(time.time() - started, 1),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
    }
    summary["config"].update(data=[str(d) for d in cfg.data], others=[str(d) for d in cfg.others])
    Recipe(
        name=cfg.name or parent.name.removesuffix("-fp32") + "-fp32", version=cfg.version,
        architecture=parent.architecture, labels=labels, input=spec, output="logits",
        other_label=OTHER, other_threshold=threshold, temperature=temperature,
        metrics={"holdout": summarize(report)},
        training={"base_model": f"{parent.name} {parent.version} (its backbone, frozen)",
                  "head": f"3-way linear head, outlier exposure, weight decay {wd:g} (held-out log loss)",
                  "other_cap": cfg.other_cap, "holdout_fraction": cfg.holdout_fraction,
                  "data": summary["config"]["data"],
                  "others": summary["config"]["others"], "n_fit": summary["n_fit"],
                  "n_holdout": summary["n_holdout"], "seed": cfg.seed, "seconds": summary["seconds"],
                  "onnx_max_abs_diff": diff, "parent_training": parent.training},
    ).write(cfg.out / RECIPE_FILENAME)
    (cfg.out / "history.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def summarize(report: dict) -> dict:
    """The headline numbers of a report, as the recipe keeps them."""
    keep = {k: report[k] for k in ("n", "accuracy", "log_loss", "ece", "roc_auc") if k in report}
    return keep | ({"open_world": report["open_world"]} if "open_world" in report else {})
