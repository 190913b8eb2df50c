"""catdog feedback summary | export | delete | migrate | purge, on the database the server writes to."""

from __future__ import annotations

import csv
import hashlib

import pytest

from catdog.cli import main
from catdog.feedback.store import FeedbackStore, Item


@pytest.fixture
def filled(feedback_settings, cat_bytes, dog_bytes, monkeypatch):
    """A feedback database with two shared photos and one hash, and the --db argument naming it."""
    store = FeedbackStore.open(feedback_settings)
    for photo, answer, correct in ((cat_bytes, "dog", "cat"), (dog_bytes, "dog", "other")):
        store.record(Item(sha256=hashlib.sha256(photo).hexdigest(), answer=answer, correct=correct,
                          model="catdog-lite2", version="2.2.0", photo=photo, photo_format="jpeg"))
    store.record(Item(sha256="f" * 64, answer="cat", correct="dog", model="catdog-lite2", version="2.2.0"))
    store.close()
    for name in ("CATDOG_FEEDBACK_URL", "CATDOG_FEEDBACK_PATH"):
        monkeypatch.delenv(name, raising=False)
    return feedback_settings.feedback_url or str(feedback_settings.feedback_path)


def test_summary(filled, capsys):
    assert main(["feedback", "--db", filled, "summary"]) == 0
    out = capsys.readouterr().out
    assert "3 entries, 3 corrected" in out and "2 with a shared photo" in out
    assert "catdog-lite2 2.2.0" in out


def test_export_then_delete(filled, tmp_path, cat_bytes, dog_bytes, capsys):
    out = tmp_path / "export"
    assert main(["feedback", "--db", filled, "export", "--out", str(out)]) == 0
    assert "exported 3 entries (2 shared photos)" in capsys.readouterr().out
    assert [p.read_bytes() for p in (out / "cat").iterdir()] == [cat_bytes]
    assert [p.read_bytes() for p in (out / "other").iterdir()] == [dog_bytes]
    assert (out / "dog").is_dir()  # every label of the model gets a folder
    rows = list(csv.DictReader((out / "feedback.csv").open()))
    assert len(rows) == 3 and rows[2]["photo"] == "" and rows[0]["corrected"] == "yes"
    assert main(["feedback", "--db", filled, "delete", rows[0]["id"]]) == 0
    assert main(["feedback", "--db", filled, "delete", rows[0]["id"]]) == 2  # gone: an error, exit 2
    assert "no feedback entry" in capsys.readouterr().err


def test_migrate_and_purge(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CATDOG_FEEDBACK_PATH", str(tmp_path / "new.sqlite3"))
    assert main(["feedback", "migrate"]) == 0
    assert "schema revision 0001" in capsys.readouterr().out
    assert main(["feedback", "purge"]) == 0
    assert "deleted 0 entries" in capsys.readouterr().out


def test_help_names_every_action(capsys):
    with pytest.raises(SystemExit):
        main(["feedback", "--help"])
    out = capsys.readouterr().out
    for action in ("summary", "export", "delete", "migrate", "purge", "catdog evaluate"):
        assert action in out
