"""``catdog predict PATH...``: classify photos and folders of photos from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from catdog.commands._common import add_model_arguments, iter_image_files, load_classifier
from catdog.config import Settings
from catdog.model.errors import ImageError, UnreadableFile
from catdog.prediction import Prediction


class Failure(Protocol):
    """A photo that could not be classified: an engine ImageError or a client APIError."""

    code: str
    message: str


#: Photos' bytes in, one Prediction or Failure per photo out, in order.
ClassifyChunk = Callable[[Sequence[bytes]], Sequence[Prediction | Failure]]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="classify photos (files or folders)",
        description="Classify photos as cat, dog or other (neither; if the model knows it). "
                    "Folders are searched recursively. "
                    "Unreadable files are reported and skipped; the exit code is 1 if any failed.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line (path, label, confidence, sure, probabilities)")
    parser.add_argument("--batch-size", type=int, default=16, help="photos per model call (default 16)")
    parser.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--api", metavar="URL", default=None,
                        help="classify through a running catdog server at URL instead of loading the "
                             "model here (same output); its key comes from $CATDOG_API_KEY")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def _read(path: Path) -> bytes | ImageError:
    try:
        return path.read_bytes()
    except OSError as exc:
        return UnreadableFile(f"Cannot read the file: {exc.strerror or exc}.")


def _row(path: Path, outcome: Prediction | Failure) -> dict:
    if isinstance(outcome, Prediction):
        return {"path": str(path), **outcome.to_dict()}
    return {"path": str(path), "error": {"code": outcome.code, "message": outcome.message}}


def run(args: argparse.Namespace) -> int:
    files = list(iter_image_files(args.paths, recursive=not args.no_recursive))
    missing = [p for p in args.paths if not p.exists()]
    if not files and not missing:
        print("catdog: no image files found in " + ", ".join(map(str, args.paths)), file=sys.stderr)
        return 1
    if args.api and (args.model or args.threads or args.closed_world):
        print("catdog: error: --api classifies on the server; --model, --threads and --closed-world "
              "do not apply", file=sys.stderr)
        return 2
    if args.api:
        from catdog.client import APIError, Client

        client = Client(args.api, api_key=Settings().api_key)
        try:
            return _predict(files, args, client.model().labels, client.classify_many)
        except APIError as exc:
            print(f"catdog: error: {exc.message}", file=sys.stderr)
            return 2
        finally:
            client.close()
    clf = load_classifier(args)
    return _predict(files, args, clf.labels, lambda data: clf.predict_batch(data, return_errors=True))


def _likeliest(probabilities: dict[str, float]) -> str:
    """The most probable label and its share, for a "not sure" row: what the numbers say."""
    label = max(probabilities, key=probabilities.__getitem__)
    return f"{label} {probabilities[label]:.1%}"


def _predict(files: list[Path], args: argparse.Namespace, labels: Sequence[str], classify: ClassifyChunk) -> int:
    """Print one row per file; ``labels`` are the answers ``classify`` can give (for the counts)."""
    show_bar = not args.no_progress and len(files) > 20 and sys.stderr.isatty()
    failures = 0
    counts = dict.fromkeys(labels, 0)
    width = max((len(str(p)) for p in files), default=4)
    lw = max(5, *(len(label) for label in labels))
    if not args.json:
        print(f"{'path':<{width}}  {'label':<{lw}}  {'confidence':>10}")
    with tqdm(total=len(files), unit="img", disable=not show_bar, file=sys.stderr) as bar:
        for start in range(0, len(files), args.batch_size):
            chunk = files[start:start + args.batch_size]
            data = [_read(p) for p in chunk]
            readable = [(p, d) for p, d in zip(chunk, data) if not isinstance(d, ImageError)]
            outcomes = dict(zip([p for p, _ in readable], classify([d for _, d in readable])))
            for path, d in zip(chunk, data):
                outcome = d if isinstance(d, ImageError) else outcomes[path]
                failures += not isinstance(outcome, Prediction)
                if isinstance(outcome, Prediction):
                    counts[outcome.label] += 1
                row = _row(path, outcome)
                if args.json:
                    print(json.dumps(row), flush=True)
                elif "error" in row:
                    print(f"{path!s:<{width}}  error: {row['error']['message']}")
                else:
                    print(f"{path!s:<{width}}  {row['label']:<{lw}}  {row['confidence']:>9.1%}"
                          + ("" if row["sure"] else f"  not sure ({_likeliest(row['probabilities'])})"))
            bar.update(len(chunk))
    if not args.json and len(files) > 1:
        print(", ".join(f"{label}: {n}" for label, n in counts.items()) + f", errors: {failures}", file=sys.stderr)
    if failures and not args.json:
        print(f"catdog: {failures} of {len(files)} files could not be classified", file=sys.stderr)
    return 1 if failures else 0
