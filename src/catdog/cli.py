"""The ``catdog`` command. Each sub-command lives in its own module under
:mod:`catdog.commands` and registers itself (a registry, not an if-chain):
a module there defines ``add_parser(subparsers)`` that sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from catdog import __version__
from catdog.model.errors import CatdogError

#: Order in ``catdog --help``; modules not listed here come after, alphabetically.
PREFERRED_ORDER = ["up", "serve", "predict", "bulk", "evaluate", "train", "info"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="catdog",
        description="Tell cats from dogs in photos: CLI, REST API and web UI on one ONNX model.",
        epilog="Settings also come from CATDOG_* environment variables; see README.md.",
    )
    parser.add_argument("--version", action="version", version=f"catdog {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import catdog.commands as package

    names = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (PREFERRED_ORDER.index(n) if n in PREFERRED_ORDER else len(PREFERRED_ORDER), n))
    for name in names:
        importlib.import_module(f"catdog.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # A sub-command that hands options on to another tool (bulk: Beam's pipeline options)
    # sets ``passthrough`` and receives them; for every other one they are a usage error.
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_args = extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except CatdogError as exc:
        print(f"catdog: error: {exc.message}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # a folder or file the user named is missing or empty
        print(f"catdog: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
