"""Which URLs `web_fetch` may reach: strict parsing, and the operator's allow-list.

A URL is parsed once, strictly (`parse_url`): http and https only, no credentials, the host
normalised (IDNA for international names, every spelling of an IPv4 literal read as the
address it means: ``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``, a trailing dot).
An `AllowList` names the hosts and networks that may be reached although they are not
public. Resolving the host and checking every address is `langchain_fusion.web.addresses`;
whatever is refused is an `UnsafeURLError`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

import httpx
import idna
from langchain_core.tools import ToolException

__all__ = [
    "AllowList",
    "IPAddress",
    "Target",
    "UnsafeURLError",
    "normalize_host",
    "parse_ipv4_literal",
    "parse_url",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)")


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
