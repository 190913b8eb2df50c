"""The production server (gunicorn, several workers) writing feedback: nothing lost under concurrent
posts, on a real SQLite file and a real PostgreSQL database; a restart keeps everything."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from catdog import servers
from catdog.config import Settings
from catdog.feedback.store import FeedbackStore
from tests.api.test_gunicorn_server import GUNICORN, server_env

pytestmark = pytest.mark.slow

POSTS = 1000
CLIENTS = 8


@contextmanager
def gunicorn(directory: Path, workers: int, **env: str):
    port = servers.free_port()
    environment = server_env(port, CATDOG_WORKERS=str(workers), CATDOG_WORKER_THREADS="2", CATDOG_LOG_LEVEL="WARNING",
                             **env)
    with servers.running(GUNICORN, f"http://127.0.0.1:{port}/readyz", env=environment, cwd=directory,
                         log=directory / f"gunicorn-{port}.log", timeout=120):
        yield f"http://127.0.0.1:{port}"


def post_many(url: str, posts: int, clients: int) -> list[int]:
    """``posts`` distinct corrections (by hash) from ``clients`` concurrent clients; their statuses."""
    def send(chunk: range) -> list[int]:
        with requests.Session() as session:
            return [session.post(f"{url}/v1/feedback", timeout=60, files={
                "sha256": (None, hashlib.sha256(f"photo {n}".encode()).hexdigest()),
                "answer": (None, "dog"), "correct": (None, ("cat", "other", "dog")[n % 3]),
            }).status_code for n in chunk]

    chunks = [range(i, posts, clients) for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        return [status for statuses in pool.map(send, chunks) for status in statuses]


def count(settings: Settings) -> int:
    store = FeedbackStore.open(settings, migrate=False, purge=False)
    try:
        return store.count()
    finally:
        store.close()


def test_sqlite_1000_posts_from_8_clients_to_3_workers_then_a_restart(tmp_path, cat_bytes, dog_bytes):
    db = tmp_path / "feedback.sqlite3"
    env = {"CATDOG_FEEDBACK_PATH": str(db)}
    with gunicorn(tmp_path, 3, **env) as url:
        statuses = post_many(url, POSTS, CLIENTS)
        assert statuses.count(201) == POSTS, {s: statuses.count(s) for s in set(statuses)}
        for photo, correct in ((cat_bytes, "cat"), (dog_bytes, "other")):
            shared = requests.post(f"{url}/v1/feedback", data={"answer": "dog", "correct": correct},
                                   files={"image": ("p.jpg", photo)}, timeout=60)
            assert shared.status_code == 201, shared.text
        before = requests.get(f"{url}/v1/feedback/summary", timeout=30).json()
        metrics = requests.get(f"{url}/metrics", timeout=30).text
    assert before["total"] == POSTS + 2 and before["photos"] == 2
    assert count(Settings(feedback_path=db)) == POSTS + 2
    # every worker's counts add up in /metrics (multiprocess mode)
    assert 'catdog_feedback_total{answer="dog",correct="cat",corrected="true"} 335.0' in metrics

    with gunicorn(tmp_path, 1, **env) as url:  # a restart keeps everything, photos byte for byte
        assert requests.get(f"{url}/v1/feedback/summary", timeout=30).json() == before
    store = FeedbackStore.open(Settings(feedback_path=db))
    store.export(tmp_path / "out")
    store.close()
    assert [p.read_bytes() for p in (tmp_path / "out" / "cat").iterdir()] == [cat_bytes]
    assert [p.read_bytes() for p in (tmp_path / "out" / "other").iterdir()] == [dog_bytes]


def test_postgresql_1000_posts_from_8_clients_to_2_workers(tmp_path, postgres):
    url_db = postgres.create_database()
    with gunicorn(tmp_path, 2, CATDOG_FEEDBACK_URL=url_db) as url:
        statuses = post_many(url, POSTS, CLIENTS)
        assert statuses.count(201) == POSTS, {s: statuses.count(s) for s in set(statuses)}
        again = post_many(url, 16, CLIENTS)  # the same items again: updates, not new rows
        assert set(again) == {200}
    assert count(Settings(feedback_url=url_db)) == POSTS
