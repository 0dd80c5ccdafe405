"""Recruitment links and keyed platform ids (review.accounts.links): genuine links read back,
forged, tampered, expired and foreign ones are refused with one plain line, the secret is made
once with owner-only permissions, and a platform id is never stored as itself."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest

from review.accounts.links import (
    LinkRefused,
    lab_secret,
    platform_id_hash,
    read_link,
    sign_link,
)
from review.config import load_settings
from review.errors import ReviewError

SECRET = b"k" * 48
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_genuine_link_reads_back_its_claims() -> None:
    token = sign_link(SECRET, 3, 7, 2, timedelta(days=1), now=NOW)
    claims = read_link(SECRET, token, now=NOW + timedelta(hours=23))
    assert (claims.study_id, claims.pool_id, claims.link_version) == (3, 7, 2)
    assert claims.expires == NOW + timedelta(days=1)


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]


@pytest.mark.parametrize("bad", [
    "", "nonsense", "a.b.c", "x" * 600,
    _flip(sign_link(SECRET, 3, 7, 2, now=NOW), 2),  # the claims changed, the signature kept
    _flip(sign_link(SECRET, 3, 7, 2, now=NOW), -3),  # the signature changed
    sign_link(b"z" * 48, 3, 7, 2, now=NOW),  # another lab's link
    sign_link(SECRET, 3, 7, 2, now=NOW) + "=",
])
def test_forged_and_tampered_links_are_refused_plainly(bad: str) -> None:
    with pytest.raises(LinkRefused) as refused:
        read_link(SECRET, bad, now=NOW)
    assert "\n" not in str(refused.value) and str(refused.value).startswith("This study link is not valid")


def test_an_expired_link_says_so() -> None:
    token = sign_link(SECRET, 3, 7, 2, timedelta(hours=1), now=NOW)
    with pytest.raises(LinkRefused, match="expired"):
        read_link(SECRET, token, now=NOW + timedelta(hours=1))


def test_the_secret_is_made_once_owner_only_and_env_wins(tmp_path) -> None:
    settings = load_settings({"REVIEW_DATA_DIR": str(tmp_path)})
    first = lab_secret(settings, env={})
    assert lab_secret(settings, env={}) == first and len(first) >= 32
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    assert lab_secret(settings, env={"REVIEW_SECRET_KEY": "s" * 40}) == b"s" * 40
    with pytest.raises(ReviewError, match="at least 32"):
        lab_secret(settings, env={"REVIEW_SECRET_KEY": "short"})
    (tmp_path / "secret.key").write_bytes(b"")
    with pytest.raises(ReviewError, match="no usable key"):
        lab_secret(settings, env={})


def test_platform_ids_are_keyed_hashes_per_platform() -> None:
    h = platform_id_hash(SECRET, "prolific", "5f3a")
    assert h == platform_id_hash(SECRET, "prolific", "5f3a") and "5f3a" not in h and len(h) == 64
    assert h != platform_id_hash(SECRET, "mturk", "5f3a")
    assert h != platform_id_hash(b"z" * 48, "prolific", "5f3a")
