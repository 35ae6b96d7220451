"""Web research tools for panelists and the judge: `WebSearchTool` and `WebFetchTool`.

Both are LangChain tools (sync and async) whose content is what a model reads, delimited
as untrusted web data, and whose artifact is the list of `Source`s retrieved. Failures come
back as tool messages. `default_research_tools` gives the set to offer: search when a
provider is configured (``SEARXNG_URL`` or ``BRAVE_SEARCH_API_KEY``), and fetch always.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from langchain_core.tools import BaseTool

from langchain_fusion.web.addresses import address_problem, check_addresses
from langchain_fusion.web.content import (
    UNTRUSTED_PREAMBLE,
    UNTRUSTED_TAG,
    escape_untrusted,
    html_to_markdown,
    wrap_untrusted,
)
from langchain_fusion.web.fetch import (
    FETCH_TOOL_NAME,
    TEXT_CONTENT_TYPES,
    WebFetchInput,
    WebFetchTool,
)
from langchain_fusion.web.safety import (
    AllowList,
    Target,
    UnsafeURLError,
    normalize_host,
    parse_ipv4_literal,
    parse_url,
)
from langchain_fusion.web.search import (
    SEARCH_TOOL_NAME,
    BraveSearch,
    SearchError,
    SearchProvider,
    SearchResult,
    SearxngSearch,
    WebSearchInput,
    WebSearchTool,
    default_search_provider,
)

__all__ = [
    "FETCH_TOOL_NAME",
    "SEARCH_TOOL_NAME",
    "TEXT_CONTENT_TYPES",
    "UNTRUSTED_PREAMBLE",
    "UNTRUSTED_TAG",
    "AllowList",
    "BraveSearch",
    "SearchError",
    "SearchProvider",
    "SearchResult",
    "SearxngSearch",
    "Target",
    "UnsafeURLError",
    "WebFetchInput",
    "WebFetchTool",
    "WebSearchInput",
    "WebSearchTool",
    "address_problem",
    "check_addresses",
    "default_research_tools",
    "default_search_provider",
    "escape_untrusted",
    "html_to_markdown",
    "normalize_host",
    "parse_ipv4_literal",
    "parse_url",
    "wrap_untrusted",
]


def default_research_tools(
    allow: Iterable[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> list[BaseTool]:
    """The web tools to offer a panelist: ``[WebSearchTool, WebFetchTool]``.

    Search is included only when the environment configures a provider
    (`default_search_provider`); with none, search is simply not offered. Fetch reaches
    public addresses, plus what ``allow`` names (see `AllowList`).
    """
    tools: list[BaseTool] = []
    search = WebSearchTool.from_env(environ)
    if search is not None:
        tools.append(search)
    tools.append(WebFetchTool(allow=list(allow or [])))
    return tools
