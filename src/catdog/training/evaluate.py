"""Evaluate a served model on a labelled folder, through the serving engine itself.

Evaluation runs the exact ``Classifier`` the API runs (ONNX Runtime, serving
preprocessing, calibration), so the numbers in the report are the numbers users get.
Needs only the serving dependencies, plus matplotlib for the plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from catdog.model.engine import Classifier, Prediction
from catdog.training.data import Sample, find_samples
from catdog.training.metrics import classification_report, reliability, roc_curve


@dataclass
class Evaluation:
    samples: list[Sample]
    p_second: np.ndarray  # P(second label) per sample, NaN where the photo could not be read
    report: dict
    failed: list[tuple[Path, str]]

    def misclassified(self) -> list[tuple[Sample, float]]:
        """Wrong answers, most confidently wrong first."""
        threshold = self.report["threshold"]
        wrong = [(s, p) for s, p in zip(self.samples, self.p_second)
                 if not np.isnan(p) and int(p >= threshold) != s.label]
        return sorted(wrong, key=lambda sp: -abs(sp[1] - 0.5))


def evaluate(clf: Classifier, data_dir: str | Path, *, batch_size: int = 16, progress: bool = True) -> Evaluation:
    """Classify every photo under ``data_dir/<label>/`` and compute every metric."""
    samples = find_samples([data_dir], clf.recipe.labels)
    probs = np.full(len(samples), np.nan)
    failed = []
    stream = clf.predict_many((s.path for s in samples), batch_size=batch_size)
    for i, (path, outcome) in enumerate(tqdm(stream, total=len(samples), unit="img", desc="evaluate",
                                             disable=not progress, dynamic_ncols=True)):
        if isinstance(outcome, Prediction):
            probs[i] = outcome.probabilities[clf.recipe.labels[1]]
        else:
            failed.append((Path(path), outcome.message))
    ok = ~np.isnan(probs)
    y = np.array([s.label for s in samples])
    report = classification_report(y[ok], probs[ok], clf.recipe.labels, clf.recipe.threshold)
    report["unreadable"] = len(failed)
    report["model"] = {"name": clf.recipe.name, "version": clf.recipe.version}
    report["data"] = str(data_dir)
    return Evaluation(samples, probs, report, failed)


def write_report(evaluation: Evaluation, out_dir: str | Path, labels=("cat", "dog")) -> Path:
    """``metrics.json``, ``report.md`` and PNG plots under ``out_dir``; returns the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = evaluation.report
    (out / "metrics.json").write_text(json.dumps(r, indent=2, default=float) + "\n")
    plots = _plots(evaluation, out, labels)
    cm = r["confusion_matrix"]
    lines = [
        f"# Evaluation of {r['model']['name']} {r['model']['version']}",
        "",
        f"Data: `{r['data']}` ({r['n']} photos, {r['unreadable']} unreadable).",
        "",
        "| metric | value |", "|---|---|",
        f"| accuracy | {r['accuracy']:.2%} ({r['errors']} errors) |",
        f"| ROC AUC | {r['roc_auc']:.4f} |",
        f"| log loss | {r['log_loss']:.4f} |",
        f"| ECE (10 bins) | {r['ece']:.4f} |",
        "",
        "| class | precision | recall | F1 | support |", "|---|---|---|---|---|",
        *[f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
          for name, c in r["per_class"].items()],
        "",
        "Confusion matrix (rows: truth, columns: prediction):",
        "",
        f"| | {labels[0]} | {labels[1]} |", "|---|---|---|",
        f"| **{labels[0]}** | {cm[0][0]} | {cm[0][1]} |",
        f"| **{labels[1]}** | {cm[1][0]} | {cm[1][1]} |",
        "",
    ]
    lines += [f"![{name}]({file})" for name, file in plots]
    wrong = evaluation.misclassified()
    if wrong:
        lines += ["", "## Misclassified photos (most confident first)", "",
                  "| photo | truth | P(dog) |", "|---|---|---|"]
        lines += [f"| `{s.path.name}` | {labels[s.label]} | {p:.3f} |" for s, p in wrong]
    if evaluation.failed:
        lines += ["", "## Unreadable photos", ""] + [f"- `{p}`: {msg}" for p, msg in evaluation.failed]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plots(evaluation: Evaluation, out: Path, labels) -> list[tuple[str, str]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from PIL import Image, ImageOps

    r = evaluation.report
    ok = ~np.isnan(evaluation.p_second)
    y = np.array([s.label for s in evaluation.samples])[ok]
    p = evaluation.p_second[ok]
    made = []

    fig, ax = plt.subplots(figsize=(4, 3.6))
    cm = np.array(r["confusion_matrix"])
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=14)
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(f"accuracy {r['accuracy']:.2%}")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=120)
    plt.close(fig)
    made.append(("confusion matrix", "confusion_matrix.png"))

    fpr, tpr = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.plot(fpr, tpr, label=f"AUC {r['roc_auc']:.4f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=120)
    plt.close(fig)
    made.append(("ROC curve", "roc.png"))

    rows = reliability(y, p)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.plot([0.5, 1], [0.5, 1], "k:", lw=0.8, label="perfect calibration")
    ax.bar([(b["lo"] + b["hi"]) / 2 for b in rows], [b["accuracy"] for b in rows], width=0.045,
           alpha=0.7, label="accuracy per bin")
    ax.plot([b["confidence"] for b in rows], [b["accuracy"] for b in rows], "o-", color="C1",
            label="mean confidence")
    for b in rows:
        ax.annotate(str(b["count"]), ((b["lo"] + b["hi"]) / 2, 0.505), ha="center", fontsize=7)
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.5, 1.01)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {r['ece']:.4f})")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=120)
    plt.close(fig)
    made.append(("reliability diagram", "reliability.png"))

    wrong = evaluation.misclassified()[:24]
    if wrong:
        cols = min(6, len(wrong))
        rows_n = (len(wrong) + cols - 1) // cols
        fig, axes = plt.subplots(rows_n, cols, figsize=(2.1 * cols, 2.4 * rows_n), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (s, prob) in zip(axes.flat, wrong):
            with Image.open(s.path) as im:
                ax.imshow(ImageOps.exif_transpose(im).convert("RGB").resize((160, 160)))
            ax.set_title(f"{s.path.name}\n{labels[s.label]}, P(dog)={prob:.2f}", fontsize=7)
        fig.suptitle("misclassified (truth, P(dog))", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "misclassified.png", dpi=110)
        plt.close(fig)
        made.append(("misclassified photos", "misclassified.png"))
    return made
