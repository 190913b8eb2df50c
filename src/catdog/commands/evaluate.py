"""``catdog evaluate DATA_DIR``: accuracy, calibration and a report with plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from catdog.commands._common import add_model_arguments, load_classifier


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="measure accuracy and calibration on a labelled folder",
        description="Evaluate a model on DATA_DIR/cat and DATA_DIR/dog: accuracy, precision/recall, "
                    "ROC AUC, log loss, ECE, confusion matrix. Writes report.md, metrics.json and plots.",
    )
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder with cat/ and dog/ sub-folders")
    parser.add_argument("--out", type=Path, default=Path("reports/evaluation"),
                        help="where to write the report (default reports/evaluation)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-progress", action="store_true")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from catdog.training.evaluate import evaluate, write_report

    clf = load_classifier(args)
    result = evaluate(clf, args.data_dir, batch_size=args.batch_size, progress=not args.no_progress)
    path = write_report(result, args.out, clf.recipe.labels)
    r = result.report
    print(f"{r['n']} photos: accuracy {r['accuracy']:.2%} ({r['errors']} errors), ROC AUC {r['roc_auc']:.4f}, "
          f"log loss {r['log_loss']:.4f}, ECE {r['ece']:.4f}")
    print(f"report: {path}")
    return 0
