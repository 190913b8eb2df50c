"""``catdog evaluate DATA_DIR``: accuracy, calibration and a report with plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from catdog.commands._common import add_model_arguments, load_classifier


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="measure accuracy and calibration on a labelled folder",
        description="Evaluate a model on DATA_DIR/cat and DATA_DIR/dog (one folder per label): accuracy, "
                    "precision/recall, ROC AUC, log loss, ECE, confusion matrix. With --others, also the "
                    "open-world numbers: the share of non-pet photos answered \"other\" and the share of real "
                    "pets lost to \"other\". Writes report.md, metrics.json and plots.",
    )
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder with cat/ and dog/ sub-folders")
    parser.add_argument("--others", type=Path, default=None, metavar="DIR",
                        help="folder of photos that show neither a cat nor a dog (searched recursively); each "
                             "sub-folder is a source, reported on its own line")
    parser.add_argument("--out", type=Path, default=Path("reports/evaluation"),
                        help="where to write the report (default reports/evaluation)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-progress", action="store_true")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from catdog.training.evaluate import evaluate, write_report

    clf = load_classifier(args)
    result = evaluate(clf, args.data_dir, others=args.others, batch_size=args.batch_size,
                      progress=not args.no_progress)
    path = write_report(result, args.out)
    r = result.report
    print(f"{r['n']} photos: accuracy {r['accuracy']:.2%} ({r['errors']} errors), ROC AUC {r['roc_auc']:.4f}, "
          f"log loss {r['log_loss']:.4f}, ECE {r['ece']:.4f}")
    if "open_world" in r:
        ow = r["open_world"]
        caught = (f"{ow['others_answered_other']:.2%} of {ow['others']} non-pet photos answered other, "
                  if ow["others"] else "")
        print(f"open world: {caught}{ow['pets_answered_other']:.2%} of {ow['pets']} pets answered other, "
              f"pet accuracy {ow['pet_accuracy']:.2%}")
    for name, row in r.get("others_by_source", {}).items():
        called = ", ".join(f"{label} {n}" for label, n in sorted(row["answered"].items(), key=lambda kv: -kv[1]))
        print(f"  {name + '/':<24} {row['answered_other']:7.2%} of {row['n']:>5} answered other ({called})")
    if "cascade" in r:
        c = r["cascade"]
        print(f"cascade: {c['fast']} answered {c['fast_answers']} photos, the accurate model {c['slow_answers']} "
              f"({c['slow_share']:.2%} on the slow path, hand-off {c['handoff']:.6g})")
    print(f"report: {path}")
    return 0
