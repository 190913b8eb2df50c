"""The feedback store against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import csv
import hashlib
import threading
from datetime import timedelta

import pytest

from catdog.feedback.errors import FeedbackError, FeedbackNotFound, FeedbackUnavailable
from catdog.feedback.store import FeedbackStore, Item, utcnow


def item(n: int, **fields) -> Item:
    return Item(**{"sha256": hashlib.sha256(str(n).encode()).hexdigest(), "answer": "dog", "correct": "cat",
                   "model": "catdog-lite2", "version": "2.2.0", **fields})


@pytest.fixture
def store(feedback_settings):
    opened = FeedbackStore.open(feedback_settings)
    yield opened
    opened.close()


def test_schema_is_migrated_on_first_use_and_again_is_a_no_op(feedback_settings):
    first = FeedbackStore.open(feedback_settings)
    assert first.revision() == "0001"
    first.migrate()  # already at head: nothing happens, nothing breaks
    first.close()
    assert FeedbackStore.open(feedback_settings).revision() == "0001"


def test_workers_starting_together_migrate_once(feedback_settings):
    errors: list[BaseException] = []

    def open_one():
        try:
            FeedbackStore.open(feedback_settings).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors


def test_the_same_photo_and_model_version_updates_one_entry(store):
    first = store.record(item(1, probabilities={"cat": 0.2, "dog": 0.8}))
    again = store.record(item(1, correct="other"))
    other_version = store.record(item(1, version="2.3.0"))
    assert first.created and not again.created and other_version.created
    assert again.id == first.id != other_version.id
    assert store.count() == 2
    entry = next(e for e in store.entries() if e.id == first.id)
    assert (entry.correct, entry.probabilities) == ("other", None)


def test_summary_counts_by_version_answer_and_correction(store):
    store.record(item(1))
    store.record(item(2))
    store.record(item(3, correct="dog"))  # "the answer was right"
    store.record(item(4, version="1.0.0", answer="cat", correct="other", photo=b"x", photo_format="png"))
    summary = store.summary()
    assert (summary["total"], summary["corrected"], summary["photos"]) == (4, 3, 1)
    by_version = {g["version"]: g for g in summary["by_version"]}
    assert by_version["2.2.0"]["counts"] == [{"answer": "dog", "correct": "cat", "count": 2},
                                             {"answer": "dog", "correct": "dog", "count": 1}]
    assert by_version["1.0.0"]["corrected"] == 1 and by_version["1.0.0"]["photos"] == 1


def test_export_writes_every_shared_photo_byte_for_byte(store, tmp_path, cat_bytes, dog_bytes):
    store.record(item(1, sha256=hashlib.sha256(cat_bytes).hexdigest(), answer="dog", correct="cat",
                      photo=cat_bytes, photo_format="jpeg"))
    store.record(item(2, sha256=hashlib.sha256(dog_bytes).hexdigest(), answer="other", correct="dog",
                      photo=dog_bytes, photo_format="jpeg"))
    store.record(item(3))  # not shared
    result = store.export(tmp_path / "out", labels=("cat", "dog", "other"))
    assert (result.entries, result.photos) == (3, 2)
    rows = list(csv.DictReader((tmp_path / "out" / "feedback.csv").open()))
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    photos = {r["correct"]: (tmp_path / "out" / r["photo"]).read_bytes() for r in rows if r["photo"]}
    assert photos == {"cat": cat_bytes, "dog": dog_bytes}
    assert (tmp_path / "out" / "other").is_dir() and not any((tmp_path / "out" / "other").iterdir())


def test_a_post_without_the_photo_withdraws_it(store, tmp_path):
    store.record(item(1, photo=b"\xff\xd8\xffphoto", photo_format="jpeg"))
    store.record(item(1))
    assert store.summary()["photos"] == 0
    assert store.export(tmp_path / "out").photos == 0


def test_a_restart_keeps_everything(feedback_settings, tmp_path):
    store = FeedbackStore.open(feedback_settings)
    store.record(item(1, photo=b"GIF89a-bytes", photo_format="gif"))
    store.record(item(2))
    before = store.summary()
    store.close()
    reopened = FeedbackStore.open(feedback_settings)
    assert reopened.summary() == before
    assert reopened.photo(reopened.entries()[0]) == b"GIF89a-bytes"
    reopened.close()


def test_delete_removes_the_entry_and_its_photo(store):
    kept = store.record(item(1))
    gone = store.record(item(2, photo=b"BMphoto", photo_format="bmp"))
    store.delete(gone.id)
    assert [e.id for e in store.entries()] == [kept.id]
    with pytest.raises(FeedbackNotFound, match=str(gone.id)):
        store.delete(gone.id)


def test_retention_deletes_entries_unchanged_for_longer(feedback_settings):
    store = FeedbackStore.open(feedback_settings.model_copy(update={"feedback_retention_days": 30}))
    store.record(item(1))
    assert store.purge(now=utcnow() + timedelta(days=29)) == 0
    assert store.purge(now=utcnow() + timedelta(days=31)) == 1
    assert store.count() == 0
    store.close()


def test_photos_in_a_folder(sqlite_settings, tmp_path):
    folder = tmp_path / "photos"
    store = FeedbackStore.open(sqlite_settings.model_copy(update={"feedback_photos": folder}))
    shared = store.record(item(1, photo=b"\x89PNG-bytes", photo_format="png"))
    assert (folder / f"{shared.id}.png").read_bytes() == b"\x89PNG-bytes"
    store.export(tmp_path / "out")
    assert (tmp_path / "out" / "cat").is_dir()
    assert [p.read_bytes() for p in (tmp_path / "out" / "cat").iterdir()] == [b"\x89PNG-bytes"]
    store.record(item(1))  # withdrawn
    assert not any(folder.iterdir())
    other = store.record(item(2, photo=b"\x89PNG-2", photo_format="png"))
    store.delete(other.id)
    assert not any(folder.iterdir())
    store.close()


def test_sqlite_file_is_created_on_first_use_in_wal_mode(tmp_path, sqlite_settings):
    path = tmp_path / "deep" / "er" / "feedback.sqlite3"
    store = FeedbackStore.open(sqlite_settings.model_copy(update={"feedback_path": path}))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()
    assert path.is_file()


def test_a_bad_url_is_one_clear_error(sqlite_settings):
    with pytest.raises(FeedbackError, match="not a database URL"):
        FeedbackStore.open(sqlite_settings.model_copy(update={"feedback_url": "not a url"}))
    with pytest.raises(FeedbackError, match="cannot be used"):
        FeedbackStore.open(sqlite_settings.model_copy(
            update={"feedback_url": "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"}))


def test_an_outage_after_opening_is_feedback_unavailable_not_a_bug(sqlite_settings):
    """Every call on a database that stopped answering raises the 503 error (Retry-After), not
    SQLAlchemy's OperationalError, which the API would answer as a 500 bug."""
    from catdog.feedback.store import make_engine

    store = FeedbackStore.open(sqlite_settings)
    store.engine.dispose()
    store.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    for call in (store.summary, store.count, store.revision, lambda: store.delete(1), store.purge):
        with pytest.raises(FeedbackUnavailable) as raised:
            call()
        assert raised.value.status == 503 and raised.value.headers == {"Retry-After": "5"}
