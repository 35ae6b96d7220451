"""What a fetch gets back, read safely: the redirect chain, then one page.

`_Hops` follows the redirects by hand, each hop parsed and its addresses checked; a
response is accepted only with a success status and a text type (`TEXT_CONTENT_TYPES`); its
body is streamed up to a byte limit and before a deadline (`_Body`), and becomes a `_Page`:
the final URL, type, charset and bytes, ready for `WebFetchTool` to render.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urljoin

import httpx
from langchain_core.tools import ToolException

from langchain_fusion.web.addresses import check_addresses
from langchain_fusion.web.content import collapse_whitespace, escape_untrusted
from langchain_fusion.web.safety import AllowList, IPAddress, Target, UnsafeURLError, parse_url

__all__ = ["TEXT_CONTENT_TYPES"]

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_CONTENT_TYPES = _HTML_TYPES | frozenset(
    {
        "text/plain",
        "text/markdown",
        "text/x-markdown",
        "application/json",
        "application/xml",
        "text/xml",
    }
)
"""The content types `WebFetchTool` reads (plus ``application/*+json`` and ``*+xml``)."""
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class _DeadlineExceeded(Exception):
    """The fetch ran past its total deadline."""


@dataclass
class _Page:
    """A page as received: the final URL, its type and (possibly cut) bytes."""

    url: str
    media_type: str | None
    charset: str | None
    body: bytes
    truncated: bool
    redirects: list[str]


@dataclass
class _Body:
    """Collects a streamed body up to ``limit`` bytes, before ``deadline``."""

    limit: int
    deadline: float
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    truncated: bool = False

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk`` (or what fits); True when reading must stop."""
        if time.monotonic() > self.deadline:
            raise _DeadlineExceeded
        room = self.limit - self.size
        if len(chunk) > room:
            self.chunks.append(chunk[:room])
            self.size = self.limit
            self.truncated = True
            return True
        self.chunks.append(chunk)
        self.size += len(chunk)
        return False

    def bytes(self) -> bytes:
        """What was kept."""
        return b"".join(self.chunks)


class _Hops:
    """The redirect chain of one fetch: parses and checks each hop, names it in errors."""

    def __init__(self, url: str, allow: AllowList, max_redirects: int) -> None:
        self.url = url
        self.allow = allow
        self.max_redirects = max_redirects
        self.visited: list[str] = []

    def first(self) -> Target:
        try:
            return parse_url(self.url)
        except UnsafeURLError as error:
            raise UnsafeURLError(f"refused {self.url}: {error}") from None

    def check(self, target: Target, addresses: list[IPAddress]) -> None:
        try:
            check_addresses(target, addresses, self.allow)
        except UnsafeURLError as error:
            if self.visited:
                raise UnsafeURLError(
                    f"refused the redirect from {self.visited[-1]} to {target}: {error}"
                ) from None
            raise UnsafeURLError(f"refused {self.url}: {error}") from None

    def next(self, target: Target, response: httpx.Response) -> Target | None:
        """The redirect's target, checked for form (not yet for address); None if no redirect."""
        if response.status_code not in _REDIRECT_STATUSES:
            return None
        location = response.headers.get("location")
        if not location:
            raise ToolException(
                f"{target} answered HTTP {response.status_code} without a Location header"
            )
        self.visited.append(str(target))
        if len(self.visited) > self.max_redirects:
            raise ToolException(
                f"too many redirects: {self.url} redirected more than {self.max_redirects} "
                f"times (the last one from {target} to {_shown(location)})"
            )
        absolute = urljoin(str(target.url), location.strip())
        try:
            return parse_url(absolute)
        except UnsafeURLError as error:
            # The Location header is the server's text: shown short, on one line, defused.
            raise UnsafeURLError(
                f"refused the redirect from {target} to {_shown(location)}: {_shown(str(error))}"
            ) from None


def _checked_status(target: Target, response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        response.close()
        # The standard reason phrase, not the server's own text (which could say anything).
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = "error"
        raise ToolException(f"{target} answered HTTP {response.status_code} {reason}")
    return response


def _shown(text: str, limit: int = 200) -> str:
    """Server-controlled ``text`` for an error message: one line, bounded, tags defused."""
    line = escape_untrusted(collapse_whitespace(text))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _accepted_type(target: Target, response: httpx.Response) -> tuple[str | None, str | None]:
    """The response's media type and charset; raises for types that are not text."""
    header = response.headers.get("content-type")
    if not header:
        return None, None
    media_type = header.split(";", 1)[0].strip().lower()
    readable = media_type in TEXT_CONTENT_TYPES or (
        media_type.startswith("application/") and media_type.endswith(("+json", "+xml"))
    )
    if not readable:
        raise ToolException(
            f"refused {target}: its content type is {media_type}; web_fetch reads only text "
            "pages (HTML, plain text, Markdown, JSON, XML), not images, PDFs or other binary "
            "files"
        )
    return media_type, response.charset_encoding


def _read(chunks: Iterator[bytes], body: _Body) -> None:
    for chunk in chunks:
        if body.add(chunk):
            return


async def _aread(chunks: AsyncIterator[bytes], body: _Body) -> None:
    async for chunk in chunks:
        if body.add(chunk):
            return


def _page(
    target: Target, media_type: str | None, charset: str | None, body: _Body, hops: _Hops
) -> _Page:
    data = body.bytes()
    if media_type is None:  # no Content-Type: read it as text only if it is not binary
        if b"\x00" in data[:4096]:
            raise ToolException(f"refused {target}: it sent no content type, and binary data")
        start = data[:512].lstrip().lower()
        media_type = "text/html" if start.startswith((b"<!doctype html", b"<html")) else None
    return _Page(
        url=str(target.url),
        media_type=media_type,
        charset=charset,
        body=data,
        truncated=body.truncated,
        redirects=list(hops.visited),
    )


def _decode(data: bytes, charset: str | None) -> str:
    encoding = "utf-8"
    if charset:
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            encoding = "utf-8"
    return data.decode(encoding, errors="replace")


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no address to connect to"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
