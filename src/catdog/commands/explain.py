"""``catdog explain PHOTO... --out DIR_OR_FILE``: where the model looked, as overlay PNGs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from catdog.commands._common import add_model_arguments, iter_image_files, load_classifier
from catdog.model.decode import load_image
from catdog.model.errors import ExplainUnavailable, ImageError, UnreadableFile


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="show where the model looked (heatmap overlays)",
        description="Classify photos and write each one, at its own size, with a heatmap of where the "
                    "model looked for its answer blended on top (PNG). Folders are searched recursively. "
                    "The exit code is 1 if any photo failed.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PHOTO", help="image files or folders")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR_OR_FILE",
                        help="folder for the overlays (PHOTO-NAME.explain.png each; created if needed), "
                             "or a .png file name for a single photo")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line: path, the prediction, the heatmap grid "
                             "(and the overlay's path with --out)")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def _targets(files: list[Path], out: Path) -> list[Path]:
    """Where each photo's overlay goes: ``out`` itself for one photo and a ``.png`` name, else
    ``out/<stem>.explain.png`` (``-2``, ``-3``... when two photos share a name)."""
    if len(files) == 1 and out.suffix.lower() == ".png" and not out.is_dir():
        return [out]
    taken: dict[str, int] = {}
    targets = []
    for path in files:
        n = taken[path.stem] = taken.get(path.stem, 0) + 1
        targets.append(out / (f"{path.stem}.explain.png" if n == 1 else f"{path.stem}-{n}.explain.png"))
    return targets


def run(args: argparse.Namespace) -> int:
    if args.out is None and not args.json:
        print("catdog: error: say where the overlays go (--out DIR_OR_FILE), or ask for --json", file=sys.stderr)
        return 2
    files = list(iter_image_files(args.paths))
    if not files:
        print("catdog: no image files found in " + ", ".join(map(str, args.paths)), file=sys.stderr)
        return 1
    if args.out is not None and len(files) > 1 and args.out.suffix.lower() == ".png" and not args.out.is_dir():
        print(f"catdog: error: {len(files)} photos need a folder for --out, not the file name {args.out}",
              file=sys.stderr)
        return 2
    clf = load_classifier(args)
    targets = _targets(files, args.out) if args.out is not None else [None] * len(files)
    failures = 0
    for path, target in zip(files, targets):
        try:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise UnreadableFile(f"Cannot read the file: {exc.strerror or exc}.") from None
            explanation = clf.explain(data)
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                # The whole photo at its own size (the model's input was decoded smaller).
                explanation.overlay(load_image(data, max_pixels=clf.max_pixels)).save(target)
        except ExplainUnavailable as exc:
            print(f"catdog: error: {exc.message}", file=sys.stderr)
            return 2
        except ImageError as exc:
            failures += 1
            if args.json:
                print(json.dumps({"path": str(path), "error": {"code": exc.code, "message": exc.message}}))
            else:
                print(f"{path}  error: {exc.message}")
            continue
        prediction = explanation.prediction
        if args.json:
            row = {"path": str(path), **explanation.to_dict()}
            if target is not None:
                row["overlay"] = str(target)
            print(json.dumps(row), flush=True)
        else:
            print(f"{path}  {prediction.label}  {prediction.confidence:.1%}  -> {target}", flush=True)
    if failures and not args.json:
        print(f"catdog: {failures} of {len(files)} photos could not be explained", file=sys.stderr)
    return 1 if failures else 0
