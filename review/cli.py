"""Command line interface: `python -m review --help` is the reference for every command.

Settings come from the environment (REVIEW_DATA_DIR, REVIEW_DATABASE_URL, REVIEW_SD15_PATH);
errors print one readable line and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import functools
import getpass
import sys
from collections.abc import Callable
from typing import Any

import click

from review.config import ConfigError


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain errors into a one-line message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from review.database import SchemaOutOfDate
        from review.guidelines import GuidelineError
        from review.images import ImageRejected
        from review.study import StudyError
        from review.users import UserError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, SchemaOutOfDate, UserError, StudyError, GuidelineError,
                ImageRejected) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Fidelity review lab: generate restorations of blurred photos, have people rate their
    fidelity, and measure how far restoration can go.

    Settings: REVIEW_DATA_DIR (default ./data), REVIEW_DATABASE_URL (default SQLite file in the
    data folder), REVIEW_SD15_PATH (local SD1.5 weights; unset = SD1.5 unavailable).
    """


@cli.command()
@_friendly
def init() -> None:
    """Create or upgrade the database schema in place (keeps all data) and load the guidelines."""
    from review.database import open_lab
    from review.guidelines import sync_all

    lab = open_lab(migrate=True)
    with lab.sessions() as s, s.begin():
        versions = sync_all(s)
    click.echo(
        f"Database ready at {lab.settings.database_url.render_as_string()} "
        f"({len(versions)} guideline versions loaded)."
    )


@cli.command()
@click.option("--password", default="demo-pass", show_default=True,
              help="Password for the demo users (demo only; never use in production).")
@_friendly
def demo(password: str) -> None:
    """Seed the demo study from scikit-image's sample photos (idempotent: safe to rerun)."""
    from review.database import open_lab
    from review.demo import seed_demo

    lab = open_lab(migrate=True)
    summary = seed_demo(lab, password=password, echo=click.echo)
    click.echo(summary)


@cli.group()
def users() -> None:
    """Manage accounts: roles are admin, reviewer and qa."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "reviewer", "qa"]), required=True)
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--password", default=None,
              help="Password (at least 8 characters); prompted for when omitted.")
@_friendly
def users_add(username: str, role: str, display_name: str, password: str | None) -> None:
    """Add a user."""
    from review.database import open_lab
    from review.users import add_user

    if password is None:
        password = getpass.getpass("Password: ")
    lab = open_lab()
    with lab.sessions() as s, s.begin():
        user = add_user(s, username, password, role, display_name)
        click.echo(f"Added {user.username} ({user.role}).")


@users.command("list")
@_friendly
def users_list() -> None:
    """List users with their role and status."""
    from review.database import open_lab
    from review.users import list_users

    lab = open_lab()
    with lab.sessions() as s:
        rows = list_users(s)
        click.echo(f"{'username':<20} {'role':<9} {'active':<7} name")
        for u in rows:
            click.echo(f"{u.username:<20} {u.role:<9} {'yes' if u.active else 'no':<7} {u.display_name}")


@users.command("deactivate")
@click.argument("username")
@_friendly
def users_deactivate(username: str) -> None:
    """Deactivate a user: they can no longer log in; their ratings stay."""
    from review.database import open_lab
    from review.users import set_active

    lab = open_lab()
    with lab.sessions() as s, s.begin():
        set_active(s, username, False)
    click.echo(f"Deactivated {username}.")


@users.command("activate")
@click.argument("username")
@_friendly
def users_activate(username: str) -> None:
    """Re-activate a deactivated user."""
    from review.database import open_lab
    from review.users import set_active

    lab = open_lab()
    with lab.sessions() as s, s.begin():
        set_active(s, username, True)
    click.echo(f"Activated {username}.")


@users.command("reset-password")
@click.argument("username")
@click.option("--password", default=None, help="New password; prompted for when omitted.")
@_friendly
def users_reset_password(username: str, password: str | None) -> None:
    """Set a new password for a user."""
    from review.database import open_lab
    from review.users import reset_password

    if password is None:
        password = getpass.getpass("New password: ")
    lab = open_lab()
    with lab.sessions() as s, s.begin():
        reset_password(s, username, password)
    click.echo(f"Password reset for {username}.")


def main() -> None:
    cli(prog_name="python -m review")
