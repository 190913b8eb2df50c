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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from catdog.model.recipe import RECIPE_FILENAME, Recipe
from catdog.training import metrics
from catdog.training.data import (
    Sample,
    balanced_weights,
    find_samples,
    find_unlabelled,
    group_of,
    hash_split,
    relabelled,
    split_key,
    stratified_split,
)
from catdog.training.export import export_onnx, max_abs_difference, torch_from_onnx

log = logging.getLogger("catdog.train")

OTHER = "other"  # the name of the answer this training adds, unless the parent already has one


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
    # How new folders are split: "hash" (by each photo's path: stable as data grows) or
    # "seeded" (a seeded stratified shuffle, how 2.x models were split).
    split: str = "hash"
    # Within each label, a source of n photos is drawn in proportion to n**balance (1: as found).
    balance: float = 0.5
    exclude: list[str] = field(default_factory=list)  # fnmatch patterns of split keys left out entirely
    relabel: dict[str, str] = field(default_factory=dict)  # split key -> the label it should have
    # Kinds of "other" taught as rows of their own (name -> fnmatch patterns on split keys), read
    # back as one answer: P(other) is the sum of the kinds' probabilities (see OtherKinds).
    other_kinds: dict[str, list[str]] = field(default_factory=dict)
    # "rows": cross-entropy on the kinds' rows (a horse called a "thing" is a mistake);
    # "merged": on the three answers, the kinds' rows free to share "other" (a mixture head).
    kinds_loss: str = "rows"
    # Train on cached activations of the frozen stages (catdog.training.features) instead of
    # augmented crops; the cache lives in this folder (None: not kept between runs).
    features: bool = False
    cache: Path | None = None
    threads: int | None = None
    name: str | None = None
    version: str = "2.0.0"
    other_label: str = OTHER
    extra: dict = field(default_factory=dict)


def open_world_samples(data: Sequence[Path], others: Sequence[Path], known: Sequence[str]) -> list[Sample]:
    """Photos of the ``known`` labels (the parent model's) labelled by folder, in the parent's
    order, and every photo under ``others`` labelled ``len(known)``: the catch-all answer."""
    pets = find_samples(data, known) if data else []
    return pets + [s for folder in others for s in find_unlabelled(folder, len(known))]


def _is_parent_folder(folder: Path, parent_data: Sequence[str]) -> bool:
    return any(folder.resolve().as_posix().endswith("/" + name.strip("/")) for name in parent_data)


def open_world_split(parent_training: dict, data: Sequence[Path], others: Sequence[Path],
                     holdout_fraction: float, seed: int, split: str = "seeded",
                     known: Sequence[str] = ("cat", "dog"), relabel: Mapping[str, str] | None = None,
                     other_label: str = OTHER) -> tuple[list[Sample], list[Sample]]:
    """(fit, held out), where no held-out photo was seen by the parent model's training.

    The folders the parent was fine-tuned on are split exactly as its training split them
    (its seed and held-out fraction), so its held-out photos stay held out here: a
    threshold or temperature fitted on photos the backbone had learned would be
    over-confident. New folders (more pets, the non-pets) get their own split: ``"hash"``
    by each photo's path (:func:`catdog.training.data.hash_split`, stable as folders grow) or
    ``"seeded"``, the stratified shuffle 2.x models were made with. ``relabel`` corrects the
    label of the photos it names (:func:`catdog.training.data.read_relabel`) on both sides,
    after the split, so a correction never moves a photo between fit and held out.
    """
    parent_data = parent_training.get("data", [])
    old = [Path(d) for d in data if _is_parent_folder(Path(d), parent_data)]
    new = [Path(d) for d in data if not _is_parent_folder(Path(d), parent_data)]
    fit: list[Sample] = []
    held: list[Sample] = []
    if old:
        n = parent_training.get("n_train", 0) + parent_training.get("n_holdout", 0)
        fraction = parent_training["n_holdout"] / n if n else holdout_fraction
        fit, held = stratified_split(find_samples(old, known), round(fraction, 3),
                                     parent_training.get("seed", seed))
        if parent_training.get("n_holdout") not in (None, len(held)):
            log.warning("the parent held out %s photos, this split %d: are these its training folders?",
                        parent_training["n_holdout"], len(held))
    if split == "hash":
        more_fit, more_held = hash_split(open_world_samples(new, others, known), [*new, *others], holdout_fraction)
    elif split == "seeded":
        more_fit, more_held = stratified_split(open_world_samples(new, others, known), holdout_fraction, seed)
    else:
        raise ValueError(f"split must be 'hash' or 'seeded', not {split!r}")
    fit, held = fit + more_fit, held + more_held
    if relabel:
        both = relabelled([*fit, *held], [*data, *others], relabel, (*known, other_label))
        fit, held = both[:len(fit)], both[len(fit):]
    return fit, held


def recorded_split(recipe: Recipe, data: Sequence[Path], others: Sequence[Path], *,
                   holdout: float | None = None, seed: int | None = None) -> tuple[list[Sample], list[Sample]]:
    """(fit, held out) of ``data`` and ``others`` as an open-world model's training split them,
    read from its recipe (the parent's split, the fraction, the seed, how new folders were
    split, its labels); ``holdout`` and ``seed`` stand in where the recipe records none."""
    training = recipe.training
    return open_world_split(training.get("parent_training", {}), data, others,
                            training.get("holdout_fraction", 0.2 if holdout is None else holdout),
                            training.get("seed", 0 if seed is None else seed),
                            training.get("split", "seeded"), recipe.known_labels,
                            training.get("relabel"), recipe.other_label or OTHER)


def excluded(samples: Sequence[Sample], roots: Sequence[Path], patterns: Sequence[str]) -> list[bool]:
    """Which samples a leave-out pattern (fnmatch on :func:`split_key`) removes."""
    from fnmatch import fnmatchcase

    return [any(fnmatchcase(split_key(s, roots), p) for p in patterns) for s in samples]


def sample_groups(samples: Sequence[Sample], data: Sequence[Path], others: Sequence[Path], n_known: int) -> list[str]:
    """Each sample's source (:func:`catdog.training.data.group_of`); labels below ``n_known`` are pets."""
    return [group_of(s, [*data, *others], labelled=s.label < n_known) for s in samples]


def add_other_head(model: nn.Module, n_known: int, n_other: int = 1) -> None:
    """Replace the head by one with ``n_other`` extra rows for "other" (one per kind, see
    :class:`OtherKinds`), the known labels' rows kept as they were (a model that already has
    them keeps its head: training goes on from it)."""
    old = model.get_classifier()
    if old.out_features == n_known + n_other:
        return
    head = nn.Linear(old.in_features, n_known + n_other)
    with torch.no_grad():
        head.weight[:n_known] = old.weight[:n_known]
        head.bias[:n_known] = old.bias[:n_known]
        head.weight[n_known:].zero_()
        head.bias[n_known:] = old.bias[:n_known].min() - 2.0  # starts as "rarely other"
    model.classifier = head


class OtherKinds:
    """Kinds of "other" with a row each in the head, answered as one label.

    One linear row must score a horse, a tulip and a street scene alike as "other"; rows of their
    own (``animal``, ``person``, the rest) let each kind have its own direction in feature space,
    while the answer stays cat/dog/other. The network's logits are merged before anything reads
    them: "other" becomes log-sum-exp of the kinds' logits, so its softmax probability is exactly
    the sum of theirs. Training's cross-entropy is on the rows; selection, calibration, the
    threshold and the exported ONNX graph (:class:`MergedOther`) all see three answers, so
    quantizing, cascading and serving need no change.
    """

    def __init__(self, kinds: Mapping[str, Sequence[str]], n_known: int):
        self.names = list(kinds)
        self.patterns = [list(kinds[name]) for name in self.names]
        self.n_known = n_known

    @property
    def rows(self) -> int:
        """Rows of "other" in the head: the rest, then one per kind."""
        return 1 + len(self.names)

    def targets(self, samples: Sequence[Sample], roots: Sequence[Path]) -> list[int]:
        """Each sample's row: its label for a pet, else the first kind whose patterns match its
        split key (row ``n_known + 1 + i``), else the rest (row ``n_known``)."""
        from fnmatch import fnmatchcase

        out = []
        for s in samples:
            row = s.label
            if s.label == self.n_known and self.names:
                key = split_key(s, roots)
                row = next((self.n_known + 1 + i for i, patterns in enumerate(self.patterns)
                            if any(fnmatchcase(key, p) for p in patterns)), row)
            out.append(row)
        return out

    def merge(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, n_known + rows) -> (N, n_known + 1): the kinds' logits as one "other" logit."""
        if not self.names:
            return logits
        return torch.cat([logits[:, :self.n_known], torch.logsumexp(logits[:, self.n_known:], 1, keepdim=True)], 1)

    def merge_np(self, logits: np.ndarray) -> np.ndarray:
        return self.merge(torch.from_numpy(logits)).numpy()


class MergedOther(nn.Module):
    """The network with its kinds of "other" merged into one logit: what is exported and served."""

    def __init__(self, model: nn.Module, kinds: OtherKinds):
        super().__init__()
        self.model, self.kinds = model, kinds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kinds.merge(self.model(x))


def export_open_world(model: nn.Module, kinds: OtherKinds, out: Path, size: int, verify: np.ndarray) -> float:
    """Write ``model.onnx`` (the kinds of "other" merged into one answer, :class:`MergedOther`) and
    ``model.pt`` (the rows as trained) to ``out``; returns the largest difference between PyTorch
    and ONNX Runtime on ``verify``."""
    served = MergedOther(model, kinds).eval() if kinds.names else model
    onnx_path = export_onnx(served, out / "model.onnx", image_size=size)
    torch.save(model.state_dict(), out / "model.pt")
    diff = max_abs_difference(served, onnx_path, np.ascontiguousarray(verify))
    log.info("ONNX export verified: max |torch - onnxruntime| = %.2e", diff)
    return diff


def trainable_part(model: nn.Module, stages: int) -> list[nn.Parameter]:
    """Freeze all but the last ``stages`` stages, the final convolution and the head."""
    model.requires_grad_(False)
    top = [*model.blocks[-stages:], model.conv_head, model.bn2, model.get_classifier()] if stages else \
        [model.conv_head, model.bn2, model.get_classifier()]
    for module in top:
        module.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def imagenet_head_copy(imagenet: nn.Module) -> nn.Linear:
    """A trainable copy of the frozen ImageNet model's 1000-class head: the auxiliary head that
    must keep matching it on the student's features (dropped at export)."""
    fc = imagenet.get_classifier()
    aux = nn.Linear(fc.in_features, fc.out_features)
    aux.load_state_dict(fc.state_dict())
    return aux


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

    def __init__(self, student: nn.Module, arch: str, cfg: HeadConfig, kinds: OtherKinds | None = None):
        import copy

        from catdog.training.backbone import imagenet_model

        self.student, self.cfg = student, cfg
        self.kinds = kinds or OtherKinds({}, student.get_classifier().out_features - 1)
        self.n_known = self.kinds.n_known  # every answer but "other"
        self.split = len(student.blocks) - cfg.train_stages  # first trainable stage
        self.parent = copy.deepcopy(student).requires_grad_(False) if cfg.keep_parent else None
        self.imagenet = imagenet_model(arch).requires_grad_(False) if cfg.keep_imagenet else None
        # ImageNet's stem and first two stages are the parent's when its training froze them (catdog
        # train's default --freeze-stages 2): shared, run once. Otherwise the teacher sees the parent's.
        self.shared = min(self.split, 2)
        self.teacher = torch_from_onnx(Path(cfg.teacher) / "model.onnx").requires_grad_(False) \
            if cfg.teacher else None
        self.aux = imagenet_head_copy(self.imagenet) if self.imagenet is not None else None

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
            n_known = self.n_known
            pets = y < n_known
            if pets.any():
                with torch.no_grad():
                    parent = self.parent.get_classifier()(self._top(self.parent, h[pets], self.split))
                loss = loss + self.cfg.keep_parent * self._kl(logits[pets][:, :n_known], parent[:, :n_known])
        if self.imagenet is not None and self.aux is not None:
            with torch.no_grad():
                teacher = self.imagenet.get_classifier()(self._top(self.imagenet, h0, self.shared))
            loss = loss + self.cfg.keep_imagenet * self._kl(self.aux(feats), teacher)
        if self.teacher is not None:
            with torch.no_grad():
                teacher = self.teacher(x_teacher)
            loss = loss + self.cfg.keep_teacher * self._kl(self.kinds.merge(logits), teacher)
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
    from catdog.training.data import serving_inputs
    from catdog.training.train import input_spec, logits_of, start_run

    if cfg.select not in SELECTION:
        raise ValueError(f"select must be one of {', '.join(SELECTION)}, not {cfg.select!r}")
    started, cfg.out = start_run(cfg.seed, cfg.threads, cfg.out)
    parent = Recipe.read(Path(cfg.init) / RECIPE_FILENAME)
    model = torch_from_onnx(Path(cfg.init) / "model.onnx", parent.architecture)
    # The labels are the parent's (its recipe), plus the catch-all answer this training adds.
    known = parent.known_labels
    other = parent.other_label or cfg.other_label
    labels = (*known, other)
    kinds = OtherKinds(cfg.other_kinds, len(known))
    add_other_head(model, len(known), kinds.rows)
    # The parent's BatchNorms were folded into its convolutions: they must stay in eval mode.
    model.eval()
    spec = parent.input
    train_spec = input_spec(parent.architecture) if parent.architecture in BACKBONES else spec

    # Going on from an open-world model: the very same split as its own training.
    parent_split = parent.training.get("parent_training", parent.training) if parent.other_label else parent.training
    fit, holdout = open_world_split(parent_split, cfg.data, cfg.others, cfg.holdout_fraction, cfg.seed, cfg.split,
                                    known, cfg.relabel, other)
    if cfg.exclude:
        roots = [*cfg.data, *cfg.others]
        fit = [s for s, out in zip(fit, excluded(fit, roots, cfg.exclude)) if not out]
        holdout = [s for s, out in zip(holdout, excluded(holdout, roots, cfg.exclude)) if not out]
    log.info("%d photos to train on, %d held out", len(fit), len(holdout))
    bar = lambda it, **kw: tqdm(it, unit="img", dynamic_ncols=True, **kw)
    cached = CachedViews(model, parent, cfg, fit, holdout, bar, kinds) if cfg.features else None
    if cached is not None:
        # Held-out logits from the cached activations: the same stages on the same serving crop.
        y_hold = cached.y_hold
        verify = serving_inputs(holdout[:8], spec)[0]
        hold_logits = lambda: kinds.merge_np(cached.hold_logits(model))
    else:
        x_hold, y_hold = serving_inputs(holdout, spec, progress=lambda s: bar(s, desc="decode held out"))
        x_hold_t, verify = torch.from_numpy(x_hold), x_hold[:8]
        hold_logits = lambda: kinds.merge_np(logits_of(model, x_hold_t))

    def report_of(logits: np.ndarray, epoch: int) -> tuple:
        _, report = metrics.calibrated_report(logits, y_hold, labels, other, cfg.other_cap)
        row = {"epoch": epoch, "holdout_log_loss": report["log_loss"],
               "holdout_accuracy": report["accuracy"]} | report["open_world"]
        history.append(row)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items() if k != "epoch"})
        return SELECTION[cfg.select](report), row

    history: list[dict] = []
    if cached is not None:
        best, n_train, keeper_text = cached.fit(model, cfg, report_of, hold_logits)
    else:
        best, n_train, keeper_text = fit_on_augmented_crops(model, parent, cfg, fit, train_spec, report_of,
                                                            hold_logits, bar, kinds)
    if best is None:  # not an assert: bandit (B101), and python -O would drop it
        raise ValueError("open-world training ran no epoch; give epochs >= 1")
    model.load_state_dict(best[2])
    if cached is not None:
        # The temperature and the "other" threshold are fitted on the served path itself (the whole
        # float32 network on each decoded photo), not on the float16 cache the epochs were judged on.
        x_hold, y_hold = serving_inputs(holdout, spec, progress=lambda s: bar(s, desc="decode held out"))
        logits = kinds.merge_np(logits_of(model, torch.from_numpy(x_hold)))
    else:
        logits = hold_logits()
    temperature, report = metrics.calibrated_report(logits, y_hold, labels, other, cfg.other_cap)
    threshold = report["other_threshold"]
    log.info("held out (epoch %d): %s", best[1], {k: report[k] for k in ("accuracy", "log_loss", "ece")}
             | report["open_world"])

    diff = export_open_world(model, kinds, cfg.out, spec.size, verify)
    summary = {
        "best_epoch": best[1], "temperature": temperature, "other_threshold": threshold,
        "holdout": report, "history": history, "onnx_max_abs_diff": diff, "n_train": n_train,
        "n_holdout": len(y_hold), "seconds": round(time.time() - started, 1),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
    }
    summary["config"].update(data=[str(d) for d in cfg.data], others=[str(d) for d in cfg.others])
    Recipe(
        name=cfg.name or parent.name.removesuffix("-fp32"), version=cfg.version,
        architecture=parent.architecture, labels=labels, input=spec, output="logits",
        other_label=other, other_threshold=threshold, temperature=temperature,
        metrics={"holdout": summarize(report)},
        training={"base_model": f"{parent.name} {parent.version}",
                  "method": f"outlier exposure: last {cfg.train_stages} stages, final convolution and a "
                            f"three-way head fine-tuned for {cfg.epochs} epochs (best by held-out "
                            f"{cfg.select.replace('_', ' ')}: {best[1]})"
                            + (" on cached activations of the frozen stages (serving crop and mirror)"
                               if cfg.features else "")
                            + (f"; {keeper_text}" if keeper_text else "")
                            + (f"; other taught as {kinds.rows} rows ({', '.join(kinds.names)} and the rest), "
                               f"answered as their sum (loss on the {cfg.kinds_loss} answers)" if kinds.names else ""),
                  "other_cap": cfg.other_cap, "holdout_fraction": cfg.holdout_fraction, "split": cfg.split,
                  "balance": cfg.balance, "exclude": list(cfg.exclude), "relabel": dict(cfg.relabel),
                  "other_kinds": dict(cfg.other_kinds), "kinds_loss": cfg.kinds_loss,
                  "data": summary["config"]["data"], "others": summary["config"]["others"],
                  "n_train": n_train, "n_holdout": summary["n_holdout"], "seed": cfg.seed,
                  "features": cfg.features,
                  "epochs": cfg.epochs, "lr": cfg.lr, "seconds": summary["seconds"],
                  "onnx_max_abs_diff": diff, "parent_training": parent_split},
    ).write(cfg.out / RECIPE_FILENAME)
    (cfg.out / "history.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def _optimizer(model: nn.Module, cfg: HeadConfig, extra: list[nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW: the head at ``lr``, the trained stages (and any auxiliary head) at ``lr * backbone_lr_ratio``."""
    params = trainable_part(model, cfg.train_stages) + extra
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    return torch.optim.AdamW(
        [{"params": [p for p in params if id(p) not in head_ids], "lr": cfg.lr * cfg.backbone_lr_ratio},
         {"params": list(model.get_classifier().parameters()), "lr": cfg.lr}], weight_decay=cfg.weight_decay)


def _class_weighted_loss(labels: Sequence[int], k: int, kinds: OtherKinds, how: str = "rows") -> nn.Module:
    """Cross-entropy whose answers weigh alike (``labels`` are the k answers). With kinds of
    "other" (:class:`OtherKinds`), ``"rows"`` gives each kind's row the weight of "other", so
    teaching the kinds apart does not change how much "other" weighs against the pets;
    ``"merged"`` scores the merged answers against the answer each row stands for."""
    if how not in ("rows", "merged"):
        raise ValueError(f"kinds_loss must be 'rows' or 'merged', not {how!r}")
    counts = np.bincount(labels, minlength=k).astype(np.float32)
    weight = counts.sum() / (k * np.maximum(counts, 1))
    if how == "merged" and kinds.names:
        return MergedLoss(nn.CrossEntropyLoss(weight=torch.from_numpy(weight)), kinds)
    return nn.CrossEntropyLoss(weight=torch.from_numpy(np.concatenate([weight, np.repeat(weight[-1:], kinds.rows - 1)])))


class MergedLoss(nn.Module):
    """A loss on the merged answers (:meth:`OtherKinds.merge`) for targets given as rows."""

    def __init__(self, loss: nn.Module, kinds: OtherKinds):
        super().__init__()
        self.loss, self.kinds = loss, kinds

    def forward(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.loss(self.kinds.merge(logits), rows.clamp(max=self.kinds.n_known))


def _balance(samples: Sequence[Sample], cfg: HeadConfig, n_known: int) -> np.ndarray | None:
    """Sampling weights that even out the sources within each label, or None (as found)."""
    groups = sample_groups(samples, cfg.data, cfg.others, n_known)
    log.info("sources: %s", dict(sorted(Counter(groups).items())))
    return balanced_weights(samples, groups, power=cfg.balance) if cfg.balance != 1 else None


def fit_on_augmented_crops(model, parent, cfg, fit, train_spec, report_of, hold_logits, bar, kinds):
    """A fresh random crop of every photo each step, through the whole network: (best, n_train, keeper text)."""
    from catdog.training.data import AugmentedImages, load_for_training
    from catdog.training.train import _lr_at

    # With a teacher, crops are cut at its (larger) resolution and shrunk for the student.
    crop_spec = Recipe.read(Path(cfg.teacher) / RECIPE_FILENAME).input if cfg.teacher else train_spec
    images, kept = load_for_training(fit, short_side=round(max(train_spec.resize, crop_spec.resize) * 1.15),
                                     progress=lambda s: bar(s, desc="decode train"))
    labels = [s.label for s in kept]
    dataset = AugmentedImages(images, kinds.targets(kept, [*cfg.data, *cfg.others]), crop_spec,
                              crop_scale=cfg.crop_scale)
    generator = torch.Generator().manual_seed(cfg.seed)
    k = kinds.n_known + 1
    weights = _balance(kept, cfg, kinds.n_known)
    sampler = torch.utils.data.WeightedRandomSampler(torch.from_numpy(weights), len(kept), generator=generator) \
        if weights is not None else None
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=sampler is None,
                                         sampler=sampler, drop_last=len(dataset) > cfg.batch_size,
                                         generator=generator)
    loss_fn = _class_weighted_loss(labels, k, kinds, cfg.kinds_loss)
    keeper = Keeper(model, parent.architecture, cfg, kinds) if cfg.keep_imagenet or cfg.keep_parent or cfg.teacher \
        else None
    optimizer = _optimizer(model, cfg, keeper.trainable() if keeper else [])
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    total = max(1, cfg.epochs * len(loader))
    best, step = None, 0
    for epoch in range(1, cfg.epochs + 1):
        for x, y in tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", dynamic_ncols=True):
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * _lr_at(step, total, min(30, total // 5 + 1))
            loss = keeper.loss(x, y, loss_fn, train_spec.size) if keeper else loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        key, _ = report_of(hold_logits(), epoch)
        if best is None or key < best[0]:
            best = (key, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    return best, len(kept), keeper.describe() if keeper else ""


class CachedViews:
    """``--features``: the frozen stages' activations of every fit and held-out photo (serving
    crop and mirror), computed once and cached on disk (:mod:`catdog.training.features`)."""

    def __init__(self, model: nn.Module, parent: Recipe, cfg: HeadConfig, fit: Sequence[Sample],
                 holdout: Sequence[Sample], bar, kinds: OtherKinds):
        from catdog.training.backbone import imagenet_model
        from catdog.training.data import split_key
        from catdog.training.features import FeatureCache

        if cfg.teacher or cfg.keep_parent:
            raise ValueError("--features trains with --keep-imagenet only (no --teacher, no --keep-parent)")
        self.split = len(model.blocks) - cfg.train_stages
        self.imagenet = imagenet_model(parent.architecture).requires_grad_(False).eval() if cfg.keep_imagenet \
            else None
        # Cached at the serving crop itself: what the trained stages see is what they will be served.
        cache = FeatureCache(model, Path(cfg.init) / "model.onnx", self.split, parent.input, parent.input.size,
                             self.imagenet, cfg.cache)
        roots = [*cfg.data, *cfg.others]
        kept, self.views, self.teacher = cache.get(fit, [split_key(s, roots) for s in fit],
                                                   progress=lambda c: bar(c, desc="features (train, batches)"))
        self.kept = [fit[i] for i in kept]
        self.kinds, self.targets = kinds, kinds.targets(self.kept, roots)
        hold_kept, self.hold_views, _ = cache.get(holdout, [split_key(s, roots) for s in holdout],
                                                  progress=lambda c: bar(c, desc="features (held out, batches)"))
        self.y_hold = np.asarray([holdout[i].label for i in hold_kept], dtype=int)

    def hold_logits(self, model: nn.Module) -> np.ndarray:
        from catdog.training.features import logits_from_views

        return logits_from_views(model, self.split, self.hold_views)

    def fit(self, model: nn.Module, cfg: HeadConfig, report_of, hold_logits):
        """Train on the cached views: (best, n_train, what was distilled)."""
        from catdog.training.features import fit_on_features
        from catdog.training.train import _lr_at

        labels = np.asarray([s.label for s in self.kept])
        k = self.kinds.n_known + 1
        aux = imagenet_head_copy(self.imagenet) if self.imagenet is not None else None
        optimizer = _optimizer(model, cfg, list(aux.parameters()) if aux is not None else [])
        total_steps = max(1, cfg.epochs * (len(labels) // cfg.batch_size))
        best = fit_on_features(
            model, self.split, self.views, np.asarray(self.targets), _balance(self.kept, cfg, k - 1), self.teacher, aux,
            epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=optimizer,
            loss_fn=_class_weighted_loss(labels.tolist(), k, self.kinds, cfg.kinds_loss),
            lr_at=lambda step, total: _lr_at(step, total, min(30, total_steps // 5 + 1)),
            keep_imagenet=cfg.keep_imagenet, distill_temperature=cfg.distill_temperature, seed=cfg.seed,
            evaluate=lambda epoch: report_of(hold_logits(), epoch))
        text = f"distilling the frozen ImageNet model x{cfg.keep_imagenet:g} at temperature " \
               f"{cfg.distill_temperature:g}" if self.imagenet is not None else ""
        return best, len(labels), text


def summarize(report: dict) -> dict:
    """The headline numbers of a report, as the recipe keeps them."""
    keep = {k: report[k] for k in ("n", "accuracy", "log_loss", "ece", "roc_auc") if k in report}
    return keep | ({"open_world": report["open_world"]} if "open_world" in report else {})
