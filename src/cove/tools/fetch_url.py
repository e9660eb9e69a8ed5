"""The fetch_url tool: a web page's readable text for the model, within caps on size, time and kind.

The page comes through the egress gate (policy and ledger) over the SSRF-safe transport
(`cove.net.safe_transport`: public addresses only, checked again on every redirect hop). The
body is read in pieces and dropped at `Limits.max_bytes` (decoded bytes, so a gzip bomb stops
there too) or at the deadline; only HTML, XHTML and text are taken, and the kind is checked
before the body is read. Text is decoded by the charset the page declares (header, BOM or
`<meta>`), with bytes that are not valid in it replaced, and HTML is reduced to its main text by
trafilatura (the `web` extra), without scripts, menus or boilerplate.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import CoveError
from ..net.addresses import url_target
from ..net.safe_transport import MAX_REDIRECTS
from .registry import Tool, ToolContext, ToolError


@dataclass(frozen=True)
class Limits:
    """How much a fetch may take: bytes of body, seconds in all and per wait, characters kept."""

    max_bytes: int = 5 << 20
    deadline_s: float = 20.0
    connect_s: float = 10.0
    read_s: float = 10.0
    max_chars: int = 12_000


LIMITS = Limits()
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
#: What fetch_url reads besides HTML ("text/*": any text).
TEXT_TYPES = frozenset(
    {"text/*", "application/json", "application/xml", "application/rss+xml", "application/atom+xml"}
)
HEADERS = {
    "Accept": "text/html, application/xhtml+xml, text/plain;q=0.9, */*;q=0.1",
    "User-Agent": "cove (a private assistant's fetch_url tool)",
}


@dataclass(frozen=True)
class Page:
    """What a fetch brought back: the final URL (after redirects), status, media type and body."""

    url: str
    status: int
    reason: str
    media_type: str
    charset: str | None
    body: bytes

    def text(self) -> str:
        """The body as text: the declared charset (BOM, header, then `<meta>`), else UTF-8, replacing
        bytes that do not decode."""
        return decode(self.body, self.charset, sniff_meta=self.media_type in HTML_TYPES)


#: The egress gate's feature for this tool's connections (its `Tool.feature`).
FEATURE = "tool:fetch_url"


def open_client(
    feature: str,
    *,
    trusted_hosts: Collection[str] = (),
    allow_private: Collection[str] = (),
    limits: Limits = LIMITS,
) -> httpx.Client:
    """A URL tool's client for `feature`: the gate's transport (policy, ledger) over the
    address-checking one.

    `trusted_hosts` are hosts the user configured by name (their SearXNG), which may be private;
    `allow_private` is for tests only (their loopback fakes).
    """
    from ..net import gate

    timeout = httpx.Timeout(limits.read_s, connect=limits.connect_s)
    return gate.client(
        feature,
        trusted_hosts=trusted_hosts,
        allow_private=allow_private,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        timeout=timeout,  # environment proxies: httpx mounts none on a client given its transport
        headers=HEADERS,
    )


def read_page(
    client: httpx.Client,
    url: str | httpx.URL,
    context: ToolContext,
    limits: Limits = LIMITS,
    accept: Collection[str] = HTML_TYPES | TEXT_TYPES,
    refusal: str = "not a web page or text; fetch_url reads only those",
) -> Page:
    """GET `url` within the limits; a page that breaks one is a ToolError that says which."""
    where = _host(url)
    try:
        with client.stream("GET", url) as response:
            media_type, charset = content_type(response.headers.get("content-type", ""))
            page = Page(
                str(response.url), response.status_code, response.reason_phrase, media_type, charset, b""
            )
            if response.status_code >= 400:
                return page  # the caller says what the status means; its body is not wanted
            _check_kind(page, accept, refusal)
            body = _read_capped(response, context, limits, time.monotonic() + limits.deadline_s)
    except httpx.TimeoutException:
        raise ToolError(f"{where} did not answer within {limits.read_s:g} s") from None
    except httpx.TooManyRedirects:
        raise ToolError(f"{where} redirected more than {MAX_REDIRECTS} times") from None
    except httpx.ConnectError as exc:
        raise ToolError(f"could not connect to {where}: {exc}") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"fetching from {where} failed: {exc or type(exc).__name__}") from None
    except CoveError as exc:  # an address the transport refused, or a host the gate did not allow
        raise ToolError(str(exc)) from None
    return Page(page.url, page.status, page.reason, page.media_type, page.charset, body)


def _read_capped(response: httpx.Response, context: ToolContext, limits: Limits, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise ToolError(
            f"the page is {int(declared):,} bytes, more than the {limits.max_bytes:,} fetch_url reads"
        )
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limits.max_bytes:
            raise ToolError(f"the page is larger than the {limits.max_bytes:,} bytes fetch_url reads")
        if time.monotonic() > deadline:
            raise ToolError(f"the page took longer than {limits.deadline_s:g} s to arrive")
        if context.cancel.is_set():
            raise ToolError("the fetch was stopped")
    return bytes(body)


def _check_kind(page: Page, accept: Collection[str], refusal: str) -> None:
    """Refuse what is not a page or text (an image, a PDF, a video) before its body is read."""
    kind = page.media_type
    if kind == "" or kind in accept or (kind.startswith("text/") and "text/*" in accept):
        return  # no type given: the text is judged when it is read
    raise ToolError(f"{page.url} is {kind}, {refusal}")


def content_type(header: str) -> tuple[str, str | None]:
    """`text/html; charset=ISO-8859-1` → ("text/html", "iso-8859-1")."""
    kind, _, rest = header.partition(";")
    charset = None
    for parameter in rest.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'").lower() or None
    return kind.strip().lower(), charset


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode(body: bytes, charset: str | None, *, sniff_meta: bool = False) -> str:
    """Text from bytes in the charset they declare; a byte that does not decode becomes U+FFFD."""
    chosen = next((name for bom, name in _BOMS if body.startswith(bom)), None) or charset
    if chosen is None and sniff_meta:
        found = _META_CHARSET.search(body[:4096])
        chosen = found.group(1).decode("ascii") if found else None
    try:
        codec = codecs.lookup(chosen or "utf-8").name
    except LookupError:
        codec = "utf-8"  # a charset Python does not know: UTF-8, the web's default, with replacements
    return body.decode(codec, errors="replace")


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def readable_text(html: str, url: str) -> tuple[str, str]:
    """The page's title and main text, without scripts, menus and boilerplate."""
    try:
        import trafilatura
    except ImportError:
        raise ToolError("fetch_url needs the `web` extra to read HTML: pip install 'cove[web]'") from None
    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True, deduplicate=True)
    if not text:  # too little for the main-content heuristics: take every visible word instead
        text = trafilatura.html2txt(html) or ""
    found = _TITLE.search(html[:65536])
    return (_one_line(found.group(1)) if found else ""), text.strip()


def _one_line(text: str) -> str:
    import html as html_module

    return " ".join(html_module.unescape(text).split())[:300]


def _host(url: str | httpx.URL) -> str:
    try:
        return httpx.URL(str(url)).host or str(url)[:100]
    except (httpx.InvalidURL, ValueError):
        return str(url)[:100]


def shortened(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    left = len(text) - max_chars
    return text[:max_chars].rstrip() + f"\n[… {left:,} more characters of the page left out]"


def fetch_url(arguments: dict[str, Any], context: ToolContext, limits: Limits = LIMITS) -> str:
    """The readable text of the page at `arguments["url"]`, headed by its title and final URL."""
    url = str(arguments["url"]).strip()
    try:
        url_target(url)  # scheme and credentials, in the clearest words; the transport checks addresses
    except CoveError as exc:
        raise ToolError(str(exc)) from None
    with open_client(FEATURE, limits=limits) as client:
        page = read_page(client, url, context, limits)
    if page.status >= 400:
        raise ToolError(f"{page.url} answered {page.status} {page.reason}".rstrip())
    text = page.text()
    title = ""
    if page.media_type in HTML_TYPES or (page.media_type == "" and text.lstrip().startswith("<")):
        title, text = readable_text(text, page.url)
    if not text:
        raise ToolError(f"{page.url} has no readable text")
    head = "\n".join(part for part in (title, page.url) if part)
    return f"{head}\n\n{shortened(text, limits.max_chars)}"


TOOL = Tool(
    name="fetch_url",
    description=(
        "Fetch a web page (http or https) and return its readable text: title, address and main "
        "content, without menus, scripts or ads. For reading a page found by web_search."
    ),
    parameters={
        "type": "object",
        "properties": {"url": {"type": "string", "description": "the page's full http(s) address"}},
        "required": ["url"],
    },
    run=fetch_url,
    network=True,
)
