"""Teach a trained cat/dog model to answer "other": outlier exposure on its last stages.

The fine-tuned backbone tells cats from dogs at 99%; what it lacks is an answer for
photos of anything else. Outlier exposure (Hendrycks et al., 2019) adds that answer by
training on photos that are neither. Measured on the held-out split (docs in the model
card): a new linear head on the frozen backbone caught only 75-86% of held-out non-pets
and cost a point of cat/dog accuracy, because fine-tuning had already folded everything
onto the cat/dog directions. So the last stages are fine-tuned again, with a three-way
head whose cat and dog rows start from the parent's head: the third answer still costs
nothing at serving time (same forward pass, a 3-column instead of a 2-column head).

Every choice is made on a held-out split of the training folders, never on the
validation set: the epoch (held-out log loss), the temperature (held-out log loss) and
the "other" threshold (the highest P(other) among held-out *pets* allowed to stay a
pet, so that at most ``other_cap`` of real pets are lost to "other").
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

from catdog.model.recipe import RECIPE_FILENAME, Recipe
from catdog.training import metrics
from catdog.training.data import Sample, find_samples, find_unlabelled, stratified_split
from catdog.training.export import export_onnx, max_abs_difference, torch_from_onnx

log = logging.getLogger("catdog.train")

PET_LABELS = ("cat", "dog")
OTHER = "other"
LABELS = (*PET_LABELS, OTHER)


@dataclass
class HeadConfig:
    init: Path  # a catdog model directory (float ONNX + model.json): the starting point
    data: list[Path]  # folders with cat/ and dog/
    others: list[Path]  # folders of photos that are neither (searched recursively)
    out: Path
    holdout_fraction: float = 0.2
    seed: int = 0
    other_cap: float = 0.003  # most held-out pets allowed to be answered "other"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3  # the head's; the fine-tuned stages get lr * backbone_lr_ratio
    backbone_lr_ratio: float = 0.3
    weight_decay: float = 0.02
    train_stages: int = 2  # the last N stages, the final convolution and the head are trained
    crop_scale: float = 0.3
    # Distillation that keeps what fine-tuning erodes (0 = off): the frozen ImageNet model's
    # 1000-class answers through an auxiliary head (its knowledge of wolves, bears, jaguars),
    # and the parent's cat/dog answers on pets.
    keep_imagenet: float = 0.0
    keep_parent: float = 0.0
    teacher: Path | None = None  # a trained open-world model whose three answers the student learns
    keep_teacher: float = 1.0
    distill_temperature: float = 2.0
    select: str = "log_loss"  # how the epoch is chosen on the held-out split: a key of SELECTION
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


def three_way_head(model: nn.Module) -> None:
    """Replace the two-way head by a three-way one whose cat and dog rows are the old ones
    (a model that already has three answers keeps its head: training goes on from it)."""
    old = model.get_classifier()
    if old.out_features == len(LABELS):
        return
    head = nn.Linear(old.in_features, 3)
    with torch.no_grad():
        head.weight[:2] = old.weight
        head.bias[:2] = old.bias
        head.weight[2].zero_()
        head.bias[2] = old.bias.min() - 2.0  # starts as "rarely other"
    model.classifier = head


def trainable_part(model: nn.Module, stages: int) -> list[nn.Parameter]:
    """Freeze all but the last ``stages`` stages, the final convolution and the head."""
    model.requires_grad_(False)
    top = [*model.blocks[-stages:], model.conv_head, model.bn2, model.get_classifier()] if stages else \
        [model.conv_head, model.bn2, model.get_classifier()]
    for module in top:
        module.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


class Keeper:
    """Distillation that keeps what fine-tuning for "other" erodes (Learning without Forgetting, Li & Hoiem 2017).

    The loss adds, to the cross-entropy on cat/dog/other:

    - ``keep_imagenet`` x KL(frozen ImageNet model || an auxiliary 1000-class head on the
      student's features), on every photo: the features must still tell a wolf from a husky
      and a jaguar from a tabby, which is exactly what "other" needs on animals it never saw.
      The auxiliary head is dropped at export: it costs nothing at serving time.
    - ``keep_parent`` x KL(parent || the student's cat and dog logits), on pets only: cat/dog
      accuracy stays the parent's while "other" is learned.
    - ``keep_teacher`` x KL(teacher || the student's answers), on every photo: a larger trained
      open-world model (e.g. Lite2) taught to a smaller one (Lite0). The teacher sees the same
      augmented crop at its own resolution.

    The three networks share their frozen early stages, so each batch runs them once.
    """

    def __init__(self, student: nn.Module, arch: str, cfg: HeadConfig):
        import copy

        from catdog.training.backbone import imagenet_model

        self.student, self.cfg = student, cfg
        self.split = len(student.blocks) - cfg.train_stages  # first trainable stage
        self.parent = copy.deepcopy(student).requires_grad_(False) if cfg.keep_parent else None
        self.imagenet = imagenet_model(arch).requires_grad_(False) if cfg.keep_imagenet else None
        # ImageNet's stem and first two stages are the parent's when its training froze them (catdog
        # train's default --freeze-stages 2): shared, run once. Otherwise the teacher sees the parent's.
        self.shared = min(self.split, 2)
        self.teacher = torch_from_onnx(Path(cfg.teacher) / "model.onnx").requires_grad_(False) \
            if cfg.teacher else None
        self.aux = None
        if self.imagenet is not None:
            fc = self.imagenet.get_classifier()
            self.aux = nn.Linear(fc.in_features, fc.out_features)
            self.aux.load_state_dict(fc.state_dict())

    def describe(self) -> str:
        parts = [f"{name} x{weight:g}" for name, weight in (
            ("the frozen ImageNet model", self.cfg.keep_imagenet), ("the parent's cat/dog answers", self.cfg.keep_parent),
            (f"the teacher {Path(self.cfg.teacher).name if self.cfg.teacher else ''}",
             self.cfg.keep_teacher if self.teacher is not None else 0.0)) if weight]
        return f"distilling {', '.join(parts)} at temperature {self.cfg.distill_temperature:g}"

    def trainable(self) -> list[nn.Parameter]:
        return list(self.aux.parameters()) if self.aux is not None else []

    @staticmethod
    def _top(model: nn.Module, h: torch.Tensor, start: int) -> torch.Tensor:
        for stage in model.blocks[start:]:
            h = stage(h)
        return model.forward_head(model.bn2(model.conv_head(h)), pre_logits=True)

    def _kl(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        t = self.cfg.distill_temperature
        return nn.functional.kl_div(nn.functional.log_softmax(student_logits / t, dim=1),
                                    nn.functional.log_softmax(teacher_logits / t, dim=1),
                                    log_target=True, reduction="batchmean") * t * t

    def loss(self, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, size: int) -> torch.Tensor:
        """``x`` at the teacher's resolution when there is one; the student sees it at ``size``."""
        model, x_teacher = self.student, x
        if x.shape[-1] != size:
            x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            h0 = model.bn1(model.conv_stem(x))
            for stage in model.blocks[:self.shared]:
                h0 = stage(h0)
            h = h0
            for stage in model.blocks[self.shared:self.split]:
                h = stage(h)
        feats = self._top(model, h, self.split)
        logits = model.get_classifier()(feats)
        loss = loss_fn(logits, y)
        if self.parent is not None:
            pets = y < len(PET_LABELS)
            if pets.any():
                with torch.no_grad():
                    parent = self.parent.get_classifier()(self._top(self.parent, h[pets], self.split))
                loss = loss + self.cfg.keep_parent * self._kl(logits[pets][:, :len(PET_LABELS)],
                                                              parent[:, :len(PET_LABELS)])
        if self.imagenet is not None and self.aux is not None:
            with torch.no_grad():
                teacher = self.imagenet.get_classifier()(self._top(self.imagenet, h0, self.shared))
            loss = loss + self.cfg.keep_imagenet * self._kl(self.aux(feats), teacher)
        if self.teacher is not None:
            with torch.no_grad():
                teacher = self.teacher(x_teacher)
            loss = loss + self.cfg.keep_teacher * self._kl(logits, teacher)
        return loss


# How the kept epoch is chosen from its held-out report: the smallest key wins.
SELECTION = {
    # calibrated fit of every answer
    "log_loss": lambda report: (report["log_loss"],),
    # the most non-pets answered "other" at the threshold that loses at most other_cap of the pets,
    # then the best pet accuracy, then the fit
    "open_world": lambda report: (-report["open_world"]["others_answered_other"],
                                  -report["open_world"]["pet_accuracy"], report["log_loss"]),
}


def train_head(cfg: HeadConfig) -> dict:
    """Fine-tune the parent's last stages with a three-way head; select, calibrate, export."""
    from catdog.training.backbone import BACKBONES
    from catdog.training.data import AugmentedImages, load_for_training, serving_inputs
    from catdog.training.train import _lr_at, input_spec, logits_of, start_run

    if cfg.select not in SELECTION:
        raise ValueError(f"select must be one of {', '.join(SELECTION)}, not {cfg.select!r}")
    started, cfg.out = start_run(cfg.seed, cfg.threads, cfg.out)
    parent = Recipe.read(Path(cfg.init) / RECIPE_FILENAME)
    model = torch_from_onnx(Path(cfg.init) / "model.onnx", parent.architecture)
    three_way_head(model)
    # The parent's BatchNorms were folded into its convolutions: they must stay in eval mode.
    model.eval()
    spec = parent.input
    train_spec = input_spec(parent.architecture) if parent.architecture in BACKBONES else spec

    # Going on from an open-world model: the very same split as its own training.
    parent_split = parent.training.get("parent_training", parent.training) if parent.other_label else parent.training
    fit, holdout = open_world_split(parent_split, cfg.data, cfg.others, cfg.holdout_fraction, cfg.seed)
    log.info("%d photos to train on, %d held out", len(fit), len(holdout))
    bar = lambda it, **kw: tqdm(it, unit="img", dynamic_ncols=True, **kw)
    # With a teacher, crops are cut at its (larger) resolution and shrunk for the student.
    crop_spec = Recipe.read(Path(cfg.teacher) / RECIPE_FILENAME).input if cfg.teacher else train_spec
    images, kept = load_for_training(fit, short_side=round(max(train_spec.resize, crop_spec.resize) * 1.15),
                                     progress=lambda s: bar(s, desc="decode train"))
    x_hold, y_hold = serving_inputs(holdout, spec, progress=lambda s: bar(s, desc="decode held out"))
    x_hold_t = torch.from_numpy(x_hold)
    labels = [s.label for s in kept]
    dataset = AugmentedImages(images, labels, crop_spec, crop_scale=cfg.crop_scale)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                                         drop_last=len(dataset) > cfg.batch_size,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float32)
    loss_fn = nn.CrossEntropyLoss(weight=torch.from_numpy(counts.sum() / (len(LABELS) * np.maximum(counts, 1))))
    keeper = Keeper(model, parent.architecture, cfg) if cfg.keep_imagenet or cfg.keep_parent or cfg.teacher \
        else None
    params = trainable_part(model, cfg.train_stages) + (keeper.trainable() if keeper else [])
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if id(p) not in head_ids], "lr": cfg.lr * cfg.backbone_lr_ratio},
         {"params": list(model.get_classifier().parameters()), "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    total = max(1, cfg.epochs * len(loader))

    history, best, step = [], None, 0
    for epoch in range(1, cfg.epochs + 1):
        running, seen = 0.0, 0
        for x, y in tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", dynamic_ncols=True):
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * _lr_at(step, total, min(30, total // 5 + 1))
            loss = keeper.loss(x, y, loss_fn, train_spec.size) if keeper else loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            running, seen = running + loss.item() * len(y), seen + len(y)
        _, report = metrics.calibrated_report(logits_of(model, x_hold_t), y_hold, LABELS, OTHER, cfg.other_cap)
        row = {"epoch": epoch, "train_loss": running / max(1, seen), "holdout_log_loss": report["log_loss"],
               "holdout_accuracy": report["accuracy"]} | report["open_world"]
        history.append(row)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items() if k != "epoch"})
        key = SELECTION[cfg.select](report)
        if best is None or key < best[0]:
            best = (key, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    if best is None:  # not an assert: bandit (B101), and python -O would drop it
        raise ValueError("open-world training ran no epoch; give epochs >= 1")
    model.load_state_dict(best[2])
    logits = logits_of(model, x_hold_t)
    temperature, report = metrics.calibrated_report(logits, y_hold, LABELS, OTHER, cfg.other_cap)
    threshold = report["other_threshold"]
    log.info("held out (epoch %d): %s", best[1], {k: report[k] for k in ("accuracy", "log_loss", "ece")}
             | report["open_world"])

    onnx_path = export_onnx(model, cfg.out / "model.onnx", image_size=spec.size)
    torch.save(model.state_dict(), cfg.out / "model.pt")
    diff = max_abs_difference(model, onnx_path, np.ascontiguousarray(x_hold[:8]))
    log.info("ONNX export verified: max |torch - onnxruntime| = %.2e", diff)
    summary = {
        "best_epoch": best[1], "temperature": temperature, "other_threshold": threshold,
        "holdout": report, "history": history, "onnx_max_abs_diff": diff, "n_train": len(kept),
        "n_holdout": len(y_hold), "seconds": round(time.time() - started, 1),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
    }
    summary["config"].update(data=[str(d) for d in cfg.data], others=[str(d) for d in cfg.others])
    Recipe(
        name=cfg.name or parent.name.removesuffix("-fp32"), version=cfg.version,
        architecture=parent.architecture, labels=LABELS, input=spec, output="logits",
        other_label=OTHER, other_threshold=threshold, temperature=temperature,
        metrics={"holdout": summarize(report)},
        training={"base_model": f"{parent.name} {parent.version}",
                  "method": f"outlier exposure: last {cfg.train_stages} stages, final convolution and a "
                            f"three-way head fine-tuned for {cfg.epochs} epochs (best by held-out "
                            f"{cfg.select.replace('_', ' ')}: {best[1]})"
                            + (f"; {keeper.describe()}" if keeper else ""),
                  "other_cap": cfg.other_cap, "holdout_fraction": cfg.holdout_fraction,
                  "data": summary["config"]["data"], "others": summary["config"]["others"],
                  "n_train": len(kept), "n_holdout": summary["n_holdout"], "seed": cfg.seed,
                  "epochs": cfg.epochs, "lr": cfg.lr, "seconds": summary["seconds"],
                  "onnx_max_abs_diff": diff, "parent_training": parent_split},
    ).write(cfg.out / RECIPE_FILENAME)
    (cfg.out / "history.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def summarize(report: dict) -> dict:
    """The headline numbers of a report, as the recipe keeps them."""
    keep = {k: report[k] for k in ("n", "accuracy", "log_loss", "ece", "roc_auc") if k in report}
    return keep | ({"open_world": report["open_world"]} if "open_world" in report else {})
