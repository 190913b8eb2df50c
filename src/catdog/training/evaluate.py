"""Evaluate a served model on a labelled folder, through the serving engine itself.

Evaluation runs the exact ``Classifier`` the API runs (ONNX Runtime, serving
preprocessing, calibration), so the numbers in the report are the numbers users get.
Needs only the serving dependencies, plus matplotlib for the plots.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from catdog.model.engine import Classifier, Prediction
from catdog.training.data import Sample, find_samples, find_unlabelled
from catdog.training.metrics import classification_report, reliability, roc_curve


@dataclass
class Evaluation:
    samples: list[Sample]
    labels: tuple[str, ...]
    probs: np.ndarray  # (N, K) probabilities in label order, NaN rows where the photo could not be read
    pred: np.ndarray  # (N,) index of the engine's answer, -1 where unreadable
    report: dict
    failed: list[tuple[Path, str]]

    @property
    def readable(self) -> np.ndarray:
        return self.pred >= 0

    def misclassified(self) -> list[tuple[Sample, str, float]]:
        """Wrong answers as (sample, answer, its confidence), most confidently wrong first."""
        wrong = [(s, self.labels[q], float(p[q])) for s, p, q in zip(self.samples, self.probs, self.pred)
                 if q >= 0 and q != s.label]
        return sorted(wrong, key=lambda row: -row[2])


def evaluate(clf: Classifier, data_dir: str | Path, *, others: str | Path | None = None, batch_size: int = 16,
             progress: bool = True) -> Evaluation:
    """Classify every photo under ``data_dir/<label>/`` (and ``others``, if given) and compute every metric.

    ``others`` holds photos that show none of the known labels: their truth is the model's
    ``other_label`` (for a model without one, a label "other" is added to the report, which the
    model can never answer, so each of them counts as an error).
    """
    labels = tuple(clf.labels)
    other = clf.recipe.other_label if clf.open_world else None
    known = [lb for lb in labels if lb != other]
    samples = [Sample(s.path, labels.index(known[s.label])) for s in find_samples([data_dir], known)]
    if others is not None:
        if other is None:
            other, labels = "other", (*labels, "other")
        samples += find_unlabelled(others, labels.index(other))
    probs = np.full((len(samples), len(labels)), np.nan)
    pred = np.full(len(samples), -1)
    failed = []
    counted = clf.cascade.counts() if clf.cascade is not None else None
    stream = clf.predict_many((s.path for s in samples), batch_size=batch_size)
    for i, (path, outcome) in enumerate(tqdm(stream, total=len(samples), unit="img", desc="evaluate",
                                             disable=not progress, dynamic_ncols=True)):
        if isinstance(outcome, Prediction):
            probs[i] = [outcome.probabilities.get(lb, 0.0) for lb in labels]
            pred[i] = labels.index(outcome.label)
        else:
            failed.append((Path(path), outcome.message))
    ok = pred >= 0
    y = np.array([s.label for s in samples], dtype=int)
    report = classification_report(y[ok], probs[ok], labels, clf.recipe.threshold, pred=pred[ok],
                                   other_label=other)
    report["unreadable"] = len(failed)
    if clf.cascade is not None and counted is not None:  # which model answered, for this data only
        fast, slow = (now - before for now, before in zip(clf.cascade.counts(), counted))
        report["cascade"] = {"fast": clf.cascade.fast.recipe.name, "handoff": clf.cascade.handoff,
                             "fast_answers": fast, "slow_answers": slow,
                             "slow_share": slow / (fast + slow) if fast + slow else float("nan")}
    report["model"] = {"name": clf.recipe.name, "version": clf.recipe.version}
    report["data"] = str(data_dir)
    if others is not None:
        report["others_data"] = str(others)
        report["others_by_source"] = by_source(samples, pred, labels, Path(others), labels.index(other))
    return Evaluation(samples, labels, probs, pred, report, failed)


def by_source(samples: list[Sample], pred: np.ndarray, labels: tuple[str, ...], others: Path, other: int) -> dict:
    """For each sub-folder of ``others`` (a source, e.g. ``people``): how many of its readable
    photos were answered other, and what the rest were called."""
    rows: dict[str, dict] = {}
    for s, q in zip(samples, pred):
        if s.label != other or q < 0:
            continue
        parts = s.path.relative_to(others).parts
        row = rows.setdefault(parts[0] if len(parts) > 1 else ".", {"n": 0, "answered": {}})
        row["n"] += 1
        row["answered"][labels[q]] = row["answered"].get(labels[q], 0) + 1
    for row in rows.values():
        row["answered_other"] = row["answered"].get(labels[other], 0) / row["n"]
    return dict(sorted(rows.items()))


def write_report(evaluation: Evaluation, out_dir: str | Path) -> Path:
    """``metrics.json``, ``report.md`` and PNG plots under ``out_dir``; returns the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r, labels = evaluation.report, evaluation.labels
    (out / "metrics.json").write_text(json.dumps(r, indent=2, default=float) + "\n")
    plots = _plots(evaluation, out)
    cm = r["confusion_matrix"]
    data = f"`{r['data']}`" + (f" and, as other, `{r['others_data']}`" if "others_data" in r else "")
    lines = [
        f"# Evaluation of {r['model']['name']} {r['model']['version']}",
        "",
        f"Data: {data} ({r['n']} photos, {r['unreadable']} unreadable).",
        "",
        "| metric | value |", "|---|---|",
        f"| accuracy | {r['accuracy']:.2%} ({r['errors']} errors) |",
        *_open_world_rows(r.get("open_world")),
        *_cascade_rows(r.get("cascade")),
        *_source_rows(r.get("others_by_source")),
        f"| ROC AUC | {r['roc_auc']:.4f} |",
        f"| log loss | {r['log_loss']:.4f} |",
        f"| ECE (10 bins) | {r['ece']:.4f} |",
        "",
        "| class | precision | recall | F1 | support |", "|---|---|---|---|---|",
        *[f"| {name} | {_score(c['precision'])} | {_score(c['recall'])} | {_score(c['f1'])} | {c['support']} |"
          for name, c in r["per_class"].items()],
        "",
        "Confusion matrix (rows: truth, columns: prediction):",
        "",
        "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|",
        *[f"| **{name}** | " + " | ".join(str(v) for v in row) + " |" for name, row in zip(labels, cm)],
        "",
    ]
    lines += [f"![{name}]({file})" for name, file in plots]
    wrong = evaluation.misclassified()
    if wrong:
        lines += ["", "## Misclassified photos (most confident first)", "",
                  "| photo | truth | answer | confidence |", "|---|---|---|---|"]
        lines += [f"| `{s.path.name}` | {labels[s.label]} | {answer} | {conf:.3f} |" for s, answer, conf in wrong]
    if evaluation.failed:
        lines += ["", "## Unreadable photos", ""] + [f"- `{p}`: {msg}" for p, msg in evaluation.failed]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _source_rows(sources: dict | None) -> list[str]:
    return [f"| non-pets from `{name}/` answered other | {row['answered_other']:.2%} of {row['n']} |"
            for name, row in (sources or {}).items()]


def _score(value: float) -> str:
    """A per-class score, or a dash where it is undefined (no photo of that class, none answered it)."""
    return "—" if math.isnan(value) else f"{value:.4f}"


def _cascade_rows(cascade: dict | None) -> list[str]:
    if not cascade:
        return []
    row = (f"| slow path (cascade, hand-off {cascade['handoff']:.6g}) | {cascade['slow_share']:.2%} "
           f"({cascade['slow_answers']} photo{'' if cascade['slow_answers'] == 1 else 's'} went past {cascade['fast']} to the accurate model) |")
    return [row]


def _open_world_rows(ow: dict | None) -> list[str]:
    if not ow:
        return []
    caught = (f"{ow['others_answered_other']:.2%} of {ow['others']}" if ow["others"]
              else "not measured (no `--others` folder)")
    return [
        f"| non-pet photos answered other | {caught} |",
        f"| real pets answered other | {ow['pets_answered_other']:.2%} of {ow['pets']} |",
        f"| accuracy on pets (other counts as wrong) | {ow['pet_accuracy']:.2%} |",
    ]


def _plots(evaluation: Evaluation, out: Path) -> list[tuple[str, str]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []

    r, labels = evaluation.report, list(evaluation.labels)
    ok = evaluation.readable
    y = np.array([s.label for s in evaluation.samples])[ok]
    probs, pred = evaluation.probs[ok], evaluation.pred[ok]
    made = [_plot_confusion(plt, np.array(r["confusion_matrix"]), labels, r["accuracy"], out)]
    if len(labels) == 2:
        made.append(_plot_roc(plt, y, probs[:, 1], r["roc_auc"], out))
    made.append(_plot_reliability(plt, y, probs, pred, r["ece"], out))
    wrong = evaluation.misclassified()[:24]
    if wrong:
        made.append(_plot_misclassified(plt, wrong, labels, out))
    return made


def _plot_confusion(plt, cm: np.ndarray, labels: list[str], accuracy: float, out: Path) -> tuple[str, str]:
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.4 * k + 1.2, 1.3 * k + 1.0))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=14)
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(f"accuracy {accuracy:.2%}")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=120)
    plt.close(fig)
    return ("confusion matrix", "confusion_matrix.png")


def _plot_roc(plt, y: np.ndarray, p: np.ndarray, auc: float, out: Path) -> tuple[str, str]:
    fpr, tpr = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.plot(fpr, tpr, label=f"AUC {auc:.4f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=120)
    plt.close(fig)
    return ("ROC curve", "roc.png")


def _plot_reliability(plt, y: np.ndarray, probs: np.ndarray, pred: np.ndarray, ece: float,
                      out: Path) -> tuple[str, str]:
    rows = reliability(y, probs, pred)
    low = 1.0 / probs.shape[1]
    width = (1.0 - low) / 10
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.plot([low, 1], [low, 1], "k:", lw=0.8, label="perfect calibration")
    ax.bar([(b["lo"] + b["hi"]) / 2 for b in rows], [b["accuracy"] for b in rows], width=width * 0.9,
           alpha=0.7, label="accuracy per bin")
    ax.plot([b["confidence"] for b in rows], [b["accuracy"] for b in rows], "o-", color="C1",
            label="mean confidence")
    for b in rows:
        ax.annotate(str(b["count"]), ((b["lo"] + b["hi"]) / 2, low + 0.005), ha="center", fontsize=7)
    ax.set_xlim(low, 1.0)
    ax.set_ylim(low, 1.01)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.4f})")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=120)
    plt.close(fig)
    return ("reliability diagram", "reliability.png")


def _plot_misclassified(plt, wrong: list[tuple[Sample, str, float]], labels: list[str],
                        out: Path) -> tuple[str, str]:
    from PIL import Image, ImageOps

    cols = min(6, len(wrong))
    rows_n = (len(wrong) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(2.1 * cols, 2.4 * rows_n), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (s, answer, conf) in zip(axes.flat, wrong):
        with Image.open(s.path) as im:
            ax.imshow(ImageOps.exif_transpose(im).convert("RGB").resize((160, 160)))
        ax.set_title(f"{s.path.name[:22]}\n{labels[s.label]} -> {answer} {conf:.2f}", fontsize=7)
    fig.suptitle("misclassified (truth -> answer, confidence)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "misclassified.png", dpi=110)
    plt.close(fig)
    return ("misclassified photos", "misclassified.png")
