"""`WebFetchTool`: read one web page, safely, as text a model can use.

Every hop (the URL, then each redirect, followed by hand) is parsed strictly, its host
resolved once and every address checked (`langchain_fusion.web.addresses`) before any
connection; the connection then goes to the checked address, with the original ``Host``
header and, for https, the original name as SNI and for certificate checks, so a second DNS
answer cannot redirect it (DNS rebinding). Bodies are streamed up to a byte limit, under
a total deadline, and only text types are read. HTML becomes Markdown; the text reaches
the model inside ``<untrusted_web_content>`` tags.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, Field, PrivateAttr, model_validator

from langchain_fusion.contract.result import Source
from langchain_fusion.web.addresses import aresolve, resolve
from langchain_fusion.web.content import html_to_markdown, truncate_text, wrap_untrusted
from langchain_fusion.web.response import (
    _HTML_TYPES,
    TEXT_CONTENT_TYPES,
    _accepted_type,
    _aread,
    _Body,
    _checked_status,
    _DeadlineExceeded,
    _decode,
    _describe,
    _Hops,
    _Page,
    _page,
    _read,
)
from langchain_fusion.web.safety import AllowList, IPAddress, Target

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

_HTML_HEAD_BYTES = 500_000
_ACCEPT = (
    "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.9,"
    "application/json;q=0.8,application/xml;q=0.8,text/xml;q=0.8,*/*;q=0.1"
)


class WebFetchInput(BaseModel):
    """What the model passes to ``web_fetch``."""

    url: str = Field(description="The http or https URL of the page to read.")


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
