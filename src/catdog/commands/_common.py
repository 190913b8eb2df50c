"""Pieces several sub-commands share: the --model/--threads flags and input-file discovery."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from catdog.config import Settings
from catdog.model.decode import IMAGE_SUFFIXES
from catdog.model.engine import Classifier


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="model file or directory (default: $CATDOG_MODEL, else the bundled model)")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads (default: $CATDOG_THREADS, else all cores)")
    parser.add_argument("--closed-world", action="store_true",
                        help='never answer "other": every photo is a cat or a dog '
                             "(default: $CATDOG_OPEN_WORLD, else open world)")


def load_classifier(args: argparse.Namespace) -> Classifier:
    closed = getattr(args, "closed_world", False)
    return Classifier.from_settings(Settings.from_env(), model=args.model, threads=args.threads,
                                    open_world=False if closed else None)


def iter_image_files(paths: list[Path], recursive: bool = True) -> Iterator[Path]:
    """Files as given, and image files inside folders (sorted, recursive by default).

    A named file is yielded whatever its suffix, so that a mislabelled upload gets its
    own error message instead of being silently skipped.
    """
    for path in paths:
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            yield from sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def import_training(module: str, command: str) -> ModuleType | None:
    """``catdog.training.<module>``, or None after telling the user how to install the extra."""
    try:
        return importlib.import_module(f"catdog.training.{module}")
    except ImportError as exc:
        print(f"catdog {command} needs the training extra: pip install 'catdog[train]' ({exc})")
        return None
