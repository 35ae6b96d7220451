"""The search providers behind `WebSearchTool`: SearXNG, Brave, or your own.

A provider is anything with ``search(query, max_results)`` and ``asearch(...)`` returning
`SearchResult`s (`SearchProvider`). Two are built in: `SearxngSearch`, a self-hosted
SearXNG instance through its JSON API, and `BraveSearch`, the Brave Search API (used when
``BRAVE_SEARCH_API_KEY`` is set). `default_search_provider` picks one from the environment,
or None: then `WebSearchTool.from_env` is None too, and search is simply not offered.

A provider's own URL is trusted configuration: it is not subject to `web_fetch`'s
allow-list (a SearXNG instance on the intranet is the usual case).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel

from langchain_fusion.web.content import collapse_whitespace, html_to_text

__all__ = [
    "BRAVE_API_KEY_ENV",
    "BRAVE_BASE_URL",
    "DEFAULT_TIMEOUT",
    "SEARXNG_URL_ENV",
    "BraveSearch",
    "SearchError",
    "SearchProvider",
    "SearchResult",
    "SearxngSearch",
    "default_search_provider",
]

SEARXNG_URL_ENV = "SEARXNG_URL"
BRAVE_API_KEY_ENV = "BRAVE_SEARCH_API_KEY"
BRAVE_BASE_URL = "https://api.search.brave.com/res/v1"
DEFAULT_TIMEOUT = 15.0
_MAX_TITLE = 200
_MAX_SNIPPET = 500
_ERROR_BODY = 200


class SearchResult(BaseModel):
    """One search hit."""

    title: str
    url: str
    snippet: str = ""


class SearchError(Exception):
    """A provider failed (unreachable, an HTTP error, an answer it could not read)."""


@runtime_checkable
class SearchProvider(Protocol):
    """What `WebSearchTool` needs from a search backend."""

    name: str
    """Shown in messages, e.g. ``"SearXNG"``."""

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        """Up to ``max_results`` results for ``query``; raises `SearchError`."""
        ...

    async def asearch(self, query: str, max_results: int) -> list[SearchResult]:
        """Async `search`."""
        ...


@dataclass(frozen=True)
class _Call:
    """One HTTP request to a provider."""

    url: str
    params: dict[str, str]
    headers: dict[str, str]


class _HTTPProvider:
    """Sync and async HTTP plumbing shared by the built-in providers."""

    name = "search"
    timeout: float

    def _call(self, query: str, max_results: int) -> _Call:
        raise NotImplementedError

    def _parse(self, data: Any, max_results: int) -> list[SearchResult]:
        raise NotImplementedError

    def _hint(self, status_code: int) -> str:
        """Advice added to an HTTP error message."""
        return ""

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        """Up to ``max_results`` results for ``query``; raises `SearchError`."""
        call = self._call(query, max_results)
        try:
            with httpx.Client(timeout=self.timeout) as client:
                response = client.get(call.url, params=call.params, headers=call.headers)
        except httpx.HTTPError as error:
            raise self._unreachable(call, error) from None
        return self._results(call, response, max_results)

    async def asearch(self, query: str, max_results: int) -> list[SearchResult]:
        """Async `search`."""
        call = self._call(query, max_results)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(call.url, params=call.params, headers=call.headers)
        except httpx.HTTPError as error:
            raise self._unreachable(call, error) from None
        return self._results(call, response, max_results)

    def _unreachable(self, call: _Call, error: httpx.HTTPError) -> SearchError:
        kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
        detail = str(error).strip() or type(error).__name__
        return SearchError(f"{self.name} search {kind}: {call.url}: {detail}")

    def _results(
        self, call: _Call, response: httpx.Response, max_results: int
    ) -> list[SearchResult]:
        if response.status_code >= 400:
            body = collapse_whitespace(response.text)[:_ERROR_BODY]
            hint = self._hint(response.status_code)
            raise SearchError(
                f"{self.name} search failed: HTTP {response.status_code} "
                f"{response.reason_phrase} from {call.url}"
                + (f": {body}" if body else "")
                + (f" ({hint})" if hint else "")
            )
        try:
            data = response.json()
        except ValueError:
            raise SearchError(
                f"{self.name} search failed: {call.url} did not answer with JSON"
            ) from None
        try:
            return _clean(self._parse(data, max_results), max_results)
        except (KeyError, TypeError, AttributeError) as error:
            raise SearchError(
                f"{self.name} search failed: unexpected answer from {call.url}: {error!r}"
            ) from None


class SearxngSearch(_HTTPProvider):
    """A SearXNG instance through its JSON API: ``GET {base_url}/search?q=...&format=json``.

    The instance must allow the ``json`` format (``search.formats`` in its
    ``settings.yml``). Optional ``language`` (``"en"``), ``categories``
    (``"general"``, ``"news"``, ...), ``engines`` and extra ``headers`` (a token for an
    instance behind a proxy) are passed through.
    """

    name = "SearXNG"

    def __init__(
        self,
        base_url: str,
        *,
        language: str | None = None,
        categories: str | None = None,
        engines: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """A provider for the instance at ``base_url`` (e.g. ``http://searxng:8080``)."""
        if not base_url.strip().lower().startswith(("http://", "https://")):
            raise ValueError(f"SearXNG base_url must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.strip().rstrip("/")
        self.language = language
        self.categories = categories
        self.engines = engines
        self.headers = dict(headers or {})
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SearxngSearch({self.base_url!r})"

    def _call(self, query: str, max_results: int) -> _Call:
        params = {"q": query, "format": "json"}
        for key, value in (
            ("language", self.language),
            ("categories", self.categories),
            ("engines", self.engines),
        ):
            if value:
                params[key] = value
        headers = {"Accept": "application/json", **self.headers}
        return _Call(f"{self.base_url}/search", params, headers)

    def _parse(self, data: Any, max_results: int) -> list[SearchResult]:
        return [
            SearchResult(
                title=str(item.get("title") or ""),
                url=str(item.get("url") or ""),
                snippet=str(item.get("content") or ""),
            )
            for item in data["results"]
            if isinstance(item, dict)
        ]

    def _hint(self, status_code: int) -> str:
        if status_code == 403:
            return "does the instance allow the json format? see search.formats in settings.yml"
        if status_code == 429:
            return "the instance's rate limiter refused the request"
        return ""


class BraveSearch(_HTTPProvider):
    """The Brave Search API's web search: ``GET {base_url}/web/search?q=...&count=N``.

    Authenticated with the ``X-Subscription-Token`` header (``api_key``, or
    ``BRAVE_SEARCH_API_KEY``). ``base_url`` defaults to
    ``https://api.search.brave.com/res/v1``; override it for a proxy or a test stand-in.
    The API returns at most 20 results a request.
    """

    name = "Brave"
    MAX_COUNT = 20

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = BRAVE_BASE_URL,
        country: str | None = None,
        search_lang: str | None = None,
        safesearch: Literal["off", "moderate", "strict"] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """A provider with ``api_key`` (default: the ``BRAVE_SEARCH_API_KEY`` variable)."""
        key = api_key if api_key is not None else os.environ.get(BRAVE_API_KEY_ENV, "")
        if not key.strip():
            raise ValueError(f"BraveSearch needs an api_key (or {BRAVE_API_KEY_ENV})")
        self._api_key = key.strip()
        self.base_url = base_url.strip().rstrip("/")
        self.country = country
        self.search_lang = search_lang
        self.safesearch = safesearch
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"BraveSearch(base_url={self.base_url!r})"  # never the key

    def _call(self, query: str, max_results: int) -> _Call:
        params = {"q": query, "count": str(max(1, min(max_results, self.MAX_COUNT)))}
        for key, value in (
            ("country", self.country),
            ("search_lang", self.search_lang),
            ("safesearch", self.safesearch),
        ):
            if value:
                params[key] = value
        headers = {
            "Accept": "application/json",
            "X-Subscription-Token": self._api_key,
        }
        return _Call(f"{self.base_url}/web/search", params, headers)

    def _parse(self, data: Any, max_results: int) -> list[SearchResult]:
        web = data.get("web") or {}
        return [
            SearchResult(
                title=html_to_text(str(item.get("title") or "")),
                url=str(item.get("url") or ""),
                snippet=html_to_text(str(item.get("description") or "")),
            )
            for item in web.get("results") or []
            if isinstance(item, dict)
        ]

    def _hint(self, status_code: int) -> str:
        if status_code in (401, 403):
            return f"check the API key ({BRAVE_API_KEY_ENV})"
        if status_code == 429:
            return "rate limited: the plan's requests per second or month are used up"
        return ""


def _clean(results: list[SearchResult], max_results: int) -> list[SearchResult]:
    """http(s) results only, one per URL, titles and snippets on one line and bounded."""
    kept: list[SearchResult] = []
    seen: set[str] = set()
    for result in results:
        url = result.url.strip()
        if not url.lower().startswith(("http://", "https://")) or url in seen:
            continue
        seen.add(url)
        kept.append(
            SearchResult(
                title=collapse_whitespace(result.title)[:_MAX_TITLE] or url,
                url=url,
                snippet=collapse_whitespace(result.snippet)[:_MAX_SNIPPET],
            )
        )
        if len(kept) >= max_results:
            break
    return kept


def default_search_provider(environ: Mapping[str, str] | None = None) -> SearchProvider | None:
    """The provider the environment configures, else None.

    ``SEARXNG_URL`` (a SearXNG instance) is preferred; else ``BRAVE_SEARCH_API_KEY``
    gives `BraveSearch`. ``environ`` defaults to ``os.environ``.
    """
    env = os.environ if environ is None else environ
    searxng = env.get(SEARXNG_URL_ENV, "").strip()
    if searxng:
        return SearxngSearch(searxng)
    brave_key = env.get(BRAVE_API_KEY_ENV, "").strip()
    if brave_key:
        return BraveSearch(brave_key)
    return None
