"""Settings from environment variables, validated once, with errors that name the variable.

REVIEW_DATA_DIR      folder for the database file, the image store and built models (default ./data)
REVIEW_DATABASE_URL  any SQLAlchemy URL (default: SQLite file data/review.db)
REVIEW_SD15_PATH     local Stable Diffusion 1.5 weights; unset means SD1.5 is unavailable
REVIEW_TRUSTED_PROXIES  reverse proxies whose X-Forwarded-For is believed (addresses or networks,
                     comma-separated; default none: login throttling counts by the connection's
                     own address, see review/accounts/addresses.py)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from review.accounts.addresses import Network, parse_networks
from review.errors import ReviewError

SETTING_NAMES = ("REVIEW_DATA_DIR", "REVIEW_DATABASE_URL", "REVIEW_SD15_PATH",
                 "REVIEW_TRUSTED_PROXIES")  # all, in this order


class ConfigError(ReviewError):
    """A setting is invalid; the message names the environment variable and the fix."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: URL
    sd15_path: Path | None
    trusted_proxies: tuple[Network, ...] = ()

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.get_backend_name() == "sqlite"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read and validate the settings; create the data folder if it is missing."""
    env = dict(os.environ) if env is None else env
    data_dir = Path(env.get("REVIEW_DATA_DIR") or "./data").expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"REVIEW_DATA_DIR={data_dir} exists but is not a folder; point it at a folder.")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"REVIEW_DATA_DIR={data_dir} cannot be created: {exc.strerror}.") from exc
    if not os.access(data_dir, os.W_OK):
        raise ConfigError(f"REVIEW_DATA_DIR={data_dir} is not writable by this user.")
    data_dir = data_dir.resolve()

    raw_url = env.get("REVIEW_DATABASE_URL") or f"sqlite:///{data_dir / 'review.db'}"
    try:
        url = make_url(raw_url)
    except ArgumentError as exc:
        raise ConfigError(
            f"REVIEW_DATABASE_URL={raw_url!r} is not a database URL; expected e.g. "
            "sqlite:///data/review.db or postgresql+psycopg://user:pass@host/dbname."
        ) from exc
    backend = url.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise ConfigError(
            f"REVIEW_DATABASE_URL uses {backend!r}; supported: sqlite, postgresql."
        )
    if url.drivername == "postgresql":  # no driver named: use the pinned psycopg 3
        url = url.set(drivername="postgresql+psycopg")

    raw_sd = env.get("REVIEW_SD15_PATH") or ""
    sd15_path = Path(raw_sd).expanduser() if raw_sd.strip() else None

    raw_proxies = env.get("REVIEW_TRUSTED_PROXIES") or ""
    try:
        proxies = parse_networks(raw_proxies)
    except ValueError as exc:
        raise ConfigError(
            f"REVIEW_TRUSTED_PROXIES={raw_proxies!r}: {exc}. List the reverse proxies in front of "
            "the app, comma-separated, e.g. 127.0.0.1 or 10.0.0.5,10.0.1.0/24."
        ) from None
    return Settings(data_dir=data_dir, database_url=url, sd15_path=sd15_path, trusted_proxies=proxies)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that `load_settings` turns back into `settings` (for a worker
    process that must open the same lab)."""
    values = (str(settings.data_dir), settings.database_url.render_as_string(hide_password=False),
              "" if settings.sd15_path is None else str(settings.sd15_path),
              ",".join(str(n) for n in settings.trusted_proxies))
    return dict(zip(SETTING_NAMES, values, strict=True))
