"""Whether a URL's addresses are public: its host resolved once, every address checked.

A `Target`'s host is resolved once (`resolve` / `aresolve`) and every address checked
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
import socket
from collections.abc import Sequence
from typing import Any

from langchain_core.tools import ToolException

from langchain_fusion.web.safety import AllowList, IPAddress, Target, UnsafeURLError

__all__ = [
    "address_problem",
    "aresolve",
    "check_addresses",
    "resolve",
]

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
