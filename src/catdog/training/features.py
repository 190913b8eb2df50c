"""Open-world training on cached activations: the frozen stages run once per photo, not once per epoch.

``catdog train --init ... --others ... --features`` fine-tunes the same last stages, final
convolution and three-way head as the augmented recipe (:func:`catdog.training.openworld.train_head`),
but feeds them the activations of the frozen stages computed once, for the serving crop
of each photo and its mirror image, instead of a fresh random crop every step. On two CPU
cores that turns a training run from a pass of the whole network per photo per epoch into
one pass per photo in all, and the cache is kept on disk, so every fold of a
leave-one-group-out run (``bench/openworld.py --logo``) reuses it: the folds then measure
the very recipe that is shipped, not a cheaper stand-in.

What it gives up is the random crops and colour jitter (two views per photo, fixed); the
held-out numbers in the model card say what that costs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from catdog.model.errors import ImageError
from catdog.model.preprocess import prepare
from catdog.model.recipe import InputSpec
from catdog.training.data import Sample

log = logging.getLogger("catdog.train")


def trunk(model: nn.Module, x: torch.Tensor, split: int) -> torch.Tensor:
    """The frozen part: stem and the stages before ``split``."""
    h = model.bn1(model.conv_stem(x))
    for stage in model.blocks[:split]:
        h = stage(h)
    return h


def top_features(model: nn.Module, h: torch.Tensor, split: int) -> torch.Tensor:
    """The trained part up to the pooled features the head reads."""
    for stage in model.blocks[split:]:
        h = stage(h)
    return model.forward_head(model.bn2(model.conv_head(h)), pre_logits=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class FeatureCache:
    """For each photo key: the trunk's activations of its serving crop and of the mirror
    image (float16), and the frozen ImageNet model's logits on the crop when asked.

    Stored in one file per (parent model file, split stage, input size, teacher) under
    ``folder``, so a second run over the same photos decodes and computes nothing. Photos are
    keyed by where they sit (:func:`catdog.training.data.split_key`): delete the folder when
    a photo is replaced in place.
    """

    def __init__(self, model: nn.Module, model_file: Path, split: int, spec: InputSpec, size: int,
                 imagenet: nn.Module | None, folder: Path | None):
        self.model, self.split, self.spec, self.size, self.imagenet = model, split, spec, size, imagenet
        name = f"{_digest(model_file)}-s{split}-{spec.size}to{size}-{'in' if imagenet is not None else 'no'}.pt"
        self.path = folder / name if folder else None
        self.entries: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._ort: list | None = None
        if self.path is not None and self.path.is_file():
            self.entries = torch.load(self.path, weights_only=True)
            log.info("feature cache %s: %d photos", self.path, len(self.entries))

    @torch.no_grad()
    def _sessions(self):
        """The frozen parts as ONNX Runtime sessions: on a CPU, ONNX Runtime runs these
        depthwise-convolution networks an order of magnitude faster than PyTorch eager."""
        import tempfile

        import onnxruntime as ort

        from catdog.training.export import export_onnx

        class Trunk(nn.Module):
            def __init__(self, model: nn.Module, split: int):
                super().__init__()
                self.model, self.split = model, split

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return trunk(self.model, x, self.split)

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        sessions = []
        with tempfile.TemporaryDirectory() as tmp:
            for name, module in (("trunk", Trunk(self.model, self.split)), ("imagenet", self.imagenet)):
                if module is None:
                    sessions.append(None)
                    continue
                path = export_onnx(module, Path(tmp) / f"{name}.onnx", image_size=self.size)
                sessions.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        return sessions

    def _compute(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._ort is None:
            self._ort = self._sessions()
        if x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                                          align_corners=False)
        run_trunk, run_imagenet = self._ort
        both = np.concatenate([x.numpy(), x.flip(-1).numpy()])
        h = torch.from_numpy(run_trunk.run(None, {"image": both})[0])
        views = torch.stack([h[:len(x)], h[len(x):]], 1)
        teacher = torch.from_numpy(run_imagenet.run(None, {"image": x.numpy()})[0]).half() \
            if run_imagenet is not None else None
        return views.half(), teacher

    def _save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.entries, self.path.with_suffix(".tmp"))
            self.path.with_suffix(".tmp").replace(self.path)

    def get(self, samples: Sequence[Sample], keys: Sequence[str], batch_size: int = 32,
            progress: Callable | None = None) -> tuple[list[int], torch.Tensor, torch.Tensor | None]:
        """(indices of the readable samples, their views (N, 2, C, H, W), teacher logits (N, 1000))."""
        missing = [(s, k) for s, k in zip(samples, keys) if k not in self.entries]
        chunks = [missing[i:i + batch_size] for i in range(0, len(missing), batch_size)]
        for n, chunk in enumerate(progress(chunks) if progress else chunks, 1):
            xs, ks = [], []
            for s, k in chunk:
                try:
                    xs.append(prepare(s.path, self.spec))
                    ks.append(k)
                except (ImageError, OSError):  # an unreadable photo is skipped, as in every split
                    self.entries[k] = (torch.empty(0), None)
            if xs:
                views, teacher = self._compute(torch.from_numpy(np.stack(xs)))
                for i, k in enumerate(ks):
                    self.entries[k] = (views[i].clone(), teacher[i].clone() if teacher is not None else None)
            if n % 50 == 0:  # a long pass that is stopped keeps most of its work
                self._save()
        if missing:
            self._save()
        kept = [i for i, k in enumerate(keys) if self.entries[k][0].numel()]
        views = torch.stack([self.entries[keys[i]][0] for i in kept]) if kept else torch.empty(0)
        logits = [self.entries[keys[i]][1] for i in kept]
        teacher = torch.stack([t for t in logits if t is not None]) if kept and self.imagenet is not None else None
        return kept, views, teacher


def fit_on_features(model: nn.Module, split: int, views: torch.Tensor, labels: np.ndarray, weights: np.ndarray | None,
                    teacher: torch.Tensor | None, aux: nn.Module | None, *, epochs: int, batch_size: int,
                    optimizer: torch.optim.Optimizer, loss_fn: nn.Module, lr_at: Callable[[int, int], float],
                    keep_imagenet: float, distill_temperature: float, seed: int,
                    evaluate: Callable[[int], tuple]) -> tuple | None:
    """The training loop over cached views; ``evaluate(epoch)`` returns (selection key, row) after each epoch.

    Returns ``(key, epoch, state)`` of the best epoch (None when no epoch ran)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(labels)
    n = len(y)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    steps_per_epoch = max(1, n // batch_size)
    total, step, best = epochs * steps_per_epoch, 0, None
    t = distill_temperature
    for epoch in range(1, epochs + 1):
        order = torch.multinomial(torch.as_tensor(weights), n, replacement=True, generator=generator) \
            if weights is not None else torch.randperm(n, generator=generator)
        flips = torch.randint(0, 2, (n,), generator=generator)
        # The model stays in eval mode, as in the augmented recipe: the parent's BatchNorms were
        # folded into its convolutions at export, their statistics are not to be re-estimated.
        model.eval()
        for b in tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", unit="batch", dynamic_ncols=True):
            idx = order[b * batch_size:(b + 1) * batch_size]
            h = views[idx, flips[idx]].float()
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * lr_at(step, total)
            feats = top_features(model, h, split)
            loss = loss_fn(model.get_classifier()(feats), y[idx])
            if aux is not None and teacher is not None and keep_imagenet:
                kl = nn.functional.kl_div(nn.functional.log_softmax(aux(feats) / t, dim=1),
                                          nn.functional.log_softmax(teacher[idx].float() / t, dim=1),
                                          log_target=True, reduction="batchmean") * t * t
                loss = loss + keep_imagenet * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        key, _row = evaluate(epoch)
        if best is None or key < best[0]:
            best = (key, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    return best


@torch.no_grad()
def logits_from_views(model: nn.Module, split: int, views: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The head's logits for the first view (the serving crop) of every cached photo."""
    model.eval()
    out = [model.get_classifier()(top_features(model, views[i:i + batch_size, 0].float(), split))
           for i in range(0, len(views), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.get_classifier().out_features), np.float32)
