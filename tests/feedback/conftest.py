"""Feedback fixtures: a real SQLite file per test, and a real PostgreSQL server for the session.

The PostgreSQL server is Debian's (``apt-get install postgresql``; scripts/test.sh installs it),
started here in a temporary folder on a free loopback port and stopped at the end. PostgreSQL
refuses to run as root, so as root it runs as the ``postgres`` user the package creates. Each
test gets a fresh database in it. Where PostgreSQL is not installed, its tests are skipped and
say why.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from catdog.config import Settings
from catdog.servers import free_port

_DATABASES = itertools.count(1)


def postgres_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


@dataclass
class Postgres:
    """A running PostgreSQL server owned by the test session."""

    port: int
    user: str = "catdog"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"feedback_{os.getpid()}_{next(_DATABASES)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; scripts/test.sh does it)")
    if os.geteuid() == 0:
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as "
                        "(Debian's postgresql package creates it)")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser, so PostgreSQL cannot be started as 'postgres'")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed")
    home = Path(tempfile.mkdtemp(prefix="catdog-pg-"))
    data = home / "data"
    if os.geteuid() == 0:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    port = free_port()
    log = home / "server.log"
    subprocess.run(_as_server_user([initdb, "-D", str(data), "-U", "catdog", "--auth=trust", "-E", "UTF8",
                                    "--no-sync"]), check=True, capture_output=True, timeout=120)
    options = (f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
    started = subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w",
                                              "-t", "60", "start"]), capture_output=True, text=True, timeout=90)
    if started.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {started.stdout}{started.stderr}")
    try:
        yield Postgres(port)
    finally:
        subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def feedback_settings(request, tmp_path) -> Settings:
    """Settings whose feedback database is a fresh SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return Settings(feedback_path=tmp_path / "feedback.sqlite3")
    server: Postgres = request.getfixturevalue("postgres")
    return Settings(feedback_url=server.create_database())


@pytest.fixture
def sqlite_settings(tmp_path) -> Settings:
    return Settings(feedback_path=tmp_path / "feedback.sqlite3")


# The API's app fixtures (an app per test around the session's loaded model), shared.
from tests.api.conftest import bad_inputs, make_app  # noqa: E402,F401  (pytest fixtures)
