"""Finding, splitting and augmenting training photos (ImageFolder layout: ``cat/``, ``dog/``).

Photos are decoded once, through the same bounded decoder the server uses, and
kept in memory at a modest size: on a 2-core machine re-decoding every JPEG every
epoch would cost more than the model's backward pass.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from catdog.model.decode import IMAGE_SUFFIXES, load_image
from catdog.model.errors import CatdogError, ImageError
from catdog.model.preprocess import normalize, prepare
from catdog.model.recipe import InputSpec

log = logging.getLogger("catdog.train")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into labels


def find_samples(roots: Sequence[str | Path], labels: Sequence[str] = ("cat", "dog")) -> list[Sample]:
    """All images under ``root/<label>/`` for every root, sorted for reproducibility."""
    samples = []
    for root in map(Path, roots):
        found = 0
        for index, label in enumerate(labels):
            folder = root / label
            for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                    samples.append(Sample(path, index))
                    found += 1
        if not found:
            raise FileNotFoundError(
                f"No images in {root}/{{{','.join(labels)}}}/; expected one folder per label (ImageFolder layout)."
            )
    return samples


def labels_in(roots: Sequence[str | Path]) -> tuple[str, ...]:
    """The labels a training set names: every sub-folder of a root that holds images (ImageFolder
    layout), sorted, so ``cat/`` and ``dog/`` give ``("cat", "dog")`` and a ``fox/`` beside them
    gives a third label with no change to the code."""
    found = set()
    for root in map(Path, roots):
        for folder in (p for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else ():
            if any(f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() for f in folder.rglob("*")):
                found.add(folder.name)
    if len(found) < 2:
        raise FileNotFoundError(f"{', '.join(map(str, roots))}: need one folder of images per label, "
                                f"at least two labels (ImageFolder layout); found {sorted(found) or 'none'}")
    return tuple(sorted(found))


def find_unlabelled(folder: str | Path, label: int) -> list[Sample]:
    """Every image under ``folder`` (recursively), all given ``label`` (e.g. the model's "other")."""
    found = [Sample(p, label) for p in sorted(Path(folder).rglob("*"))
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise FileNotFoundError(f"No images in {folder}.")
    return found


def stratified_split(samples: Sequence[Sample], holdout_fraction: float, seed: int
                     ) -> tuple[list[Sample], list[Sample]]:
    """Split per (source folder, label) so the held-out part looks like the training part."""
    groups: dict[tuple[Path, int], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.path.parent, s.label), []).append(s)
    # Bandit B311: a seeded, reproducible data split; nothing secret depends on it.
    rng = random.Random(seed)  # nosec B311
    train, holdout = [], []
    for key in sorted(groups, key=lambda k: (str(k[0]), k[1])):
        group = list(groups[key])
        rng.shuffle(group)
        n_hold = round(len(group) * holdout_fraction) if len(group) > 1 else 0
        holdout.extend(group[:n_hold])
        train.extend(group[n_hold:])
    return train, holdout


SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test"})


def source_name(root: Path) -> str:
    """A data folder's name as a source: ``more-cats``, or ``cats-vs-dogs/train`` when the
    folder is only a split of a collection."""
    return f"{root.parent.name}/{root.name}" if root.name.lower() in SPLIT_NAMES else root.name


def root_of(sample: Sample, roots: Sequence[Path]) -> Path:
    """The folder of ``roots`` that holds ``sample`` (the deepest, if they nest)."""
    found = [Path(r) for r in roots if sample.path.is_relative_to(r)]
    if not found:
        raise ValueError(f"{sample.path} is under none of {', '.join(map(str, roots))}")
    return max(found, key=lambda r: len(r.parts))


def split_key(sample: Sample, roots: Sequence[Path]) -> str:
    """Where a photo sits, independent of where the data lives: ``<source>/<path under it>``."""
    root = root_of(sample, roots)
    return f"{source_name(root)}/{sample.path.relative_to(root).as_posix()}"


def is_held_out(key: str, holdout_fraction: float) -> bool:
    """A photo is held out when the hash of its key falls under the fraction.

    Unlike a seeded shuffle, the answer for one photo depends on nothing else: photos added
    to a folder later never move an old photo from one side to the other, so a photo held
    out by one release stays held out by the next and their numbers stay comparable.
    """
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout_fraction


def hash_split(samples: Sequence[Sample], roots: Sequence[Path], holdout_fraction: float
               ) -> tuple[list[Sample], list[Sample]]:
    """(fit, held out) by :func:`is_held_out` of each photo's :func:`split_key`."""
    fit: list[Sample] = []
    held: list[Sample] = []
    for s in samples:
        (held if is_held_out(split_key(s, roots), holdout_fraction) else fit).append(s)
    return fit, held


class TrainingDataError(CatdogError, ValueError):
    """A training input the user wrote is not usable (a relabel file): said in one line by the
    CLI, not as a traceback."""

    code = "training_data"


def read_relabel(path: str | Path) -> dict[str, str]:
    """Corrections to the folders' labels: a CSV of ``key,label,why`` rows, where ``key`` is a
    photo's :func:`split_key` (``pet-breeds/train/dog/1dfb....jpg``) and ``label`` the answer
    it should be taught and scored with (``other`` for a wild dog filed under ``dog/``).
    The data folders stay as they came; the correction and its reason live in the repository."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if row.get("key") and not row["key"].startswith("#")]
    missing = [row["key"] for row in rows if not row.get("label")]
    if missing:
        raise TrainingDataError(f"{path}: rows without a label: {', '.join(missing[:3])}")
    return {row["key"].strip(): row["label"].strip() for row in rows}


def read_other_kinds(path: str | Path) -> dict[str, list[str]]:
    """Kinds of "other" to teach as rows of their own (:class:`catdog.training.openworld.OtherKinds`):
    a CSV of ``kind,pattern,why`` rows, ``pattern`` an fnmatch pattern on :func:`split_key`
    (``not-pets/animals/*``). A kind may take many rows; the first kind that matches a photo wins."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if row.get("kind") and not row["kind"].startswith("#")]
    missing = [row["kind"] for row in rows if not (row.get("pattern") or "").strip()]
    if missing or not rows:
        raise TrainingDataError(f"{path}: " + (f"rows without a pattern: {', '.join(missing[:3])}" if missing
                                              else "no kind,pattern rows"))
    kinds: dict[str, list[str]] = {}
    for row in rows:
        kinds.setdefault(row["kind"].strip(), []).append(row["pattern"].strip())
    return kinds


def relabelled(samples: Sequence[Sample], roots: Sequence[Path], relabel: Mapping[str, str],
               labels: Sequence[str]) -> list[Sample]:
    """``samples`` with the labels of :func:`read_relabel`'s corrections applied (by split key).

    A key that names none of ``samples`` is logged (a typo, a photo since removed, or data
    given only in part), not raised: a long training run should not fail on it."""
    unknown = sorted(set(relabel.values()) - set(labels))
    if unknown:
        raise TrainingDataError(f"relabel names {', '.join(unknown)}, not one of the labels {', '.join(labels)}")
    index = {name: i for i, name in enumerate(labels)}
    out, found = [], set()
    for s in samples:
        key = split_key(s, roots)
        if key in relabel:
            found.add(key)
            s = Sample(s.path, index[relabel[key]])
        out.append(s)
    if len(found) < len(relabel):
        log.warning("relabel: %d of %d keys name no photo here, e.g. %s", len(relabel) - len(found),
                    len(relabel), min(set(relabel) - found))
    return out


def group_of(sample: Sample, roots: Sequence[Path], labelled: bool) -> str:
    """The source a photo comes from: its data folder (``pet-breeds/train``, ``more-cats``)
    or, for a folder of unlabelled photos, its first sub-folder (``not-pets/animals``)."""
    root = root_of(sample, roots)
    parts = sample.path.relative_to(root).parts[:-1]
    return f"{source_name(root)}/{parts[0]}" if parts and not labelled else source_name(root)


def balanced_weights(samples: Sequence[Sample], groups: Sequence[str], power: float = 0.5,
                     cap: float = 4.0) -> np.ndarray:
    """Sampling weights that keep each label's share but even out its sources.

    Within a label, a source of n photos gets a share proportional to n**power (0.5: 800
    CIFAR thumbnails no longer drown 88 scenes, yet 88 scenes are not repeated 10 times
    over); no photo weighs more than ``cap`` times the label's average, so a source of five
    photos is not memorised. Each label's total weight is its number of photos.
    """
    labels = np.asarray([s.label for s in samples])
    groups_ = np.asarray(groups)
    weights = np.ones(len(samples))
    for label in np.unique(labels):
        mine = labels == label
        names, counts = np.unique(groups_[mine], return_counts=True)
        share = counts.astype(float) ** power
        per_photo = dict(zip(names, share / share.sum() * mine.sum() / counts))
        w = np.array([per_photo[g] for g in groups_[mine]])
        capped = np.zeros(len(w), dtype=bool)
        while (w[~capped] > cap).any():  # water-filling: the capped photos hold the cap, the rest share what is left
            capped |= w > cap
            w[capped] = cap
            w[~capped] *= (mine.sum() - cap * capped.sum()) / w[~capped].sum()
        weights[mine] = w
    return weights


def load_for_training(samples: Sequence[Sample], short_side: int, progress=None) -> tuple[list[Image.Image], list[Sample]]:
    """Decode every sample once, shrunk so its short side is ``short_side``; unreadable ones are skipped."""
    images, kept = [], []
    iterator = progress(samples) if progress else samples
    for s in iterator:
        try:
            image = load_image(s.path, min_side=short_side)
        except (ImageError, OSError):
            continue
        scale = short_side / min(image.size)
        if scale < 1:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.BICUBIC)
        images.append(image)
        kept.append(s)
    return images, kept


def serving_inputs(samples: Sequence[Sample], spec: InputSpec, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Photos through the exact serving path (calibration must see serving's inputs); unreadable ones skipped."""
    xs, ys = [], []
    for s in progress(samples) if progress else samples:
        try:
            xs.append(prepare(s.path, spec))
            ys.append(s.label)
        except (ImageError, OSError):  # unreadable photo: skipped, as in training
            continue
    x = np.stack(xs) if xs else np.zeros((0, 3, spec.size, spec.size), dtype=np.float32)
    return x, np.asarray(ys, dtype=int)


class AugmentedImages:
    """A torch-style dataset of in-memory PIL images with train-time augmentation.

    Only for training: evaluation goes through :func:`catdog.model.preprocess.prepare`.
    """

    def __init__(self, images: Sequence[Image.Image], labels: Sequence[int], spec: InputSpec,
                 crop_scale: float = 0.25):
        from torchvision.transforms import v2 as T

        self.images, self.labels, self.spec = images, list(labels), spec
        self.augment = T.Compose([
            T.RandomResizedCrop(spec.size, scale=(crop_scale, 1.0), antialias=True,
                                interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.3, 0.3, 0.3, 0.03)], p=0.8),
            T.RandomGrayscale(p=0.05),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import torch

        array = normalize(np.asarray(self.augment(self.images[i])), self.spec)
        return torch.from_numpy(array), self.labels[i]
