"""``catdog bulk INPUT... --out OUT``: classify a folder, a glob or a bucket with Apache Beam.

Beam is imported only when the command runs (``catdog[bulk]``), so ``catdog --help`` and the
API's container, which has no Beam, are unaffected.
"""

from __future__ import annotations

import argparse
import logging
import sys

from catdog.commands._common import add_model_arguments

DESCRIPTION = """\
Classify every photo under INPUT with an Apache Beam pipeline: on this machine by default
(Beam's local runner), or on Dataflow, Flink or Spark with --runner and Beam's own options,
with no other change. INPUT is a folder (searched recursively for image files), a glob or a
single file, local or remote (gs://...). Writes OUT/predictions-*.jsonl (one row per photo),
OUT/errors-*.jsonl (one row per unreadable file, with the API's error codes) and
OUT/summary.json. Options catdog does not know are Beam pipeline options; write them with
'=' (--project=my-project). See docs/bulk.md."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bulk", help="classify a folder or bucket of photos on Apache Beam (needs the [bulk] extra)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        # Beam's options pass through untouched, so none may be taken as an abbreviation of ours.
        allow_abbrev=False,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="folder, glob or file (local or gs://)")
    parser.add_argument("--out", required=True, help="output folder (local or gs://)")
    add_model_arguments(parser)  # --model, --threads, --closed-world: as for predict, on every worker
    parser.add_argument("--runner", default="DirectRunner",
                        help="Beam runner: DirectRunner (default, this machine), DataflowRunner, FlinkRunner...")
    parser.add_argument("--batch-size", type=int, default=16, help="photos per model call (default 16)")
    parser.add_argument("--max-file-mb", type=float, default=50.0,
                        help="larger files become file_too_large error rows, unread (default 50)")
    parser.add_argument("--csv", action="store_true", help="also write predictions-*.csv")
    parser.add_argument("--parquet", action="store_true", help="also write predictions-*.parquet")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in OUT")
    parser.set_defaults(func=run, passthrough=True)


def run(args: argparse.Namespace) -> int:
    if not args.verbose:
        # Beam logs every stage it schedules at INFO, and its import warns on the root logger
        # about Google Cloud clients that only its BigQuery connector needs.
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    try:
        from catdog.bulk import handler, pipeline
    except ImportError as exc:
        print(f"catdog bulk needs the bulk extra: pip install 'catdog[bulk]' ({exc})")
        return 2
    finally:
        root.setLevel(level)
    if args.batch_size < 1:
        print("catdog: error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    job = pipeline.BulkJob(
        inputs=args.inputs, out=args.out,
        spec=handler.ModelSpec(model=str(args.model) if args.model else None, threads=args.threads,
                               open_world=False if args.closed_world else None),
        batch_size=args.batch_size, max_file_mb=args.max_file_mb,
        formats=[fmt for fmt in pipeline.EXTRA_FORMATS if getattr(args, fmt)],
        runner=args.runner, pipeline_args=args.extra_args, overwrite=args.overwrite,
    )
    summary = pipeline.run(job)
    labels = ", ".join(f"{label} {n:,}" for label, n in summary["labels"].items())
    codes = ", ".join(f"{code} {n:,}" for code, n in summary["error_codes"].items())
    print(f"catdog bulk: {summary['photos']:,} photos classified ({labels}), "
          f"{summary['errors']:,} errors{f' ({codes})' if codes else ''}, in {summary['seconds']:.1f} s "
          f"({summary['photos_per_second'] or 0:.1f} photos/s); results in {args.out}")
    if summary["photos"] + summary["errors"] == 0:
        print(f"catdog: no files found in {', '.join(args.inputs)}", file=sys.stderr)
        return 1
    return 0
