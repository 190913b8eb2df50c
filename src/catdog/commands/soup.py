"""``catdog soup --runs RUN... DATA_DIR...``: average open-world fine-tunes into one model (needs ``catdog[train]``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from catdog.commands._common import import_training


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "soup", help="average the weights of open-world fine-tunes of one parent into one model "
                     "(a model soup; needs the [train] extra)",
        description="Average the weights of several `catdog train --init --others` runs that share a parent and a "
                    "held-out split (a model soup: one network, no extra serving cost, often sturdier on photos "
                    "from elsewhere), then refit its temperature and 'other' threshold on that held-out split "
                    "and export it. Runs with --other-kinds and runs without can be mixed. Quantise the result "
                    "with `catdog quantize` as any trained model.",
    )
    parser.add_argument("data", nargs="+", type=Path, metavar="DATA_DIR", help="the pet folders the runs trained on")
    parser.add_argument("--runs", nargs="+", type=Path, required=True, metavar="RUN_DIR",
                        help="`catdog train --out` folders (model.pt, model.json, history.json)")
    parser.add_argument("--others", type=Path, nargs="+", required=True, metavar="DIR",
                        help="the non-pet folders the runs trained with")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--other-cap", type=float, default=0.003,
                        help="at most this share of held-out pets may be answered other (default 0.003)")
    parser.add_argument("--name", default=None, help="model name (default: the first run's)")
    parser.add_argument("--version", default=None, help="version (default: the first run's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    module = import_training("soup", "soup")
    if module is None:
        return 2
    summary = module.soup(args.runs, args.data, args.others, args.out, other_cap=args.other_cap,
                          name=args.name, version=args.version)
    print(json.dumps({k: summary[k] for k in ("temperature", "other_threshold", "seconds")}
                     | {"held_out": summary["holdout"]["open_world"]}))
    print(f"model written to {args.out}; quantise it with: catdog quantize {args.out} DATA_DIR... --others DIR... "
          f"--out OUT")
    return 0
