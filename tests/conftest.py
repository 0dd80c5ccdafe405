"""Shared fixtures: a fresh data folder and SQLite database per test, and a throwaway
PostgreSQL 15 cluster (initdb/pg_ctl) for the tests that must also pass on PostgreSQL; the tests
that use it are put in the `postgres` lane here. Shared builders live in tests/support*.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.engine import make_engine
from db.migrate import upgrade
from review.config import SETTING_NAMES, Settings, load_settings
from review.database import Lab, open_lab
from tests.support import throwaway_postgres

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    env = {"REVIEW_DATA_DIR": str(tmp_path / "data")}
    for key in SETTING_NAMES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("REVIEW_DATA_DIR", env["REVIEW_DATA_DIR"])
    return load_settings(env)


@pytest.fixture
def lab(settings: Settings) -> Lab:
    return open_lab(settings, migrate=True)


@pytest.fixture
def simulated_demo(lab: Lab) -> Lab:
    """The lab with the shipped guidelines and the demo's simulated-panel study."""
    from review.demo import seed_simulated_demo
    from review.labeling.guidelines.files import GUIDELINES_DIR, authored_dir, sync_all

    with lab.write() as s:
        sync_all(s, GUIDELINES_DIR, authored_dir(lab.settings.data_dir))
    seed_simulated_demo(lab)
    return lab


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium for the browser lane, or a failure saying how to install it (never a skip)."""
    from tests.support_browser import chromium_path

    try:
        return chromium_path()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database migrated to head: SQLite, and the same test again on PostgreSQL (postgres lane)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    eng = make_engine(url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster on a free loopback port; yield its base URL."""
    with throwaway_postgres() as url:
        yield url


#: What puts a test in a lane without a marker of its own, so the lanes cannot drift: the fixtures
#: it uses, or the module it is in (tests/test_browser*.py, tests/test_sd15*.py).
LANE_OF_FIXTURE = {"pg_server": "postgres", "pg_url": "postgres"}
LANE_OF_MODULE_PREFIX = {"test_browser": "browser", "test_sd15": "sd15"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the lanes its fixtures and module put it in (`make test-fast` skips them)."""
    for item in items:
        for fixture in sorted(set(getattr(item, "fixturenames", ())) & LANE_OF_FIXTURE.keys()):
            item.add_marker(LANE_OF_FIXTURE[fixture])
        for prefix, lane in LANE_OF_MODULE_PREFIX.items():
            if item.path.name.startswith(prefix):
                item.add_marker(lane)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, pg_server: str) -> str:
    """A fresh, empty database on the throwaway cluster for one test."""
    if request.node.get_closest_marker("postgres") is None:  # reached via request.getfixturevalue
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL: mark it @pytest.mark.postgres", pytrace=False)
    import psycopg

    name = f"t{time.time_ns()}"
    with psycopg.connect(f"{pg_server.replace('+psycopg', '')}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{pg_server}/{name}"


# The sd15 lane's fixtures (torch is imported only when one runs).


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """The tiny model's ops are so small that intra-op threads cost more than they save
    (5x slower on 2 busy cores); restored afterwards. The sd15 modules use it for every test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny SD1.5 pipeline as `tiny_sd15`, built once per module."""
    from review.media.restore.sd15_tiny import build_tiny_sd15

    d = tmp_path_factory.mktemp("models")
    build_tiny_sd15(d / "tiny_sd15")
    return d
