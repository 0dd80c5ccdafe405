"""Recruitment links and pseudonymous platform ids, both keyed with the lab's secret.

A pool's link carries a token naming the study, the pool and the pool's link version, with an
expiry, signed with HMAC-SHA256: a forged, tampered or expired token is refused, and raising the
pool's link version voids every link given out before. A participant's platform id is stored only
as a keyed hash (HMAC-SHA256 too), so the same id returning finds the same participant while a copy
of the database does not list who took part.

The secret is REVIEW_SECRET_KEY (at least 32 characters; every machine of a team sets the same),
else a random key kept in `secret.key` in the data folder (mode 0600), made on first use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from review.config import Settings
from review.errors import ReviewError

SECRET_ENV = "REVIEW_SECRET_KEY"
SECRET_FILE = "secret.key"
MIN_SECRET = 32
DEFAULT_LIFETIME = timedelta(days=30)
MAX_TOKEN = 512  # a longer token is not one of ours: refused before decoding


class LinkRefused(ReviewError):
    """The link cannot admit anyone; the message is one plain line for the person who opened it."""


@dataclass(frozen=True)
class LinkClaims:
    study_id: int
    pool_id: int
    link_version: int
    expires: datetime


def lab_secret(settings: Settings, env: dict[str, str] | None = None) -> bytes:
    """The lab's signing key: REVIEW_SECRET_KEY, else the data folder's secret.key (made once)."""
    env = dict(os.environ) if env is None else env
    given = env.get(SECRET_ENV, "")
    if given:
        if len(given) < MIN_SECRET:
            raise ReviewError(f"{SECRET_ENV} is {len(given)} characters; use at least {MIN_SECRET} random "
                              "characters (e.g. the output of `python -c \"import secrets; "
                              "print(secrets.token_urlsafe(48))\"`).")
        return given.encode()
    path = Path(settings.data_dir) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
        if len(key) < MIN_SECRET:
            raise ReviewError(f"{path} holds no usable key ({len(key)} bytes); delete it to make a new one "
                              "(links given out before stop working) or set "
                              f"{SECRET_ENV}.") from None
        return key
    with os.fdopen(fd, "wb") as fh:
        key = secrets.token_urlsafe(48).encode()
        fh.write(key)
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(secret: bytes, study_id: int, pool_id: int, link_version: int,
              lifetime: timedelta = DEFAULT_LIFETIME, now: datetime | None = None) -> str:
    """A token for a pool's link, valid for `lifetime`."""
    expires = int(((now or datetime.now(UTC)) + lifetime).timestamp())
    body = _b64(json.dumps([study_id, pool_id, link_version, expires], separators=(",", ":")).encode())
    mac = hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def read_link(secret: bytes, token: str, now: datetime | None = None) -> LinkClaims:
    """The claims of a genuine, unexpired token; LinkRefused otherwise (one plain line)."""
    if not token or len(token) > MAX_TOKEN or token.count(".") != 1:
        raise LinkRefused("This study link is not valid. Open the link exactly as the study page gave it.")
    body, mac = token.split(".")
    expected = hmac.new(secret, body.encode("ascii", "replace"), hashlib.sha256).digest()
    try:
        genuine = hmac.compare_digest(_unb64(mac), expected) and _b64(_unb64(mac)) == mac  # canonical
        claims = json.loads(_unb64(body)) if genuine else None
    except (ValueError, UnicodeDecodeError):
        genuine, claims = False, None
    if not genuine or not (isinstance(claims, list) and len(claims) == 4
                           and all(isinstance(v, int) and not isinstance(v, bool) for v in claims)):
        raise LinkRefused("This study link is not valid. Open the link exactly as the study page gave it.")
    study_id, pool_id, version, expires = claims
    expires_at = datetime.fromtimestamp(expires, UTC)
    if (now or datetime.now(UTC)) >= expires_at:
        raise LinkRefused("This study link has expired. Ask the study's organisers for a current one.")
    return LinkClaims(study_id, pool_id, version, expires_at)


def platform_id_hash(secret: bytes, platform: str, platform_id: str) -> str:
    """The keyed hash a participant's platform id is stored as (per platform: the same worker id
    on two platforms is two people as far as the lab can tell)."""
    return hmac.new(secret, f"{platform}\x00{platform_id}".encode(), hashlib.sha256).hexdigest()
