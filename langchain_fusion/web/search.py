"""`WebSearchTool`: web search for a model, through a pluggable provider.

The providers (`SearchProvider`, the built-in `SearxngSearch` and `BraveSearch`, and
`default_search_provider`, which picks one from the environment) are
`langchain_fusion.web.search_providers`, and are importable from here too. With no
provider configured, `WebSearchTool.from_env` is None, and search is simply not offered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, Field

from langchain_fusion.contract.result import Source
from langchain_fusion.web.content import collapse_whitespace, wrap_untrusted
from langchain_fusion.web.search_providers import (
    BRAVE_API_KEY_ENV,
    SEARXNG_URL_ENV,
    BraveSearch,
    SearchError,
    SearchProvider,
    SearchResult,
    SearxngSearch,
    default_search_provider,
)

__all__ = [
    "BRAVE_API_KEY_ENV",
    "SEARCH_TOOL_DESCRIPTION",
    "SEARCH_TOOL_NAME",
    "SEARXNG_URL_ENV",
    "BraveSearch",
    "SearchError",
    "SearchProvider",
    "SearchResult",
    "SearxngSearch",
    "WebSearchInput",
    "WebSearchTool",
    "default_search_provider",
]

SEARCH_TOOL_NAME = "web_search"
SEARCH_TOOL_DESCRIPTION = (
    "Search the web. Give a query; get a numbered list of results, each with its title, URL "
    "and a snippet. Use it to find current facts and sources; read a promising result in "
    "full with web_fetch."
)


class WebSearchInput(BaseModel):
    """What the model passes to ``web_search``."""

    query: str = Field(description="What to search the web for.")


class WebSearchTool(BaseTool):
    """Web search for a model, through a `SearchProvider`.

    The content the model reads is a numbered list of results (title, URL, snippet)
    inside ``<untrusted_web_content>`` tags; the artifact is a `Source` per result.
    Provider failures come back as tool messages (``status="error"``).

    Example:
        ```python
        from langchain_fusion.web import SearxngSearch, WebSearchTool

        search = WebSearchTool(provider=SearxngSearch("http://localhost:8888"))
        search = WebSearchTool.from_env()   # None when nothing is configured
        ```
    """

    name: str = SEARCH_TOOL_NAME
    description: str = SEARCH_TOOL_DESCRIPTION
    args_schema: type[BaseModel] = WebSearchInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool = True
    provider: SearchProvider
    max_results: int = Field(default=5, ge=1, le=20)
    """Results given to the model per search."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> WebSearchTool | None:
        """A tool with `default_search_provider`, or None when no provider is configured."""
        provider = default_search_provider(environ)
        return None if provider is None else cls(provider=provider, **kwargs)

    def _run(
        self, query: str, run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[str, list[Source]]:
        """Search; returns (content for the model, a `Source` per result)."""
        query = _checked_query(query)
        try:
            results = self.provider.search(query, self.max_results)
        except SearchError as error:
            raise ToolException(str(error)) from None
        return _render(query, results[: self.max_results])

    async def _arun(
        self, query: str, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[str, list[Source]]:
        """Async `_run`."""
        query = _checked_query(query)
        try:
            results = await self.provider.asearch(query, self.max_results)
        except SearchError as error:
            raise ToolException(str(error)) from None
        return _render(query, results[: self.max_results])


def _checked_query(query: str) -> str:
    query = collapse_whitespace(query)
    if not query:
        raise ToolException("web_search needs a non-empty query")
    return query


def _render(query: str, results: list[SearchResult]) -> tuple[str, list[Source]]:
    if not results:
        text = "(no results)"
    else:
        lines: list[str] = []
        for number, result in enumerate(results, start=1):
            lines.append(f"{number}. {result.title}")
            lines.append(f"   {result.url}")
            if result.snippet:
                lines.append(f"   {result.snippet}")
        text = "\n".join(lines)
    content = wrap_untrusted(text, {"source": "web_search", "query": query})
    return content, [Source(url=result.url, title=result.title) for result in results]
