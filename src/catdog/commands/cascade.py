"""``catdog cascade FAST_DIR ACCURATE_DIR DATA_DIR... --out OUT``: a fast model in front of an accurate one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from catdog.commands._common import import_training


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "cascade", help="put a fast model in front of an accurate one; the hand-off is chosen on held-out photos",
        description="Write OUT: a copy of ACCURATE_DIR whose model.json names FAST_DIR's model (copied to "
                    "OUT/fast) as a cascade. The fast model answers the photos whose largest probability "
                    "reaches the hand-off and passes the others to the accurate model. The hand-off is the "
                    "lowest at which, on the accurate model's held-out split of DATA_DIR (the split its "
                    "training recorded), the cascade makes no more errors, loses no more pets to 'other', "
                    "catches no fewer non-pets and is no worse calibrated than the accurate model alone "
                    "(--tolerance photos of slack). A fast model trained at another input size gets a "
                    "resize at the start of its graph and a refitted temperature. Prints the report: the "
                    "share of held-out photos on the slow path, the cascade's numbers and the accurate "
                    "model's. Serve OUT like any model (--model OUT, CATDOG_MODEL=OUT).",
    )
    parser.add_argument("fast_dir", type=Path, metavar="FAST_DIR", help="the fast model's folder (model.onnx + model.json)")
    parser.add_argument("accurate_dir", type=Path, metavar="ACCURATE_DIR", help="the accurate model's folder")
    parser.add_argument("data", nargs="+", type=Path, metavar="DATA_DIR",
                        help="the folders the accurate model was trained on (its held-out split is used)")
    parser.add_argument("--others", type=Path, nargs="*", default=[], metavar="DIR",
                        help="the folders of non-pet photos an open-world model was trained with")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the cascade model")
    parser.add_argument("--name", default=None, help="model name written to model.json "
                                                     "(default: the accurate model's name + '-cascade')")
    parser.add_argument("--tolerance", type=float, default=0,
                        help="photos of slack on the held-out split: extra errors, extra pets answered other, "
                             "extra non-pets missed, each also allowing ln 100 nats more summed log loss "
                             "(default 0: no worse)")
    parser.add_argument("--holdout", type=float, default=None,
                        help="held-out fraction (default: the one the accurate model's training recorded)")
    parser.add_argument("--seed", type=int, default=None, help="split seed (default: the recorded one)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cascade = import_training("cascade", "cascade")
    if cascade is None:
        return 2
    try:
        report = cascade.build_cascade(args.fast_dir, args.accurate_dir, args.out, args.data, others=args.others,
                                       holdout=args.holdout, seed=args.seed, tolerance=args.tolerance,
                                       name=args.name, threads=args.threads)
    except ValueError as exc:
        print(f"catdog cascade: {exc}")
        return 1
    print(json.dumps(report, default=float))
    print(f"cascade written to {args.out}: hand-off {report['handoff']:.6g}, "
          f"{report['slow_share']:.1%} of the held-out photos on the slow path; "
          f"check it with: catdog evaluate VAL_DIR --model {args.out}")
    return 0
