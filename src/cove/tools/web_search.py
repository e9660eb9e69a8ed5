"""The web_search tool: ask the user's SearXNG instance (its JSON API) and list what it found.

Only the query leaves the machine, and only for the instance the user named in COVE_SEARXNG_URL:
that host is on the tool's allow-list by itself once web_search is on (no `--allow`), and may be
on the user's own network (a SearXNG is usually self-hosted); every other host a redirect leads
to must be on the allow-list and public (`cove.net.safe_transport`). The answer is a short,
numbered list of titles, addresses and snippets: what a small model can read and cite.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..config import Settings
from ..net.safe_transport import host_port
from . import fetch_url
from .registry import Tool, ToolContext, ToolError

DEFAULT_COUNT = 5
MAX_COUNT = 10
SNIPPET_CHARS = 300
LIMITS = fetch_url.Limits(max_bytes=2 << 20, deadline_s=15.0)
FEATURE = "tool:web_search"
JSON_TYPES = frozenset({"application/json", "text/json", "text/javascript"})
_NOT_JSON = "not JSON: is json in search.formats of the SearXNG's settings.yml?"
_NO_INSTANCE = (
    "web_search needs a SearXNG instance: set COVE_SEARXNG_URL to its address "
    "(for example http://localhost:8888) with the json format enabled in its settings.yml"
)


def search_url(base: str, query: str) -> httpx.URL:
    """`{base}/search?q=…&format=json`: SearXNG's JSON API."""
    return httpx.URL(base.rstrip("/") + "/search", params={"q": query, "format": "json"})


def web_search(arguments: dict[str, Any], context: ToolContext) -> str:
    """Search the web through SearXNG; the top results as a numbered list."""
    query = " ".join(str(arguments.get("query", "")).split())
    if not query:
        raise ToolError("give a query: some words to search the web for")
    count = _count(arguments.get("count"))
    base = (context.settings or Settings.from_env()).searxng_url
    if not base:
        raise ToolError(_NO_INSTANCE)
    with fetch_url.open_client(FEATURE, trusted_hosts=[host_port(base)], limits=LIMITS) as client:
        url = search_url(base, query)
        page = fetch_url.read_page(client, url, context, LIMITS, JSON_TYPES, _NOT_JSON)
    if page.status == 403:
        raise ToolError(
            f"the SearXNG at {base} refused JSON (403): add json to search.formats in its settings.yml"
        )
    if page.status >= 400:
        raise ToolError(f"the SearXNG at {base} answered {page.status} {page.reason}".rstrip())
    return listing(query, _results(page, base), count)


def _count(value: Any) -> int:
    if value is None:
        return DEFAULT_COUNT
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"count must be a number of results (1-{MAX_COUNT})")
    return max(1, min(MAX_COUNT, int(value)))


def _results(page: fetch_url.Page, base: str) -> dict[str, Any]:
    try:
        data = json.loads(page.text())
    except ValueError:
        raise ToolError(f"the SearXNG at {base} answered something that is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
        raise ToolError(f"the SearXNG at {base} answered JSON without a results list")
    return data


def listing(query: str, data: dict[str, Any], count: int) -> str:
    """Answers SearXNG gives outright, then up to `count` results: title, URL, snippet."""
    lines = [f"Web results for {json.dumps(query, ensure_ascii=False)}:"]
    for answer in _answers(data)[:2]:
        lines.append(f"Answer: {answer}")
    shown = 0
    for result in data.get("results", []):
        entry = _entry(result)
        if entry is None:
            continue
        shown += 1
        title, url, snippet = entry
        lines.append(f"{shown}. {title}\n   {url}" + (f"\n   {snippet}" if snippet else ""))
        if shown == count:
            break
    if shown == 0 and len(lines) == 1:
        down = [str(e[0]) for e in data.get("unresponsive_engines", []) if isinstance(e, list) and e]
        why = f" (engines that did not answer: {', '.join(down[:5])})" if down else ""
        return f"No web results for {json.dumps(query, ensure_ascii=False)}{why}."
    return "\n".join(lines)


def _entry(result: Any) -> tuple[str, str, str] | None:
    if not isinstance(result, dict):
        return None
    url = _clean(result.get("url"), 500)
    if not url.startswith(("http://", "https://")):
        return None  # nothing the model could fetch or cite
    title = _clean(result.get("title"), 200) or url
    return title, url, _clean(result.get("content"), SNIPPET_CHARS)


def _answers(data: dict[str, Any]) -> list[str]:
    found = []
    for answer in data.get("answers", []) or []:
        text = answer.get("answer") if isinstance(answer, dict) else answer
        cleaned = _clean(text, SNIPPET_CHARS)
        if cleaned:
            found.append(cleaned)
    return found


def _clean(value: Any, limit: int) -> str:
    """One line of printable text, at most `limit` characters."""
    if not isinstance(value, str):
        return ""
    text = " ".join("".join(c if c.isprintable() else " " for c in value).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


TOOL = Tool(
    name="web_search",
    description=(
        "Search the web (through the user's SearXNG) for current information; returns the top "
        "results with title, address and a snippet. Use fetch_url to read one."
    ),
    parameters={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what to search for"},
            "count": {"type": "integer", "description": f"how many results (1-{MAX_COUNT}, default 5)"},
        },
        "required": ["query"],
    },
    run=web_search,
    network=True,
)

__all__ = ["TOOL", "listing", "search_url", "web_search"]
