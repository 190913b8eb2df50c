"""``catdog feedback``: what people corrected ("Wrong answer?"), straight from the feedback database.

These are operator commands: they open the database the server writes to (``CATDOG_FEEDBACK_URL``,
else the SQLite file ``CATDOG_FEEDBACK_PATH``; ``--db`` overrides both), so whoever runs them
already holds the database's credentials. See docs/feedback.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from catdog.config import Settings

if TYPE_CHECKING:
    from catdog.feedback.store import FeedbackStore

EPILOG = """\
examples:
  catdog feedback summary                       # counts by model version, answer and correction
  catdog feedback export --out feedback-data    # feedback-data/{cat,dog,other}/ + feedback.csv
  catdog evaluate feedback-data --others feedback-data/other   # the current model on what people corrected
  catdog feedback delete 42                     # one entry and its photo, for good
  catdog feedback --db postgresql+psycopg://catdog@127.0.0.1/catdog summary

The database: --db, else $CATDOG_FEEDBACK_URL, else the SQLite file $CATDOG_FEEDBACK_PATH
(default ~/.local/share/catdog/feedback.sqlite3), the one the server writes to.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "feedback", help="people's corrections: summary, export as training data, delete",
        description="Read and manage the corrections people sent with \"Wrong answer?\" (POST /v1/feedback).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", metavar="URL_OR_PATH", default=None,
                        help="the feedback database: an SQLAlchemy URL or an SQLite file "
                             "(default: $CATDOG_FEEDBACK_URL, else $CATDOG_FEEDBACK_PATH)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    summary = actions.add_parser("summary", help="counts by model version, answer and correction",
                                 description="Print how many corrections each model version got, by answer and "
                                             "correction, and how many came with a shared photo.")
    summary.add_argument("--json", action="store_true", help="print the JSON that GET /v1/feedback/summary answers")
    summary.set_defaults(func=run_summary)

    export = actions.add_parser(
        "export", help="write the shared photos by label, and feedback.csv of every entry",
        description="Write OUT/<label>/ with every shared photo, byte for byte, under the label the person "
                    "chose (the model's labels always get a folder), and OUT/feedback.csv with every entry "
                    "(with and without a photo). OUT then feeds `catdog evaluate OUT --others OUT/other` and "
                    "`catdog train DATA_DIR OUT --others ... OUT/other` (see the model card's \"How to retrain\").")
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write (created)")
    export.set_defaults(func=run_export)

    remove = actions.add_parser("delete", help="delete one entry and its photo",
                                description="Delete the entry with this id (feedback.csv lists the ids) and "
                                            "its photo, for good.")
    remove.add_argument("id", type=int, metavar="ID")
    remove.set_defaults(func=run_delete)

    migrate = actions.add_parser("migrate", help="create or upgrade the database's schema",
                                 description="Apply the feedback schema's migrations (the server also does on "
                                             "its first feedback request); useful before the first deploy.")
    migrate.set_defaults(func=run_migrate)

    purge = actions.add_parser("purge", help="delete entries past the retention period now",
                               description="Delete entries unchanged for longer than "
                                           "$CATDOG_FEEDBACK_RETENTION_DAYS (the server does this hourly).")
    purge.set_defaults(func=run_purge)


def settings_for(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if args.db:
        if "://" in args.db:
            return settings.model_copy(update={"feedback_url": args.db})
        return settings.model_copy(update={"feedback_url": None, "feedback_path": Path(args.db)})
    return settings


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[FeedbackStore]:
    """The store, its schema up to date (retention is applied by ``purge`` only), closed afterwards."""
    from catdog.feedback.store import FeedbackStore

    store = FeedbackStore.open(settings_for(args), purge=False)
    try:
        yield store
    finally:
        store.close()


def model_labels(settings: Settings) -> tuple[str, ...]:
    """The served model's labels, from its model.json (without loading the model); () if unreadable."""
    try:
        from catdog.model.engine import resolve_model_path
        from catdog.model.recipe import Recipe

        return tuple(Recipe.read(resolve_model_path(settings.model).with_name("model.json")).labels)
    except Exception:  # noqa: BLE001 - folders for the data's own labels are still written
        return ()


def run_summary(args: argparse.Namespace) -> int:
    with opened(args) as store:
        summary = store.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['total']} entries, {summary['corrected']} corrected (the answer was wrong), "
          f"{summary['photos']} with a shared photo  [{store.url}]")
    for group in summary["by_version"]:
        share = group["corrected"] / group["total"] if group["total"] else 0.0
        print(f"\n{group['model'] or '?'} {group['version'] or '?'}: {group['total']} entries, "
              f"{group['corrected']} corrected ({share:.0%}), {group['photos']} photos")
        print(f"  {'answer':<12} {'correction':<12} {'count':>6}")
        for row in group["counts"]:
            print(f"  {row['answer']:<12} {row['correct']:<12} {row['count']:>6}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    with opened(args) as store:
        result = store.export(args.out, model_labels(settings_for(args)))
    print(f"exported {result.entries} entries ({result.photos} shared photos) to {args.out} "
          f"(list: {result.csv})")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with opened(args) as store:
        store.delete(args.id)
    print(f"deleted feedback entry {args.id}")
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    with opened(args) as store:
        print(f"feedback database {store.url} at schema revision {store.revision()}")
    return 0


def run_purge(args: argparse.Namespace) -> int:
    with opened(args) as store:
        removed = store.purge()
    days = store.retention_days
    print(f"deleted {removed} entries unchanged for more than {days} days" if days
          else "retention is 0 (keep for ever): nothing deleted")
    return 0
