"""Open the configured database, migrated to the current schema."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, make_session_factory
from db.migrate import current_revision, head_revision, upgrade
from review.config import Settings, load_settings
from review.errors import ReviewError
from review.media.store import ImageStore


class SchemaOutOfDate(ReviewError):
    """The database is older than this code; `python -m review init` upgrades it in place."""


@dataclass
class Lab:
    """Everything a command or page needs: settings, engine, sessions, image store."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ImageStore


def open_lab(settings: Settings | None = None, *, migrate: bool = False) -> Lab:
    """Connect; with `migrate` upgrade the schema, otherwise refuse an outdated schema."""
    settings = settings or load_settings()
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    else:
        current = current_revision(engine)
        if current != head_revision():
            raise SchemaOutOfDate(
                f"The database at {settings.database_url.render_as_string()} is at schema "
                f"revision {current or 'none'}, this code needs {head_revision()}. "
                "Run `python -m review init` (or `make run`) to upgrade it in place."
            )
    settings.images_dir.mkdir(parents=True, exist_ok=True)
    return Lab(settings, engine, make_session_factory(engine), ImageStore(settings.images_dir))
