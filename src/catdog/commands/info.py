"""``catdog info``: which model would be served, and what its card says."""

from __future__ import annotations

import argparse
import json

from catdog.commands._common import add_model_arguments, load_classifier


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("info", help="show the model that would be served",
                                   description="Load the model and print its recipe and metrics as JSON.")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    clf = load_classifier(args)
    print(json.dumps({**clf.info(), "path": str(clf.path)}, indent=2))
    return 0
