"""The feedback store: people's corrections in a real database, through SQLAlchemy 2.

* **Where.** ``CATDOG_FEEDBACK_URL`` (any SQLAlchemy URL: PostgreSQL for several instances), else
  the SQLite file ``CATDOG_FEEDBACK_PATH``, created on first use. Shared photos live in the
  database, or in the folder ``CATDOG_FEEDBACK_PHOTOS`` (one file per entry, ``<id>.<ext>``).
* **SQLite with several gunicorn workers.** WAL mode (readers never wait for the writer), a
  30 s busy timeout, and every transaction opened with ``BEGIN IMMEDIATE``: a writer takes the
  write lock before it reads, so two workers never deadlock upgrading a read lock, they queue.
* **Schema.** Versioned with Alembic (``catdog/feedback/migrations``), applied by
  :meth:`FeedbackStore.migrate` on first use and by ``catdog feedback migrate``, under a lock
  (SQLite's write lock; a PostgreSQL advisory lock), so workers starting together migrate once.
* **One row per corrected item** (see :mod:`catdog.feedback.models`): :meth:`FeedbackStore.record`
  is an upsert on (sha256, model, version); the latest post wins, photo included: a post
  without the photo withdraws a photo shared before.
* **Retention.** Entries not changed for ``CATDOG_FEEDBACK_RETENTION_DAYS`` are deleted, with their
  photos: when a store opens, at most hourly while it records, and by ``catdog feedback purge``.

Nothing here runs on the prediction path: only the feedback endpoints and commands open a store.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, create_engine, delete, event, func, select, text, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, load_only

from catdog.config import Settings
from catdog.feedback.errors import FeedbackError, FeedbackNotFound, FeedbackUnavailable
from catdog.feedback.models import FEEDBACK, Feedback

log = logging.getLogger("catdog.feedback")

#: File suffix of each photo format the API accepts (the format is read from the bytes).
SUFFIXES = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "gif": ".gif", "bmp": ".bmp"}
#: Seconds between retention purges while a store records (one worker's share).
PURGE_EVERY = 3600.0
#: Connections one worker keeps to a shared database, and how many more it may open under a burst.
POOL_SIZE, POOL_OVERFLOW = 2, 4
#: PostgreSQL advisory lock key taken while migrating ("catdogfb" in ASCII).
_PG_MIGRATION_LOCK = 0x63617464_6F676662 & 0x7FFFFFFFFFFFFFFF
CSV_COLUMNS = ("id", "created_at", "updated_at", "sha256", "model", "version", "answer", "correct",
               "corrected", "probabilities", "photo")


@dataclass(frozen=True)
class Item:
    """One correction as a person sent it (validated by the caller)."""

    sha256: str
    answer: str
    correct: str
    model: str = ""
    version: str = ""
    probabilities: dict[str, float] | None = None
    #: The shared photo's bytes and format ("jpeg", ...), or None when it was not shared.
    photo: bytes | None = None
    photo_format: str | None = None


@dataclass(frozen=True)
class Recorded:
    id: int
    created: bool


@dataclass(frozen=True)
class ExportResult:
    entries: int
    photos: int
    csv: Path


def utcnow() -> datetime:
    """Now in UTC, naive (how the table stores times on every database)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL feedback goes to: ``feedback_url``, else the SQLite file ``feedback_path``."""
    if settings.feedback_url:
        return settings.feedback_url
    return f"sqlite:///{Path(settings.feedback_path).expanduser().resolve()}"


def describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an invalid URL)"


def _sqlite_engine(url: str) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would defer BEGIN to the first write; catdog emits it
        # (below), so take that over. busy_timeout first: switching to WAL needs a lock too.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable at each checkpoint; safe in WAL
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_engine(url: str) -> Engine:
    try:
        dialect = make_url(url).get_backend_name()
    except ArgumentError:
        raise FeedbackError(f"CATDOG_FEEDBACK_URL={url[:80]!r} is not a database URL; give one like "
                            "postgresql+psycopg://user:password@host/catdog, or leave it unset for SQLite.") from None
    try:
        if dialect == "sqlite":
            return _sqlite_engine(url)
        # Feedback is a trickle next to predictions: a few connections per worker are plenty, and a
        # shared database (Cloud SQL) counts every instance's workers against its connection limit.
        return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    except ImportError as exc:
        raise FeedbackError(f"The feedback database {describe(url)} needs a driver that is not installed "
                            f"({exc.name}); for PostgreSQL: pip install 'psycopg[binary]'.") from None


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _unless_down(method: _Method) -> _Method:
    """Store methods raise :class:`FeedbackUnavailable` (503, Retry-After) when the database does not
    answer, rather than SQLAlchemy's OperationalError (a 500): an outage is not a bug."""
    @functools.wraps(method)
    def wrapper(self: FeedbackStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OperationalError as exc:
            raise self._unavailable(exc) from None

    return cast(_Method, wrapper)


class FeedbackStore:
    """People's corrections in one database (and, optionally, their photos in one folder)."""

    def __init__(self, engine: Engine, *, photos: Path | None = None, retention_days: int = 0):
        self.engine = engine
        self.photos = Path(photos) if photos is not None else None
        self.retention_days = retention_days
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True, purge: bool = True) -> FeedbackStore:
        """The store ``settings`` name, its schema brought up to date, expired entries purged."""
        url = database_url(settings)
        store = cls(make_engine(url), photos=settings.feedback_photos,
                    retention_days=settings.feedback_retention_days)
        try:
            if migrate:
                store.migrate()
            if purge:
                store.purge()
        except OperationalError as exc:
            store.close()
            raise store._unavailable(exc) from None
        return store

    def _unavailable(self, exc: OperationalError) -> FeedbackUnavailable:
        """The error for a database that does not answer: what it said goes to the log, not to
        the client (it may name hosts and users)."""
        log.warning("feedback database %s cannot be used: %s", self.url, str(exc.orig or exc).strip()[:300])
        return FeedbackUnavailable("The feedback database cannot be used right now (it does not answer)")

    def close(self) -> None:
        self.engine.dispose()

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # -- schema ------------------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> None:
        """Apply the shipped Alembic migrations up to ``revision``, once even if many processes ask."""
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-step INFO lines: ours below instead
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(resources.files("catdog.feedback") / "migrations"))
        with self.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, the database's write lock
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            config.attributes["connection"] = conn
            before = _current_revision(conn)
            command.upgrade(config, revision)
            after = _current_revision(conn)
        if after != before:
            log.info("feedback database %s: schema migrated from %s to %s", self.url, before or "nothing", after)

    @_unless_down
    def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        with self.engine.connect() as conn:
            return _current_revision(conn)

    # -- writing -----------------------------------------------------------------------------------

    @_unless_down
    def record(self, item: Item) -> Recorded:
        """Store a correction, or update the one already stored for the same item."""
        now = utcnow()
        folder = self.photos
        in_db = folder is None
        values: dict[str, Any] = {
            "answer": item.answer, "correct": item.correct, "probabilities": item.probabilities,
            "photo_format": item.photo_format if item.photo is not None else None,
            "photo_size": len(item.photo) if item.photo is not None else None,
            "photo": item.photo if in_db else None,
            "updated_at": now,
        }
        key = {"sha256": item.sha256, "model": item.model, "version": item.version}
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    entry_id, created = self._upsert(conn, key, values, now)
                    if folder is not None:  # before the commit: a failure undoes the row
                        self._keep_photo_file(folder, entry_id, item)
                break
            except IntegrityError:  # the generic path lost a race with another writer: once more
                if attempt == 2:
                    raise
        self._purge_now_and_then()
        return Recorded(entry_id, created)

    def _upsert(self, conn: Connection, key: dict[str, str], values: dict[str, Any],
                now: datetime) -> tuple[int, bool]:
        table = FEEDBACK
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
            upsert = insert(table).values(**key, **values, created_at=now).on_conflict_do_update(
                index_elements=["sha256", "model", "version"], set_=values,
            ).returning(table.c.id, table.c.created_at)
            row = conn.execute(upsert).one()
            return int(row.id), row.created_at == now
        # Any other database: look, then update or insert (a lost race raises IntegrityError: retried).
        found = conn.execute(select(table.c.id).where(*(table.c[k] == v for k, v in key.items()))).first()
        if found is not None:
            conn.execute(update(table).where(table.c.id == found.id).values(**values))
            return int(found.id), False
        result = conn.execute(table.insert().values(**key, **values, created_at=now))
        return int(result.inserted_primary_key[0]), True  # type: ignore[index]

    @staticmethod
    def _photo_path(folder: Path, entry_id: int, photo_format: str) -> Path:
        return folder / f"{entry_id}{SUFFIXES.get(photo_format, '.img')}"

    def _keep_photo_file(self, folder: Path, entry_id: int, item: Item) -> None:
        self._remove_photo_files(entry_id)
        if item.photo is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        path = self._photo_path(folder, entry_id, item.photo_format or "")
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        partial.write_bytes(item.photo)
        os.replace(partial, path)

    def _remove_photo_files(self, entry_id: int) -> None:
        if self.photos is None or not self.photos.is_dir():
            return
        for suffix in {*SUFFIXES.values(), ".img"}:
            (self.photos / f"{entry_id}{suffix}").unlink(missing_ok=True)

    @_unless_down
    def delete(self, entry_id: int) -> None:
        """Delete one entry and its photo; :class:`FeedbackNotFound` if there is none."""
        with self.engine.begin() as conn:
            table = FEEDBACK
            gone = conn.execute(delete(table).where(table.c.id == entry_id).returning(table.c.id)).first()
        if gone is None:
            raise FeedbackNotFound(entry_id)
        self._remove_photo_files(entry_id)

    @_unless_down
    def purge(self, now: datetime | None = None) -> int:
        """Delete entries unchanged for longer than the retention period; returns how many."""
        self._last_purge = time.monotonic()
        if self.retention_days <= 0:
            return 0
        cutoff = (now or utcnow()) - timedelta(days=self.retention_days)
        table = FEEDBACK
        with self.engine.begin() as conn:
            ids = [row.id for row in conn.execute(
                delete(table).where(table.c.updated_at < cutoff).returning(table.c.id))]
        for entry_id in ids:
            self._remove_photo_files(entry_id)
        if ids:
            log.info("feedback retention: deleted %d entries unchanged for %d days", len(ids), self.retention_days)
        return len(ids)

    def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_EVERY or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self.purge()
        except Exception:  # a failed purge must not fail the post that triggered it
            log.exception("feedback retention purge failed; trying again later")
        finally:
            self._purge_lock.release()

    # -- reading -----------------------------------------------------------------------------------

    @_unless_down
    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(FEEDBACK)).scalar_one())

    @_unless_down
    def summary(self) -> dict[str, Any]:
        """Counts by model version, answer and correction (and how many entries have a photo)."""
        table = FEEDBACK
        statement = (
            select(table.c.model, table.c.version, table.c.answer, table.c.correct,
                   func.count().label("n"), func.count(table.c.photo_format).label("photos"))
            .group_by(table.c.model, table.c.version, table.c.answer, table.c.correct)
            .order_by(table.c.model, table.c.version, table.c.answer, table.c.correct)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(statement).all()
        versions: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            group = versions.setdefault((row.model, row.version), {
                "model": row.model, "version": row.version, "total": 0, "corrected": 0, "photos": 0, "counts": []})
            group["total"] += row.n
            group["corrected"] += row.n if row.answer != row.correct else 0
            group["photos"] += row.photos
            group["counts"].append({"answer": row.answer, "correct": row.correct, "count": row.n})
        groups = list(versions.values())
        return {
            "total": sum(g["total"] for g in groups),
            "corrected": sum(g["corrected"] for g in groups),
            "photos": sum(g["photos"] for g in groups),
            "by_version": groups,
        }

    def entries(self) -> list[Feedback]:
        """Every entry, oldest first, without the photos' bytes."""
        columns = [getattr(Feedback, c) for c in ("id", "created_at", "updated_at", "sha256", "model", "version",
                                                   "answer", "correct", "probabilities", "photo_format",
                                                   "photo_size")]
        with Session(self.engine) as session:
            return list(session.scalars(select(Feedback).options(load_only(*columns)).order_by(Feedback.id)))

    def photo(self, entry: Feedback) -> bytes | None:
        """The shared photo of ``entry``, byte for byte, or None if it was not shared."""
        if entry.photo_format is None:
            return None
        if self.photos is not None:
            path = self._photo_path(self.photos, entry.id, entry.photo_format)
            return path.read_bytes() if path.is_file() else None
        with self.engine.connect() as conn:
            table = FEEDBACK
            return conn.execute(select(table.c.photo).where(table.c.id == entry.id)).scalar_one_or_none()

    @_unless_down
    def export(self, out: Path, labels: Sequence[str] = ()) -> ExportResult:
        """``out/<label>/`` with every shared photo under the label the person chose, and
        ``out/feedback.csv`` with every entry (its ``photo`` column: the file's path in ``out``).

        A photo corrected under several model versions is written once, under its latest
        correction. ``labels`` get a folder even when empty (``catdog evaluate`` wants them).
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for label in labels:
            (out / label).mkdir(exist_ok=True)
        entries = self.entries()
        latest: dict[str, Feedback] = {}
        for entry in sorted(entries, key=lambda e: (e.updated_at, e.id)):
            if entry.photo_format is not None:
                latest[entry.sha256] = entry
        written: dict[int, str] = {}
        for sha256, entry in latest.items():
            data = self.photo(entry)
            if data is None:
                continue
            relative = f"{_safe_label(entry.correct)}/{sha256[:16]}{SUFFIXES.get(entry.photo_format or '', '.img')}"
            (out / relative).parent.mkdir(exist_ok=True)
            (out / relative).write_bytes(data)
            written[entry.id] = relative
        photo_of = {e.sha256: written[e.id] for e in latest.values() if e.id in written}
        path = out / "feedback.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for e in entries:
                writer.writerow([
                    e.id, e.created_at.isoformat(), e.updated_at.isoformat(), e.sha256, e.model, e.version,
                    e.answer, e.correct, "yes" if e.corrected else "no",
                    json.dumps(e.probabilities, sort_keys=True) if e.probabilities is not None else "",
                    photo_of.get(e.sha256, "") if e.photo_format is not None else "",
                ])
        return ExportResult(entries=len(entries), photos=len(written), csv=path)


def _current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _safe_label(label: str) -> str:
    """A label as a folder name (labels come from the model's recipe; this only guards the path)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in label).strip(".")
    return cleaned or "_"


__all__ = ["ExportResult", "FeedbackError", "FeedbackNotFound", "FeedbackStore", "Item", "Recorded",
           "database_url", "make_engine", "utcnow"]
