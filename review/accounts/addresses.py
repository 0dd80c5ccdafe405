"""The client address that login throttling counts by (review.accounts.users), from the connection and
its `X-Forwarded-For` header.

A forwarded address is believed only from a trusted proxy (REVIEW_TRUSTED_PROXIES, addresses or
networks; empty by default, so a header any browser can send is never believed). When the
connection comes from a trusted proxy, the client is the right-most address in
`X-Forwarded-For` that is not itself a trusted proxy: each proxy appends the address it saw, so
everything left of that point is whatever the client chose to send. `X-Real-IP` and `Forwarded`
are not read. A proxy on this machine is trusted over 127.0.0.1 and ::1 alike (a local process
can use either, so trusting one and not the other would protect nothing).

One wrinkle comes from the server under Streamlit: uvicorn already replaces the connection's
address by the header's when the connection comes from an address it trusts (its
FORWARDED_ALLOW_IPS, by default 127.0.0.1 and ::1), and Streamlit reports only the result.
`client_address` undoes that: when the address it is given is the one uvicorn would have taken
from the header, the connection may have come from any address uvicorn trusts; if the answer
then depends on which, the try is counted under one fixed name (`local` for loopback), so a
forged header cannot buy a fresh count.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: How a loopback client (this machine) is counted; Streamlit reports no address for it.
LOCAL = "local"
#: How a try is counted when a proxy the app does not trust may have forged its address.
UNVERIFIED = "unverified-proxy"
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
#: uvicorn's own default for FORWARDED_ALLOW_IPS.
SERVER_DEFAULT_TRUST = "127.0.0.1,::1"
MAX_ADDRESS = 64


def parse_networks(value: str) -> tuple[Network, ...]:
    """`192.0.2.10, 10.0.0.0/8, ::1` as networks; ValueError naming the first entry that is not
    an address or network (host bits set, as in 10.0.0.1/8, are refused: probably a typo)."""
    networks: list[Network] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an IP address or network ({exc})") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:192.0.2.1 is 192.0.2.1 (dual-stack sockets)
    return ip


def _host(entry: str) -> str:
    """One `X-Forwarded-For` entry without its port, as uvicorn reads it (`[v6]:port`,
    `v4:port`), in canonical form when it is an address."""
    entry = entry.strip().strip('"')
    if entry.startswith("[") and "]" in entry:
        entry = entry[1:entry.index("]")]
    elif entry.count(":") == 1:
        host, port = entry.rsplit(":", 1)
        entry = host if port.isdigit() else entry
    ip = _address(entry)
    return str(ip) if ip is not None else entry[:MAX_ADDRESS]


def forwarded_chain(values: Iterable[str]) -> list[str]:
    """The addresses of every `X-Forwarded-For` header (in order; several headers are one list)."""
    return [_host(part) for value in values for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class Trust:
    """A set of trusted proxies: networks, names that are not addresses (uvicorn allows them),
    or everyone (uvicorn's `*`)."""

    networks: tuple[Network, ...] = ()
    literals: frozenset[str] = field(default_factory=frozenset)
    everyone: bool = False

    @classmethod
    def of_app(cls, networks: Sequence[Network]) -> Trust:
        """REVIEW_TRUSTED_PROXIES: a loopback address stands for all of loopback."""
        loopback = any(n.network_address.is_loopback for n in networks)
        return cls(tuple(networks) + (LOOPBACK if loopback else ()))

    @classmethod
    def of_server(cls, value: str | None = None) -> Trust:
        """uvicorn's FORWARDED_ALLOW_IPS, read as uvicorn reads it."""
        value = os.environ.get("FORWARDED_ALLOW_IPS", SERVER_DEFAULT_TRUST) if value is None else value
        entries = [e.strip() for e in value.split(",")]
        if "*" in entries:
            return cls(everyone=True)
        networks: list[Network] = []
        literals: set[str] = set()
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                literals.add(entry)
        return cls(tuple(networks), frozenset(literals))

    def __contains__(self, host: str) -> bool:
        if self.everyone:
            return True
        ip = _address(host)
        if ip is None:
            return host in self.literals
        return any(ip in n for n in self.networks)

    def covers(self, network: Network) -> bool:
        return any(_subnet_of(network, n) for n in self.networks)

    def overlaps(self, network: Network) -> bool:
        return any(network.version == n.version and network.overlaps(n) for n in self.networks)


def forwarded_client(peer: str, chain: Sequence[str], trusted: Trust) -> str:
    """The client behind `peer`: `peer` itself unless it is a trusted proxy; then the right-most
    entry of `chain` (X-Forwarded-For) that is not a trusted proxy, or the left-most when all are
    (a chain of our own proxies), or `peer` when the proxy sent no header."""
    if peer not in trusted:
        return peer
    return _walk(chain, trusted) if chain else peer


def _walk(chain: Sequence[str], trusted: Trust) -> str:
    for host in reversed(chain):
        if host not in trusted:
            return host
    return chain[0]


def _server_pick(chain: Sequence[str], server: Trust) -> str:
    """The address uvicorn puts in place of a trusted connection's (ProxyHeadersMiddleware)."""
    return chain[0] if server.everyone else _walk(chain, server)


def client_address(seen: str | None, forwarded_for: Iterable[str], trusted: Trust,
                   server: Trust | None = None) -> str:
    """The address to count a login try under. `seen` is the address Streamlit reports
    (`st.context.ip_address`: None on loopback), `forwarded_for` the `X-Forwarded-For` header
    values of the same request, `trusted` REVIEW_TRUSTED_PROXIES (`Trust.of_app`), `server`
    uvicorn's trust (module docstring)."""
    server = Trust.of_server() if server is None else server
    chain = forwarded_chain(forwarded_for)
    peer = _host(seen) if seen else "127.0.0.1"
    answer = _label(forwarded_client(peer, chain, trusted))
    if chain and _server_pick(chain, server) == peer:
        # uvicorn may have put `peer` there in place of a connection from any address it trusts.
        others, fixed = _from_server_trusted(chain, trusted, server)
        if others != {answer}:
            return fixed
    return answer


def _label(host: str) -> str:
    ip = _address(host)
    return LOCAL if ip is not None and ip.is_loopback else host[:MAX_ADDRESS]


def _from_server_trusted(chain: Sequence[str], trusted: Trust, server: Trust) -> tuple[set[str], str]:
    """What a connection from an address uvicorn trusts could come to (each such address is
    either a trusted proxy of ours, giving the header's client, or not, giving itself), and the
    one name to count under when those differ."""
    untrusted = [n for n in server.networks if not trusted.covers(n)]
    local_only = not server.everyone and not server.literals and all(_is_loopback(n) for n in untrusted)
    fixed = LOCAL if local_only else UNVERIFIED
    answers: set[str] = set()
    if trusted.networks and (server.everyone or any(trusted.overlaps(n) for n in server.networks)):
        answers.add(_label(_walk(chain, trusted)))
    if server.everyone or server.literals or untrusted:
        answers.add(fixed)
    return answers, fixed


def _is_loopback(network: Network) -> bool:
    return any(_subnet_of(network, n) for n in LOOPBACK)


def _subnet_of(inner: Network, outer: Network) -> bool:
    """Whether ``inner`` lies in ``outer``; False across IP versions, where subnet_of raises."""
    if isinstance(inner, ipaddress.IPv4Network):
        return isinstance(outer, ipaddress.IPv4Network) and inner.subnet_of(outer)
    return isinstance(outer, ipaddress.IPv6Network) and inner.subnet_of(outer)
