"""Fine-tune an ImageNet EfficientNet-Lite on cat/dog photos, calibrate it, export it to ONNX.

One call, :func:`train`, does the whole recipe and writes a model directory the
engine can serve as is: ``model.onnx``, ``model.json`` (preprocessing, labels,
temperature, metrics), ``history.json`` and ``training.png``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from catdog.model.recipe import RECIPE_FILENAME, InputSpec, Recipe
from catdog.training import backbone, metrics
from catdog.training.data import (
    AugmentedImages,
    find_samples,
    labels_in,
    load_for_training,
    serving_inputs,
    stratified_split,
)
from catdog.training.export import export_onnx, max_abs_difference
from catdog.training.metrics import classification_report

log = logging.getLogger("catdog.train")


@dataclass
class TrainConfig:
    data: list[Path]
    out: Path
    arch: str = backbone.ARCHITECTURE
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_ratio: float = 0.3
    weight_decay: float = 0.02
    warmup_steps: int = 60
    holdout_fraction: float = 0.1
    freeze_stages: int = 2
    image_size: int | None = None  # default: the backbone's ImageNet resolution
    crop_scale: float = 0.3  # smallest random crop, as a fraction of the photo's area
    ema_decay: float = 0.995  # > 0: evaluate and export an exponential moving average of the weights
    serve_sizes: tuple[int, ...] = (288,)  # extra serving resolutions to try on the held-out split
    seed: int = 0
    threads: int | None = None
    limit_per_class: int | None = None
    name: str | None = None  # default: catdog-<backbone>, e.g. catdog-lite2
    version: str = "1.0.0"
    extra: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def input_spec(arch: str = backbone.ARCHITECTURE, image_size: int | None = None) -> InputSpec:
    """Serving preprocessing for a backbone: timm's pretrained_cfg (bicubic, its crop_pct, ImageNet mean/std)."""
    spec = backbone.BACKBONES[arch]
    size = image_size or spec.input_size
    return InputSpec(size=size, resize=round(size / spec.crop_pct))


def _limit(samples, per_class: int | None):
    if not per_class:
        return samples
    counts: dict[int, int] = {}
    kept = []
    for s in samples:
        if counts.get(s.label, 0) < per_class:
            kept.append(s)
            counts[s.label] = counts.get(s.label, 0) + 1
    return kept


@torch.no_grad()
def logits_of(model: nn.Module, tensors: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    model.eval()
    return torch.cat([model(tensors[i:i + batch_size]) for i in range(0, len(tensors), batch_size)]).numpy()


def serving_tensors(samples, spec: InputSpec, progress=None) -> tuple[torch.Tensor, np.ndarray]:
    """Held-out photos through the exact serving path, as a tensor batch."""
    x, y = serving_inputs(samples, spec, progress)
    return torch.from_numpy(x), y


def calibrated_report(model: nn.Module, x: torch.Tensor, y: np.ndarray,
                      labels: tuple[str, ...] = ("cat", "dog")) -> tuple[float, dict]:
    """Fit the temperature on (x, y) and report the calibrated metrics."""
    return metrics.calibrated_report(logits_of(model, x), y, labels)


def choose_serving_spec(model: nn.Module, samples, candidates: list[InputSpec], labels: tuple[str, ...] = ("cat", "dog"),
                        first=None):
    """Pick the serving resolution with the lowest calibrated held-out log loss.

    A network fine-tuned on random crops sees objects larger than a centre crop shows
    them, so it often does better when served slightly above its training size
    ("FixRes", Touvron et al. 2019). The choice is made on the held-out part of the
    training data, never on the validation set. Returns (spec, temperature, report, x).
    """
    best = None
    for i, spec in enumerate(candidates):
        x, y = first if (i == 0 and first is not None) else serving_tensors(samples, spec)
        temperature, report = calibrated_report(model, x, y, labels)
        log.info("held-out at %dpx: accuracy %.4f, log loss %.4f", spec.size, report["accuracy"], report["log_loss"])
        if best is None or report["log_loss"] < best[2]["log_loss"]:
            best = (spec, temperature, report, x)
    return best


def _lr_at(step: int, total: int, warmup: int) -> float:
    """Linear warm-up then cosine decay, as a multiplier of the base learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def start_run(seed: int, threads: int | None, out: str | Path) -> tuple[float, Path]:
    """Seed everything, set torch's threads, make the output folder: (start time, folder)."""
    started = time.time()
    seed_everything(seed)
    if threads:
        torch.set_num_threads(threads)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return started, folder


def train(cfg: TrainConfig) -> dict:
    """Train, select the best epoch on the held-out split, calibrate, export. Returns the summary."""
    started, cfg.out = start_run(cfg.seed, cfg.threads, cfg.out)
    spec = input_spec(cfg.arch, cfg.image_size)

    labels = labels_in(cfg.data)  # the data names the labels; the recipe carries them to serving
    samples = _limit(find_samples(cfg.data, labels), cfg.limit_per_class)
    train_samples, holdout_samples = stratified_split(samples, cfg.holdout_fraction, cfg.seed)
    log.info("%d photos: %d to train, %d held out for selection and calibration",
             len(samples), len(train_samples), len(holdout_samples))

    bar = lambda it, **kw: tqdm(it, unit="img", dynamic_ncols=True, **kw)
    train_images, train_kept = load_for_training(train_samples, short_side=round(spec.resize * 1.15),
                                                 progress=lambda s: bar(s, desc="decode train"))
    holdout_t, holdout_y_np = serving_tensors(holdout_samples, spec, progress=lambda s: bar(s, desc="decode holdout"))

    dataset = AugmentedImages(train_images, [s.label for s in train_kept], spec, crop_scale=cfg.crop_scale)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                                         drop_last=len(dataset) > cfg.batch_size, generator=generator)

    model = backbone.catdog_model(cfg.arch, num_classes=len(labels))
    frozen_modules = backbone.freeze_stem_and_stages(model, cfg.freeze_stages)
    trainable = [p for p in model.parameters() if p.requires_grad]
    head = list(model.get_classifier().parameters())
    head_ids = {id(p) for p in head}
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in trainable if id(p) not in head_ids], "lr": cfg.lr * cfg.backbone_lr_ratio},
         {"params": head, "lr": cfg.lr}],
        weight_decay=cfg.weight_decay,
    )
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    total_steps = max(1, cfg.epochs * len(loader))
    loss_fn = nn.CrossEntropyLoss()
    # An exponential moving average of the weights: a cheap, steadier model for short fine-tunes.
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        if cfg.ema_decay else None)

    history, best, step = [], None, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for module in frozen_modules:
            module.eval()  # frozen BatchNorm keeps its ImageNet statistics
        running, seen = 0.0, 0
        progress = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", dynamic_ncols=True)
        for x, y in progress:
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * _lr_at(step, total_steps, min(cfg.warmup_steps, total_steps // 5 + 1))
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            running += loss.item() * len(y)
            seen += len(y)
            progress.set_postfix(loss=f"{running / seen:.4f}")
        row = {"epoch": epoch, "train_loss": running / max(1, seen)}
        evaluated = ema.module if ema is not None else model
        if len(holdout_t):
            logits = logits_of(evaluated, holdout_t)
            probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
            report = classification_report(holdout_y_np, probs, labels)
            row.update(holdout_accuracy=report["accuracy"], holdout_log_loss=report["log_loss"])
            key = (report["accuracy"], -report["log_loss"])
            if best is None or key > best[0]:
                best = (key, epoch, {k: v.clone() for k, v in evaluated.state_dict().items()})
        history.append(row)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items() if k != "epoch"})

    if best is not None:
        model.load_state_dict(best[2])
    best_epoch = best[1] if best else cfg.epochs
    model.eval()

    temperature, holdout_report, serving = 1.0, {}, spec
    if len(holdout_t) >= 10 and len(set(holdout_y_np.tolist())) == len(labels):
        candidates = [spec] + [input_spec(cfg.arch, size) for size in cfg.serve_sizes if size != spec.size]
        serving, temperature, holdout_report, holdout_t = choose_serving_spec(
            model, holdout_samples, candidates, labels, first=(holdout_t, holdout_y_np))
        log.info("serving at %dpx (held-out log loss %.4f, temperature %.3f)",
                 serving.size, holdout_report["log_loss"], temperature)
    spec = serving

    onnx_path = export_onnx(model, cfg.out / "model.onnx", image_size=spec.size)
    # The PyTorch weights too, for the PyTorch-eager baseline and further fine-tuning.
    torch.save(model.state_dict(), cfg.out / "model.pt")
    probe = holdout_t[:8].numpy() if len(holdout_t) else np.random.default_rng(0).normal(
        size=(2, 3, spec.size, spec.size)).astype(np.float32)
    diff = max_abs_difference(model, onnx_path, np.ascontiguousarray(probe))
    log.info("ONNX export verified: max |torch - onnxruntime| = %.2e", diff)

    summary = {
        "best_epoch": best_epoch,
        "temperature": temperature,
        "onnx_max_abs_diff": diff,
        "holdout": holdout_report,
        "history": history,
        "seconds": round(time.time() - started, 1),
        "n_train": len(train_kept),
        "n_holdout": len(holdout_y_np),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
    }
    summary["config"]["data"] = [str(d) for d in cfg.data]
    recipe = Recipe(
        name=cfg.name or "catdog-" + cfg.arch.removeprefix("efficientnet_"), version=cfg.version,
        architecture=cfg.arch, labels=labels, input=spec, output="logits", threshold=0.5, temperature=temperature,
        metrics={"holdout": {k: holdout_report.get(k) for k in ("n", "accuracy", "log_loss", "ece", "roc_auc")}},
        training={k: summary[k] for k in ("best_epoch", "n_train", "n_holdout", "seconds", "onnx_max_abs_diff")}
        | {"data": summary["config"]["data"], "epochs": cfg.epochs, "seed": cfg.seed, "lr": cfg.lr,
           "base_weights": backbone.BACKBONES[cfg.arch].package.replace("_", "-") + " (ImageNet, Apache-2.0)"},
    )
    recipe.write(cfg.out / RECIPE_FILENAME)
    (cfg.out / "history.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    plot_history(history, cfg.out / "training.png")
    return summary


def plot_history(history: list[dict], path: Path) -> None:
    """Training loss and held-out accuracy per epoch (skipped quietly without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    if any("holdout_log_loss" in h for h in history):
        ax.plot(epochs, [h.get("holdout_log_loss") for h in history], "s-", label="held-out loss")
        ax2 = ax.twinx()
        ax2.plot(epochs, [h.get("holdout_accuracy") for h in history], "g^--", label="held-out accuracy")
        ax2.set_ylabel("accuracy")
        ax2.legend(loc="center right")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.legend(loc="upper right")
    ax.set_title("catdog fine-tuning")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
