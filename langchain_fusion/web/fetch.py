"""`WebFetchTool`: read one web page, safely, as text a model can use.

Every hop (the URL, then each redirect, followed by hand) is parsed strictly, its host
resolved once and every address checked (`langchain_fusion.web.safety`) before any
connection; the connection then goes to the checked address, with the original ``Host``
header and, for https, the original name as SNI and for certificate checks, so a second DNS
answer cannot redirect it (DNS rebinding). Bodies are streamed up to a byte limit, under
a total deadline, and only text types are read. HTML becomes Markdown; the text reaches
the model inside ``<untrusted_web_content>`` tags.
"""

from __future__ import annotations

import asyncio
import codecs
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, Field, PrivateAttr, model_validator

from langchain_fusion.contract.result import Source
from langchain_fusion.web.content import (
    collapse_whitespace,
    escape_untrusted,
    html_to_markdown,
    truncate_text,
    wrap_untrusted,
)
from langchain_fusion.web.safety import (
    AllowList,
    IPAddress,
    Target,
    UnsafeURLError,
    aresolve,
    check_addresses,
    parse_url,
    resolve,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_TIMEOUT",
    "FETCH_TOOL_DESCRIPTION",
    "FETCH_TOOL_NAME",
    "TEXT_CONTENT_TYPES",
    "WebFetchInput",
    "WebFetchTool",
]

FETCH_TOOL_NAME = "web_fetch"
FETCH_TOOL_DESCRIPTION = (
    "Read one web page: give an http(s) URL, get its title and text (HTML converted to "
    "Markdown; plain text, Markdown, JSON and XML as they are). Long pages are cut. Use it to "
    "read a page that a web search found or that the question cites. Only public internet "
    "addresses can be fetched, and only text pages (no images or PDFs)."
)
DEFAULT_MAX_BYTES = 2_000_000
DEFAULT_MAX_CHARS = 20_000
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = 15.0
DEFAULT_USER_AGENT = "langchain-fusion-web-fetch/0.1 (+https://pypi.org/project/langchain-fusion/)"

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
_HTML_HEAD_BYTES = 500_000
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ACCEPT = (
    "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.9,"
    "application/json;q=0.8,application/xml;q=0.8,text/xml;q=0.8,*/*;q=0.1"
)


class WebFetchInput(BaseModel):
    """What the model passes to ``web_fetch``."""

    url: str = Field(description="The http or https URL of the page to read.")


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


class WebFetchTool(BaseTool):
    """Fetch a web page for a model: safe by default, text only, cut to size, delimited.

    Only public internet addresses are reached unless ``allow`` names a host or network
    (see `AllowList`): loopback, private, link-local, metadata and other special
    addresses are refused before any connection, in every spelling, at every redirect,
    and the connection goes to the address that was checked. The content the model reads
    is the page's text inside ``<untrusted_web_content url=... title=...>`` tags; the
    artifact is ``[Source(url=final URL, title=page title)]``. Every failure is a tool
    message (``status="error"``) with a specific reason, never an exception that ends an
    agent's loop.

    Example:
        ```python
        from langchain_fusion.web import WebFetchTool

        fetch = WebFetchTool()                                   # public internet only
        intranet = WebFetchTool(allow=["wiki.corp.example", "10.0.0.0/8"])
        message = fetch.invoke({"type": "tool_call", "id": "1", "name": "web_fetch",
                                "args": {"url": "https://example.com/"}})
        message.artifact  # [Source(url='https://example.com/', title='Example Domain')]
        ```
    """

    name: str = FETCH_TOOL_NAME
    description: str = FETCH_TOOL_DESCRIPTION
    args_schema: type[BaseModel] = WebFetchInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool = True
    allow: list[str] = Field(default_factory=list)
    """Hosts and networks that may be reached although they are not public, e.g.
    ``["127.0.0.1", "intranet.example", "10.0.0.0/8", "[::1]:8080"]``. Empty by default."""
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0)
    """Bytes read from a response body at most; a longer page is cut (and says so)."""
    max_chars: int = Field(default=DEFAULT_MAX_CHARS, gt=0)
    """Characters of text given to the model at most; longer text is cut (and says so)."""
    max_redirects: int = Field(default=DEFAULT_MAX_REDIRECTS, ge=0)
    """Redirects followed at most."""
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)
    """Seconds for the whole fetch (every hop, connect and read, slow pages included)."""
    user_agent: str = DEFAULT_USER_AGENT

    _allow_list: AllowList = PrivateAttr(default_factory=AllowList)

    @model_validator(mode="after")
    def _parse_allow(self) -> WebFetchTool:
        self._allow_list = AllowList(self.allow)  # a bad entry fails here, at construction
        return self

    # -- sync -------------------------------------------------------------------------

    def _run(
        self, url: str, run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[str, list[Source]]:
        """Fetch ``url``; returns (content for the model, [the page's `Source`])."""
        deadline = time.monotonic() + self.timeout
        try:
            page = self._fetch(url, deadline)
        except (httpx.TimeoutException, _DeadlineExceeded):
            raise self._timeout_error(url) from None
        except httpx.HTTPError as error:
            raise ToolException(f"could not fetch {url}: {_describe(error)}") from None
        return self._render(page)

    def _fetch(self, url: str, deadline: float) -> _Page:
        hops = _Hops(url, self._allow_list, self.max_redirects)
        target: Target | None = hops.first()
        with httpx.Client(**self._client_options()) as client:
            while target is not None:
                addresses = resolve(target)
                hops.check(target, addresses)
                response = self._send(client, target, addresses, deadline)
                try:
                    following = hops.next(target, response)
                    if following is None:
                        media_type, charset = _accepted_type(target, response)
                        body = _Body(self.max_bytes, deadline)
                        _read(response.iter_bytes(), body)
                        return _page(target, media_type, charset, body, hops)
                finally:
                    response.close()
                target = following
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        client: httpx.Client,
        target: Target,
        addresses: list[IPAddress],
        deadline: float,
    ) -> httpx.Response:
        failure: httpx.ConnectError | None = None
        for address in addresses:
            client.cookies.clear()  # no cookie from one hop reaches another host
            request = self.build_request(client, target, address, deadline)
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as error:
                failure = error
                continue
            return _checked_status(target, response)
        raise ToolException(f"could not connect to {target}: {_describe(failure)}")

    # -- async ------------------------------------------------------------------------

    async def _arun(
        self, url: str, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[str, list[Source]]:
        """Async `_run`; the deadline cancels the fetch wherever it is."""
        deadline = time.monotonic() + self.timeout
        try:
            page = await asyncio.wait_for(self._afetch(url, deadline), timeout=self.timeout)
        except (TimeoutError, httpx.TimeoutException, _DeadlineExceeded):
            raise self._timeout_error(url) from None
        except httpx.HTTPError as error:
            raise ToolException(f"could not fetch {url}: {_describe(error)}") from None
        return await asyncio.to_thread(self._render, page)  # HTML conversion takes CPU time

    async def _afetch(self, url: str, deadline: float) -> _Page:
        hops = _Hops(url, self._allow_list, self.max_redirects)
        target: Target | None = hops.first()
        async with httpx.AsyncClient(**self._client_options()) as client:
            while target is not None:
                addresses = await aresolve(target)
                hops.check(target, addresses)
                response = await self._asend(client, target, addresses, deadline)
                try:
                    following = hops.next(target, response)
                    if following is None:
                        media_type, charset = _accepted_type(target, response)
                        body = _Body(self.max_bytes, deadline)
                        await _aread(response.aiter_bytes(), body)
                        return _page(target, media_type, charset, body, hops)
                finally:
                    await response.aclose()
                target = following
        raise AssertionError("unreachable")  # pragma: no cover

    async def _asend(
        self,
        client: httpx.AsyncClient,
        target: Target,
        addresses: list[IPAddress],
        deadline: float,
    ) -> httpx.Response:
        failure: httpx.ConnectError | None = None
        for address in addresses:
            client.cookies.clear()
            request = self.build_request(client, target, address, deadline)
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as error:
                failure = error
                continue
            return _checked_status(target, response)
        raise ToolException(f"could not connect to {target}: {_describe(failure)}")

    # -- shared -----------------------------------------------------------------------

    def _client_options(self) -> dict[str, Any]:
        return {
            "follow_redirects": False,  # every hop is checked here, by hand
            "trust_env": False,  # no proxy from the environment: we connect where we checked
            "timeout": self.timeout,
            "limits": httpx.Limits(max_keepalive_connections=0),  # no connection reuse
            "headers": {"User-Agent": self.user_agent, "Accept": _ACCEPT},
        }

    def build_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        target: Target,
        address: IPAddress,
        deadline: float,
    ) -> httpx.Request:
        """The request for ``target``, addressed to the checked ``address``.

        The URL names the address, so nothing resolves the host again; the ``Host``
        header and (for https) the SNI name, which is also the name the certificate is
        checked against, are the original host's.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlineExceeded
        extensions: dict[str, Any] = {}
        if target.url.scheme == "https" and target.address is None:
            extensions["sni_hostname"] = target.host
        return client.build_request(
            "GET",
            target.url.copy_with(host=str(address)),
            headers={"Host": target.host_header},
            extensions=extensions,
            timeout=httpx.Timeout(min(self.timeout, remaining)),
        )

    def _timeout_error(self, url: str) -> ToolException:
        return ToolException(
            f"timed out: {url} did not answer completely within {self.timeout:g} s"
        )

    def _render(self, page: _Page) -> tuple[str, list[Source]]:
        title, text, total = self._text(page)
        text, cut = truncate_text(text, self.max_chars)
        notes: list[str] = []
        if page.redirects:
            chain = " -> ".join([*page.redirects, page.url])
            notes.append(f"Redirected: {chain}.")
        if page.truncated:
            notes.append(
                f"The page was cut: it is larger than {self.max_bytes:,} bytes, and only the "
                f"first {self.max_bytes:,} bytes were read."
            )
        if cut:
            of = f" of its {total:,}" if total is not None else ""
            notes.append(f"The text was cut at {self.max_chars:,}{of} characters.")
        if not text.strip():
            notes.append("The page has no readable text.")
        attributes = {"url": page.url, "title": title, "content_type": page.media_type}
        return wrap_untrusted(text, attributes, notes), [Source(url=page.url, title=title)]

    def _text(self, page: _Page) -> tuple[str | None, str, int | None]:
        """(title, text, the text's full length when known) of the page."""
        if page.media_type not in _HTML_TYPES:
            text = _decode(page.body, page.charset)
            return None, text, len(text)
        # Converting HTML costs about 3 s a megabyte; the model reads `max_chars` at most.
        # So a large page is first converted from its head, cut before a tag ("<" never
        # occurs inside a UTF-8 sequence); the whole page only when the head is too short.
        head_size = max(_HTML_HEAD_BYTES, self.max_chars * 25)
        if len(page.body) > head_size:
            at = page.body.rfind(b"<", 0, head_size)
            head = page.body[:at] if at > 0 else page.body[:head_size]
            title, text = html_to_markdown(head, base_url=page.url, encoding=page.charset)
            if len(text) > self.max_chars:
                return title, text, None
        title, text = html_to_markdown(page.body, base_url=page.url, encoding=page.charset)
        return title, text, len(text)


# -- helpers ------------------------------------------------------------------------------


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
