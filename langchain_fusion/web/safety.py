"""Which URLs `web_fetch` may reach, decided before any connection is made.

A URL is parsed once, strictly (`parse_url`): http and https only, no credentials, the host
normalised (IDNA for international names, every spelling of an IPv4 literal read as the
address it means: ``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``, a trailing dot).
Its host is then resolved once (`resolve` / `aresolve`) and every address checked
(`check_addresses`): loopback, private, carrier-grade NAT, link-local, multicast, reserved,
unspecified, unique-local, cloud metadata addresses, and IPv6 addresses that embed one of
these (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64) are refused, unless an explicit
`AllowList` names the host or the network. The connection then goes to a checked address,
so a second DNS answer cannot change where it goes.

`address_problem` is the pure check of one address; it never touches the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import httpx
import idna
from langchain_core.tools import ToolException

__all__ = [
    "AllowList",
    "IPAddress",
    "Target",
    "UnsafeURLError",
    "address_problem",
    "aresolve",
    "check_addresses",
    "normalize_host",
    "parse_ipv4_literal",
    "parse_url",
    "resolve",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)")

_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.IPv4Address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, Oracle...
        ipaddress.IPv4Address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.IPv4Address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.IPv6Address("fd00:ec2::254"),  # AWS over IPv6
    }
)
_RFC1918 = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


class UnsafeURLError(ToolException):
    """A URL that `web_fetch` refuses to reach (bad scheme, credentials, a non-public host)."""


# -- parsing ------------------------------------------------------------------------------


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address that ``host`` spells, in any form resolvers accept, else None.

    Follows the WHATWG URL standard (and ``inet_aton``): one to four dot-separated
    numbers, each decimal, octal (a leading ``0``) or hex (``0x``); the last fills the
    remaining bytes (``127.1`` is ``127.0.0.1``, ``2130706433`` is one number); one
    trailing dot is ignored. A host whose last label is a number but which is no valid
    address (``1.2.3.4.5``, ``09.0.0.1``) raises `UnsafeURLError`: it is neither a name
    nor an address, and resolvers disagree on it.
    """
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if not labels or not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    if len(labels) > 4 or any(not label for label in labels):
        raise UnsafeURLError(f"{host!r} is not a valid IPv4 address")
    numbers = [_ipv4_number(label, host) for label in labels]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise UnsafeURLError(f"{host!r} is not a valid IPv4 address (a part is out of range)")
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _ipv4_number(label: str, host: str) -> int:
    try:
        if label[:2].lower() == "0x":
            return int(label[2:] or "0", 16)
        if len(label) > 1 and label.startswith("0"):
            return int(label[1:], 8)
        return int(label, 10)
    except ValueError:
        raise UnsafeURLError(f"{host!r} is not a valid IPv4 address") from None


def normalize_host(host: str) -> str | IPAddress:
    """The canonical form of a URL's host: an address, or a lower-case ASCII host name.

    ``[v6]`` literals become `IPv6Address` (zone ids refused); IPv4 literals in any
    spelling become `IPv4Address`; international names are IDNA-encoded (UTS 46, so
    full-width digits and ideographic dots map to what they look like). Host names
    lose one trailing dot. Anything else (percent-encoding, empty labels, odd
    characters) raises `UnsafeURLError`.
    """
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else ""
        if "%" in inner:
            raise UnsafeURLError(f"IPv6 zone identifiers are not allowed: {host!r}")
        try:
            return ipaddress.IPv6Address(inner)
        except ValueError:
            raise UnsafeURLError(f"{host!r} is not a valid IPv6 address") from None
    if not host:
        raise UnsafeURLError("the URL has no host")
    if "%" in host:
        raise UnsafeURLError(f"percent-encoded host names are not allowed: {host!r}")
    if host.isascii():
        name = host.lower()
    else:
        try:
            name = idna.encode(host, uts46=True).decode("ascii").lower()
        except UnicodeError as error:  # idna.IDNAError is one
            raise UnsafeURLError(
                f"{host!r} is not a valid international host name: {error}"
            ) from None
    literal = parse_ipv4_literal(name)
    if literal is not None:
        return literal
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise UnsafeURLError(f"{host!r} is not a valid host name")
    return name


@dataclass(frozen=True)
class Target:
    """A URL that parsed cleanly: where to connect, and what to call the host there."""

    url: httpx.URL
    """The canonical URL (host normalised, fragment dropped)."""
    host: str
    """The host name, or the address as text for IP literals."""
    address: IPAddress | None
    """The address when the URL names one, else None (the host must be resolved)."""
    port: int
    written_host: str = ""
    """The host as the URL spelled it (``0x7f.1``), for messages."""

    @property
    def host_header(self) -> str:
        """The ``Host`` header for this URL (with the port when it is not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.url.scheme]:
            return host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return str(self.url)


def parse_url(url: str) -> Target:
    """Parse ``url`` strictly into a `Target`; raises `UnsafeURLError` for what is refused.

    Refused: schemes other than http and https, credentials (``user:pass@``), control
    characters, whitespace or backslashes in the host part, invalid ports, and hosts that
    `normalize_host` refuses. The result is checked against httpx's own reading of the
    canonical URL, so the host checked is the host connected to.
    """
    text = url.strip()
    if not text:
        raise UnsafeURLError("the URL is empty")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise UnsafeURLError("the URL contains control characters")
    try:
        split = urlsplit(text)
    except ValueError as error:
        raise UnsafeURLError(f"invalid URL {text!r}: {error}") from None
    scheme = split.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        shown = f"{scheme}:" if scheme else "a URL without a scheme"
        raise UnsafeURLError(f"only http and https URLs can be fetched, not {shown}")
    netloc = split.netloc
    if "@" in netloc:
        raise UnsafeURLError("URLs with credentials (user:password@host) are refused")
    if not netloc:
        raise UnsafeURLError("the URL has no host")
    if "\\" in netloc or any(char.isspace() for char in netloc):
        raise UnsafeURLError("the URL's host contains whitespace or backslashes")
    host_text, port = _split_host_port(netloc, scheme)
    host = normalize_host(host_text)
    address = host if isinstance(host, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else None
    host_name = str(host)
    shown_host = f"[{host_name}]" if ":" in host_name else host_name
    shown_port = "" if port == _DEFAULT_PORTS[scheme] else f":{port}"
    query = f"?{split.query}" if split.query else ""
    canonical = f"{scheme}://{shown_host}{shown_port}{split.path or '/'}{query}"
    try:
        parsed = httpx.URL(canonical)
    except httpx.InvalidURL as error:
        raise UnsafeURLError(f"invalid URL {text!r}: {error}") from None
    if (
        parsed.scheme != scheme
        or parsed.userinfo
        or not _same_host(parsed.raw_host.decode("ascii"), host_name)
        or (parsed.port or _DEFAULT_PORTS[scheme]) != port
    ):
        raise UnsafeURLError(f"ambiguous URL {text!r}: it does not parse the same way twice")
    return Target(url=parsed, host=host_name, address=address, port=port, written_host=host_text)


def _split_host_port(netloc: str, scheme: str) -> tuple[str, int]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise UnsafeURLError(f"invalid IPv6 host in {netloc!r}")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UnsafeURLError(f"invalid host {netloc!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = netloc.partition(":")
        if ":" in port_text:
            raise UnsafeURLError(f"invalid host {netloc!r} (IPv6 addresses need [brackets])")
    if not port_text:
        return host, _DEFAULT_PORTS[scheme]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UnsafeURLError(f"invalid port {port_text!r}")
    return host, int(port_text)


def _same_host(parsed: str, expected: str) -> bool:
    if parsed == expected:
        return True
    try:
        return ipaddress.ip_address(parsed) == ipaddress.ip_address(expected)
    except ValueError:
        return False


# -- address checks -----------------------------------------------------------------------


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched (e.g. ``"a loopback address"``), or None if public.

    A pure function. IPv6 addresses that embed an IPv4 address (IPv4-mapped,
    IPv4-compatible, 6to4, Teredo, NAT64) are judged by the embedded address as well.
    """
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        for kind, inner in embedded:
            problem = address_problem(inner)
            if problem is not None:
                return f"an IPv6 address ({kind}) that embeds {inner}, {problem}"
        if any(kind == "IPv4-compatible" for kind, _ in embedded):
            return "a deprecated IPv4-compatible IPv6 address"
        if address.ipv4_mapped is not None:
            return None  # judged by the IPv4 address it maps, which is public
    return _plain_problem(address)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.ipv4_mapped is not None:
        found.append(("IPv4-mapped", address.ipv4_mapped))
    elif address in _IPV4_COMPATIBLE and int(address) > 1:
        found.append(("IPv4-compatible", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        server, client = address.teredo
        found.extend([("Teredo", client), ("Teredo", server)])
    if address in _NAT64:
        found.append(("NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))
    return found


def _plain_problem(address: IPAddress) -> str | None:
    if address.is_unspecified or (
        isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK
    ):
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in network for network in _RFC1918):
            return "a private (RFC 1918) address"
        if address in _CGNAT:
            return "a carrier-grade NAT (100.64.0.0/10) address"
    else:
        if address in _UNIQUE_LOCAL:
            return "an IPv6 unique-local (fc00::/7) address"
        if address.is_site_local:
            return "an IPv6 site-local address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or not address.is_global:
        return "a special-purpose address, not a public internet address"
    return None


# -- the allow-list -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    network: IPNetwork | None
    host: str | None
    subdomains: bool
    port: int | None

    def permits_port(self, port: int) -> bool:
        return self.port is None or self.port == port


class AllowList:
    """Hosts and networks that may be fetched although they are not public.

    Entries are strings: an address or network (``"127.0.0.1"``, ``"10.0.0.0/8"``,
    ``"::1"``, ``"fd00::/8"``), a host name (``"intranet.example"``; ``"*.corp.example"``
    for its subdomains), each optionally with a port (``"127.0.0.1:8080"``,
    ``"[::1]:8080"``, ``"intranet.example:8443"``), which then limits the entry to that
    port. An empty list (the default) allows only public addresses.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        """Parse ``entries``; raises `ValueError` naming any entry it cannot read."""
        self.entries: tuple[str, ...] = tuple(entries)
        self._parsed = tuple(_parse_entry(entry) for entry in self.entries)

    def __bool__(self) -> bool:
        return bool(self._parsed)

    def __repr__(self) -> str:
        return f"AllowList({list(self.entries)!r})"

    def permits_host(self, host: str, port: int) -> bool:
        """Whether a host-name entry names ``host`` (at ``port``)."""
        for entry in self._parsed:
            if entry.host is None or not entry.permits_port(port):
                continue
            if host == entry.host or (entry.subdomains and host.endswith("." + entry.host)):
                return True
        return False

    def permits_address(self, address: IPAddress, port: int) -> bool:
        """Whether a network entry contains ``address`` (or the IPv4 address it maps)."""
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            entry.network is not None
            and entry.permits_port(port)
            and any(c.version == entry.network.version and c in entry.network for c in candidates)
            for entry in self._parsed
        )


def _parse_entry(entry: str) -> _Entry:
    text = entry.strip()
    if not text:
        raise ValueError("allow-list entries must not be empty")
    port: int | None = None
    with_port = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if with_port:
        text, port_text = with_port.group(1), with_port.group(2)
        port = int(port_text) if port_text else None
    elif text.count(":") == 1:
        text, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"invalid port in allow-list entry {entry!r}")
        port = int(port_text)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"invalid port in allow-list entry {entry!r}")
    try:
        return _Entry(ipaddress.ip_network(text, strict=False), None, False, port)
    except ValueError:
        pass
    subdomains = text.startswith(("*.", "."))
    name = text[2:] if text.startswith("*.") else text.lstrip(".") if subdomains else text
    try:
        host = normalize_host(name)
    except UnsafeURLError as error:
        raise ValueError(f"invalid allow-list entry {entry!r}: {error}") from None
    if isinstance(host, str):
        return _Entry(None, host, subdomains, port)
    if subdomains:
        raise ValueError(f"invalid allow-list entry {entry!r}: an address has no subdomains")
    return _Entry(ipaddress.ip_network(host), None, False, port)


# -- resolution ---------------------------------------------------------------------------


def resolve(target: Target) -> list[IPAddress]:
    """The addresses to check and connect to: the literal, or one `getaddrinfo` answer."""
    if target.address is not None:
        return [target.address]
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise ToolException(f"could not resolve the host {target.host!r}: {error}") from None
    return _addresses(target, infos)


async def aresolve(target: Target) -> list[IPAddress]:
    """`resolve`, with the blocking `getaddrinfo` in a worker thread."""
    if target.address is not None:
        return [target.address]
    try:
        infos = await asyncio.to_thread(
            socket.getaddrinfo, target.host, target.port, 0, socket.SOCK_STREAM
        )
    except (OSError, UnicodeError) as error:
        raise ToolException(f"could not resolve the host {target.host!r}: {error}") from None
    return _addresses(target, infos)


def _addresses(target: Target, infos: Sequence[tuple[Any, ...]]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeURLError(
                f"the resolver returned an invalid address {text!r} for {target.host!r}"
            ) from None
        if address not in found:
            found.append(address)
    if not found:
        raise ToolException(f"the host {target.host!r} has no addresses")
    return found


def check_addresses(
    target: Target, addresses: Sequence[IPAddress], allow: AllowList | None = None
) -> None:
    """Raise `UnsafeURLError` unless EVERY address is public or allowed by ``allow``.

    A host name on the allow-list permits whatever it resolves to.
    """
    allow = allow if allow is not None else AllowList()
    if allow.permits_host(target.host, target.port):
        return
    for address in addresses:
        if allow.permits_address(address, target.port):
            continue
        problem = address_problem(address)
        if problem is None:
            continue
        written = target.written_host or target.host
        if target.address is not None and written.strip("[]") == str(address):
            spelled = f"{written} is {problem}"
        elif target.address is not None:
            spelled = f"{written} is {address}, {problem}"
        else:
            spelled = f"{target.host} resolves to {address}, {problem}"
        raise UnsafeURLError(
            f"{spelled}; only public internet addresses can be fetched"
            + ("" if not allow else f" (allowed: {', '.join(allow.entries)})")
        )
