"""Accounts: argon2 hashes, validation, deactivation, login rate limiting."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from db.engine import make_session_factory
from db.models import LoginAttempt, User, utcnow
from review.accounts.addresses import (
    SERVER_DEFAULT_TRUST,
    UNVERIFIED,
    Trust,
    client_address,
    forwarded_chain,
    forwarded_client,
    parse_networks,
)
from review.accounts.users import (
    ACCOUNT_FREE_FAILURES,
    BACKOFF_MAX,
    BACKOFF_START,
    FREE_FAILURES,
    LoginRefused,
    UserError,
    add_user,
    authenticate,
    backoff,
    reset_password,
    set_active,
    unlock,
)
from tests.support import in_threads


def test_add_and_authenticate(lab):
    with lab.sessions() as s, s.begin():
        add_user(s, "Alice", "correct horse", "reviewer")
    with lab.sessions() as s:
        stored = s.scalar(select(User))
        assert stored.username == "alice" and stored.password_hash.startswith("$argon2")
        assert "correct horse" not in stored.password_hash
    user = authenticate(lab.sessions, "alice", "correct horse")
    assert user.role == "reviewer" and user.last_login_at is not None


@pytest.mark.parametrize("args, message", [
    (("x", "long enough", "reviewer"), "not valid"),
    (("bob", "short", "reviewer"), "at least 8"),
    (("bob", "long enough", "boss"), "not one of"),
])
def test_invalid_users_refused(lab, args, message):
    with pytest.raises(UserError, match=message), lab.sessions() as s, s.begin():
        add_user(s, *args)


def test_duplicate_username_refused(lab):
    with lab.sessions() as s, s.begin():
        add_user(s, "bob", "long enough", "reviewer")
    with pytest.raises(UserError, match="already exists"), lab.sessions() as s, s.begin():
        add_user(s, "BOB", "long enough", "qa")


def test_wrong_password_and_deactivated_user_refused(lab):
    with lab.sessions() as s, s.begin():
        add_user(s, "carol", "long enough", "qa")
    with pytest.raises(LoginRefused, match="wrong password"):
        authenticate(lab.sessions, "carol", "wrong one!")
    with lab.sessions() as s, s.begin():
        set_active(s, "carol", False)
    with pytest.raises(LoginRefused):
        authenticate(lab.sessions, "carol", "long enough")
    with lab.sessions() as s, s.begin():
        set_active(s, "carol", True)
        reset_password(s, "carol", "a new password")
    assert authenticate(lab.sessions, "carol", "a new password").username == "carol"


@pytest.mark.slow
def test_failed_logins_are_rate_limited_even_with_the_right_password(lab):
    with lab.sessions() as s, s.begin():
        add_user(s, "dave", "long enough", "reviewer")
    for _ in range(FREE_FAILURES):
        with pytest.raises(LoginRefused, match="wrong password"):
            authenticate(lab.sessions, "dave", "guess guess")
    with pytest.raises(LoginRefused, match="Too many failed logins for this account from your address"):
        authenticate(lab.sessions, "dave", "long enough")
    with lab.sessions() as s:
        assert len(s.scalars(select(LoginAttempt)).all()) == FREE_FAILURES


def test_role_changes_keep_one_active_admin(lab):
    from review.accounts.users import UserError, add_user, set_active, set_role

    with lab.sessions() as s, s.begin():
        add_user(s, "root", "root-pass-1", "admin")
        add_user(s, "ann", "ann-pass-12", "reviewer")
    with lab.sessions() as s, s.begin(), pytest.raises(UserError, match="'root' is the last active admin"):
        set_role(s, "root", "qa")
    with lab.sessions() as s, s.begin(), pytest.raises(UserError, match="not one of"):
        set_role(s, "ann", "boss")
    with lab.sessions() as s, s.begin():
        assert set_role(s, "ann", "admin").role == "admin"
        set_role(s, "root", "reviewer")  # ann is an active admin now
    with lab.sessions() as s, s.begin():
        set_active(s, "root", False)
        set_role(s, "root", "admin")  # an inactive admin does not count as the lab's admin
    with lab.sessions() as s, s.begin(), pytest.raises(UserError, match="'ann' is the last active admin"):
        set_role(s, "ann", "qa")
    with lab.sessions() as s:
        assert dict(s.execute(select(User.username, User.role)).all()) == {"root": "admin", "ann": "admin"}


# ----------------------------------------------------------------------------- bursts, ceilings


def _burst(engine, clients: list[str]) -> tuple[int, int, list[str]]:  # noqa: ANN001
    """Fire one wrong password per client, all at once; return (attempts recorded, tries that
    reached the password check, the other refusals' messages)."""
    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        add_user(s, "eve", "right password", "reviewer")
    start = threading.Barrier(len(clients))
    checked: list[int] = []
    refused: list[str] = []

    def one(i: int) -> None:
        start.wait()
        try:
            authenticate(sessions, "eve", "guess guess", client=clients[i])
        except LoginRefused as exc:
            (checked.append(i) if "wrong password" in str(exc) else refused.append(str(exc)))

    in_threads(one, range(len(clients)))
    with sessions() as s:
        recorded = s.scalar(select(func.count()).select_from(LoginAttempt))
    return recorded, len(checked), refused


def test_a_burst_from_one_address_reaches_the_password_check_exactly_the_limit(engine):
    """60 wrong passwords at once from one address: exactly FREE_FAILURES are checked (on
    PostgreSQL the count and the record are serialised per account; SQLite's BEGIN IMMEDIATE
    serialises them anyway)."""
    recorded, checked, refused = _burst(engine, ["203.0.113.7"] * 60)
    assert (recorded, checked, len(refused)) == (FREE_FAILURES, FREE_FAILURES, 60 - FREE_FAILURES)
    assert all("from your address" in message for message in refused)


def test_a_burst_from_many_addresses_stops_at_the_account_ceiling(engine):
    """60 wrong passwords at once, each from its own (or a forged) address: the per-account
    ceiling holds, so exactly ACCOUNT_FREE_FAILURES reach the password check."""
    recorded, checked, refused = _burst(engine, [f"198.51.100.{i}" for i in range(60)])
    assert (recorded, checked) == (ACCOUNT_FREE_FAILURES, ACCOUNT_FREE_FAILURES)
    assert len(refused) == 60 - ACCOUNT_FREE_FAILURES
    assert all("from several addresses" in message for message in refused)


def test_changing_address_does_not_escape_the_account_ceiling_which_is_a_pause_not_a_lock(lab):
    with lab.write() as s:
        add_user(s, "fay", "right password", "reviewer")
    t0 = utcnow() - timedelta(minutes=30)
    for i in range(ACCOUNT_FREE_FAILURES):  # FREE_FAILURES - 1 from each address: none is throttled
        client = f"192.0.2.{i // (FREE_FAILURES - 1)}"
        with pytest.raises(LoginRefused, match="wrong password"):
            authenticate(lab.sessions, "fay", "guess guess", client=client, now=t0 + timedelta(seconds=i))
    last = t0 + timedelta(seconds=ACCOUNT_FREE_FAILURES - 1)
    # A fresh address gets no fresh guesses, and neither does the owner: the account pauses ...
    for client in ("192.0.2.200", "10.9.8.7"):
        with pytest.raises(LoginRefused, match=r"from several addresses, so its logins are paused "
                                               r"for everyone for 30 s"):
            authenticate(lab.sessions, "fay", "right password", client=client, now=last)
    # ... for a while, doubling with each further failure (capped), never for good.
    assert backoff(ACCOUNT_FREE_FAILURES, ACCOUNT_FREE_FAILURES) == BACKOFF_START
    assert backoff(10_000, ACCOUNT_FREE_FAILURES) == BACKOFF_MAX
    after = last + BACKOFF_START + timedelta(seconds=1)
    with pytest.raises(LoginRefused, match="wrong password"):
        authenticate(lab.sessions, "fay", "guess guess", client="192.0.2.201", now=after)
    with pytest.raises(LoginRefused, match="for everyone for 60 s"):
        authenticate(lab.sessions, "fay", "right password", client="10.9.8.7", now=after)
    assert authenticate(lab.sessions, "fay", "right password", client="10.9.8.7",
                        now=after + 2 * BACKOFF_START).username == "fay"
    # An admin's unlock clears the ceiling at once.
    with pytest.raises(LoginRefused, match="wrong password"):
        authenticate(lab.sessions, "fay", "guess guess", client="192.0.2.202", now=after + 2 * BACKOFF_START)
    with lab.write() as s:
        unlock(s, "fay")
    assert authenticate(lab.sessions, "fay", "right password", client="10.9.8.7").username == "fay"


def test_a_try_that_read_the_clock_before_a_parallel_one_was_recorded_is_not_paused(lab):
    """Parallel tries read the clock before they take the account's turn, so the last recorded
    failure can be later than this try's `now`; below the free counts that must not pause it
    (it did, for "0 s", when CI's threads interleaved that way)."""
    with lab.write() as s:
        add_user(s, "gus", "right password", "reviewer")
    t0 = utcnow() - timedelta(minutes=5)
    with pytest.raises(LoginRefused, match="wrong password"):
        authenticate(lab.sessions, "gus", "guess guess", client="192.0.2.1", now=t0 + timedelta(seconds=1))
    with pytest.raises(LoginRefused, match="wrong password"):
        authenticate(lab.sessions, "gus", "guess guess", client="192.0.2.1", now=t0)
    assert authenticate(lab.sessions, "gus", "right password", client="192.0.2.2", now=t0).username == "gus"


def test_the_ceiling_counts_unknown_names_too(lab):
    """A name that does not exist is throttled like one that does (no hint which names exist)."""
    t0 = utcnow() - timedelta(minutes=5)
    for i in range(ACCOUNT_FREE_FAILURES):
        with pytest.raises(LoginRefused, match="wrong password"):
            authenticate(lab.sessions, "nobody", "guess guess", client=f"192.0.2.{i}",
                         now=t0 + timedelta(seconds=i))
    with pytest.raises(LoginRefused, match="from several addresses"):
        authenticate(lab.sessions, "nobody", "guess guess", client="192.0.2.99",
                     now=t0 + timedelta(seconds=ACCOUNT_FREE_FAILURES))


# ----------------------------------------------------------------------------- client addresses

NO_PROXIES = Trust.of_app(())
LOCAL_PROXY = Trust.of_app(parse_networks("127.0.0.1"))  # docs/operations.md's nginx on the same machine
REMOTE_PROXY = Trust.of_app(parse_networks("10.0.0.5"))  # nginx on another machine


def _as_served(peer: str, forwarded_for: list[str], trusted: Trust) -> str:
    """What the login page counts a try under: the request goes through uvicorn's own
    ProxyHeadersMiddleware (default trust, as under `streamlit run`), Streamlit reports the
    address it leaves (None for loopback), and review.accounts.addresses resolves it."""
    seen: list[str | None] = []

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        host = scope["client"][0]
        seen.append(None if host in {"127.0.0.1", "::1"} else host)

    scope = {"type": "websocket", "client": (peer, 50123),
             "headers": [(b"x-forwarded-for", v.encode()) for v in forwarded_for]}
    asyncio.run(ProxyHeadersMiddleware(app, trusted_hosts=SERVER_DEFAULT_TRUST)(scope, None, None))
    return client_address(seen[0], forwarded_for, trusted, Trust.of_server(SERVER_DEFAULT_TRUST))


def test_a_forged_forwarded_for_from_an_untrusted_connection_is_ignored():
    for trusted in (NO_PROXIES, REMOTE_PROXY, LOCAL_PROXY):
        assert _as_served("203.0.113.9", ["6.6.6.6"], trusted) == "203.0.113.9"
        assert _as_served("203.0.113.9", ["6.6.6.6, 10.0.0.5"], trusted) == "203.0.113.9"
        assert forwarded_client("203.0.113.9", ["6.6.6.6"], trusted) == "203.0.113.9"
    assert _as_served("203.0.113.9", [], NO_PROXIES) == "203.0.113.9"
    assert _as_served("127.0.0.1", [], NO_PROXIES) == "local"


def test_a_trusted_proxy_gives_the_client_it_saw():
    # nginx elsewhere, sending $remote_addr or appending it ($proxy_add_x_forwarded_for) to what
    # the client sent: the client's own header changes nothing.
    assert _as_served("10.0.0.5", ["198.51.100.7"], REMOTE_PROXY) == "198.51.100.7"
    assert _as_served("10.0.0.5", ["6.6.6.6, 198.51.100.7"], REMOTE_PROXY) == "198.51.100.7"
    assert _as_served("10.0.0.5", ["6.6.6.6", "198.51.100.7"], REMOTE_PROXY) == "198.51.100.7"
    # nginx on this machine (uvicorn rewrites the address itself; over 127.0.0.1 or ::1 alike).
    for peer in ("127.0.0.1", "::1"):
        assert _as_served(peer, ["198.51.100.7"], LOCAL_PROXY) == "198.51.100.7"
        assert _as_served(peer, ["6.6.6.6, 198.51.100.7"], LOCAL_PROXY) == "198.51.100.7"
        assert _as_served(peer, ["[2001:db8::7]:4711"], LOCAL_PROXY) == "2001:db8::7"
    # A proxy that sent no header: the proxy's own address.
    assert _as_served("10.0.0.5", [], REMOTE_PROXY) == "10.0.0.5"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right():
    proxies = Trust.of_app(parse_networks("10.0.0.0/24, 127.0.0.1"))
    chain = ["6.6.6.6, 198.51.100.7, 10.0.0.6", "10.0.0.7"]
    assert _as_served("10.0.0.5", chain, proxies) == "198.51.100.7"
    assert _as_served("127.0.0.1", chain, proxies) == "198.51.100.7"
    assert forwarded_client("10.0.0.5", ["10.0.0.9", "10.0.0.8"], proxies) == "10.0.0.9"  # all ours
    assert forwarded_chain(["::ffff:198.51.100.7:4711, [2001:db8::7]:80 , x"]) == [
        "::ffff:198.51.100.7:4711", "2001:db8::7", "x"]  # an IPv6 address with no brackets keeps its colons
    assert forwarded_chain(["::ffff:198.51.100.7", "198.51.100.8:4711"]) == ["198.51.100.7", "198.51.100.8"]


def test_without_trusted_proxies_a_local_connection_cannot_choose_its_address():
    """A proxy on this machine that the app was not told to trust (or anyone on the machine):
    uvicorn believes its header, the lab does not; every forged value is counted as "local"."""
    for forged in (["6.6.6.6"], ["6.6.6.6, 7.7.7.7"], ["127.0.0.1"], ["garbage"], ["[::1]:80"]):
        for peer in ("127.0.0.1", "::1"):
            assert _as_served(peer, forged, NO_PROXIES) == "local"
            assert _as_served(peer, forged, REMOTE_PROXY) == "local"
    # A remote client can only move itself under that one fixed name, never choose a fresh one.
    for forged in (["6.6.6.6"], ["203.0.113.9"], ["6.6.6.6, 203.0.113.9"]):
        assert _as_served("203.0.113.9", forged, NO_PROXIES) in {"203.0.113.9", "local"}


def test_uvicorn_trusting_others_is_undone_too():
    """FORWARDED_ALLOW_IPS set wider than the lab's proxies: forged headers land on one name."""
    wide = Trust.of_server("10.0.0.0/8")
    assert client_address("6.6.6.6", ["6.6.6.6"], NO_PROXIES, wide) == UNVERIFIED
    assert client_address("198.51.100.7", ["198.51.100.7"], REMOTE_PROXY, wide) == UNVERIFIED
    assert client_address("198.51.100.7", ["198.51.100.7"], Trust.of_app(parse_networks("10.0.0.0/8")),
                          wide) == "198.51.100.7"
    assert client_address("6.6.6.6", ["6.6.6.6"], NO_PROXIES, Trust.of_server("*")) == UNVERIFIED
