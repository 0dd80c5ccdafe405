"""Schema migrations with Alembic, driven from code so `make run` upgrades in place."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | URL) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


class MigrationRefused(RuntimeError):
    """A migration stopped because rows in the database break a rule it adds (or a constraint it
    creates); the message names them. The whole upgrade runs in one transaction, so nothing was
    changed: the database stays at the revision it had."""


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, keeping all data (a no-op when already there); all of it in
    one transaction, so a migration that stops (`MigrationRefused`) leaves the database as it was."""
    cfg = alembic_config(engine.url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except IntegrityError as exc:  # a constraint or index a migration adds, over rows that break it
        detail = " ".join(str(exc.orig).split())
        raise MigrationRefused(f"The schema upgrade stopped: existing rows break a rule it adds ({detail}). "
                               "Fix or remove those rows, then upgrade again; nothing was changed.") from exc


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head
