"""Shared fixtures: a fresh data folder and SQLite database per test, and a throwaway
PostgreSQL 15 cluster (initdb/pg_ctl) for the tests that must also pass on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from review.config import Settings, load_settings
from review.database import Lab, open_lab

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    env = {"REVIEW_DATA_DIR": str(tmp_path / "data")}
    for key in ("REVIEW_DATA_DIR", "REVIEW_DATABASE_URL", "REVIEW_SD15_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("REVIEW_DATA_DIR", env["REVIEW_DATA_DIR"])
    return load_settings(env)


@pytest.fixture
def lab(settings: Settings) -> Lab:
    return open_lab(settings, migrate=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/lib/postgresql/15/bin/{name}"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError(
        f"PostgreSQL server binary {name!r} not found: install it with "
        "'apt-get install -y postgresql-15' (the PostgreSQL tests need a real server)."
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster on a free loopback port; yield its base URL."""
    # Not under pytest's tmp folder: that is private to root, and initdb refuses to run as root.
    base = Path(tempfile.mkdtemp(prefix="review-pg-"))
    datadir = base / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    port = _free_port()
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(datadir), "-U", "lab", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True,
    )
    subprocess.run(
        [*as_user, _pg_bin("pg_ctl"), "-D", str(datadir), "-l", str(base / "log"), "-w", "-o",
         f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
        check=True, capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://lab@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database on the throwaway cluster for one test."""
    import psycopg

    name = f"t{time.time_ns()}"
    with psycopg.connect(f"{pg_server.replace('+psycopg', '')}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{pg_server}/{name}"
