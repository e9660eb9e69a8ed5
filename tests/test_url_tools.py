"""web_search and fetch_url against loopback servers the tests start: right text, or one clear error."""

from __future__ import annotations

import functools
import gzip
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from loopback_http import LoopbackServer, Reply, Seen, redirect, text

from cove.config import Settings
from cove.tools import fetch_url as fetch_module
from cove.tools import policy as tool_policy
from cove.tools import web_search as search_module
from cove.tools.fetch_url import Limits, decode, fetch_url
from cove.tools.registry import ToolContext, ToolError, builtin_tools, run_tool
from cove.tools.web_search import web_search

MB = 1 << 20

ARTICLE = """<!doctype html>
<html><head><title>Otters &amp; rivers</title>
<script>var trackingSecret = "SCRIPT-TEXT-MUST-NOT-SHOW";</script>
<style>body { color: red } .STYLE-TEXT {}</style></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a> | <a href="/shop">Shop</a></nav>
<div class="cookie-banner">We use cookies. Accept all cookies?</div>
<article>
<h1>How otters keep warm</h1>
<p>Sea otters have the densest fur of any animal, up to a million hairs per square inch, which
traps a layer of air against their skin and keeps the cold water out.</p>
<p>Unlike seals and whales they have no blubber, so they eat about a quarter of their body weight
every day to keep their metabolism running fast enough to stay warm.</p>
</article>
<script>document.write("SCRIPT-TEXT-MUST-NOT-SHOW")</script>
<footer>Copyright 2026 Example Media. All rights reserved. Privacy | Terms</footer>
</body></html>
"""


@pytest.fixture
def site() -> Iterator[LoopbackServer]:
    release = threading.Event()
    routes = {"/article": text(ARTICLE), "/hang": functools.partial(_hang, release)}
    with LoopbackServer(routes) as server:
        yield server
        release.set()


def _hang(release: threading.Event, _seen: Seen) -> Reply:
    release.wait(30)  # answers nothing until the test is over
    return Reply(200, {"Content-Type": "text/plain"}, b"late")


@pytest.fixture
def loopback_fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test switch: the tools' client may reach 127.0.0.1 (the fakes), nothing else private."""
    allowing = functools.partial(fetch_module.open_client, allow_private={"127.0.0.1"})
    monkeypatch.setattr(fetch_module, "open_client", allowing)


def _context(**settings: Any) -> ToolContext:
    return ToolContext(settings=Settings.from_env().replace(**settings))


def _fetch(url: str, limits: Limits = fetch_module.LIMITS) -> str:
    return fetch_url({"url": url}, _context(), limits)


def test_both_tools_are_built_in_and_need_the_network() -> None:
    tools = {tool.name: tool for tool in builtin_tools()}
    assert tools["fetch_url"].network and tools["web_search"].network
    assert tools["fetch_url"].feature == fetch_module.FEATURE == "tool:fetch_url"
    assert tools["web_search"].feature == search_module.FEATURE == "tool:web_search"


def test_a_page_gives_its_title_address_and_main_text_without_scripts(
    site: LoopbackServer, loopback_fakes: None
) -> None:
    outcome = run_tool(fetch_module.TOOL, {"url": site.url("/article")}, _context())
    assert outcome.ok, outcome.text
    assert outcome.text.startswith(f"Otters & rivers\n{site.url('/article')}\n\n")
    assert "densest fur of any animal" in outcome.text
    assert "no blubber" in outcome.text
    for hidden in ("SCRIPT-TEXT-MUST-NOT-SHOW", "STYLE-TEXT", "trackingSecret", "<p>"):
        assert hidden not in outcome.text


def test_without_the_test_switch_the_loopback_fake_is_refused(site: LoopbackServer) -> None:
    outcome = run_tool(fetch_module.TOOL, {"url": site.url("/article")}, _context())
    assert not outcome.ok
    assert "127.0.0.1 is loopback" in outcome.text
    assert site.seen == []


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file:///etc/passwd", "only http:// and https://"),
        ("gopher://127.0.0.1:70/", "only http:// and https://"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:127.0.0.1]:1/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://user:pw@example.com/", "user name or password"),
    ],
)
def test_urls_of_item_24_end_as_tool_errors(url: str, words: str, cove_home: Path) -> None:
    # The gate lets the tool reach these hosts: the refusal is the address check's own.
    tool_policy.enable(cove_home, "fetch_url", allow=("169.254.169.254", "2130706433", "example.com"))
    outcome = run_tool(fetch_module.TOOL, {"url": url}, _context())
    assert not outcome.ok
    assert words in outcome.text


def test_a_50_mb_page_that_says_so_is_refused_before_its_body(
    site: LoopbackServer, loopback_fakes: None
) -> None:
    site.routes["/big"] = lambda _: Reply(
        200, {"Content-Type": "text/html", "Content-Length": str(50 * MB)}, iter([b"x" * MB] * 50)
    )
    outcome = run_tool(fetch_module.TOOL, {"url": site.url("/big")}, _context())
    assert not outcome.ok
    assert "52,428,800 bytes, more than the 5,242,880 fetch_url reads" in outcome.text


def test_a_50_mb_page_that_does_not_say_so_is_cut_at_the_cap(
    site: LoopbackServer, loopback_fakes: None
) -> None:
    site.routes["/big"] = lambda _: Reply(200, {"Content-Type": "text/plain"}, iter([b"x" * MB] * 50))
    started = time.monotonic()
    outcome = run_tool(fetch_module.TOOL, {"url": site.url("/big")}, _context())
    assert not outcome.ok
    assert "larger than the 5,242,880 bytes fetch_url reads" in outcome.text
    assert time.monotonic() - started < 10


def test_a_compressed_bomb_is_cut_at_the_cap_of_decoded_bytes(
    site: LoopbackServer, loopback_fakes: None
) -> None:
    bomb = gzip.compress(b"\0" * (20 * MB), compresslevel=9)
    assert len(bomb) < MB
    site.routes["/bomb"] = lambda _: Reply(
        200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, bomb
    )
    with pytest.raises(ToolError, match="larger than the 5,242,880 bytes"):
        _fetch(site.url("/bomb"))


def test_a_server_that_never_answers_times_out(site: LoopbackServer, loopback_fakes: None) -> None:
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"127\.0\.0\.1 did not answer within 0\.5 s"):
        _fetch(site.url("/hang"), Limits(read_s=0.5))
    assert time.monotonic() - started < 5


def test_a_page_that_trickles_in_stops_at_the_deadline(site: LoopbackServer, loopback_fakes: None) -> None:
    def trickle() -> Iterator[bytes]:
        for _ in range(100):
            yield b"<p>drip</p>"
            time.sleep(0.1)

    site.routes["/drip"] = lambda _: Reply(200, {"Content-Type": "text/html"}, trickle())
    started = time.monotonic()
    with pytest.raises(ToolError, match="took longer than 1 s"):
        _fetch(site.url("/drip"), Limits(deadline_s=1.0, read_s=5.0))
    assert time.monotonic() - started < 4


def test_invalid_utf8_is_read_with_replacements(site: LoopbackServer, loopback_fakes: None) -> None:
    site.routes["/bad"] = text(b"caf\xe9 au lait \xff\xfe and the rest", "text/plain; charset=utf-8")
    answer = _fetch(site.url("/bad"))
    assert "caf\ufffd au lait \ufffd\ufffd and the rest" in answer
    answer.encode("utf-8")  # what the model gets is valid UTF-8


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<html><head><meta charset='iso-8859-1'><title>Caf\xe9</title></head></html>", "text/html", "Café"),
        (b"na\xefve r\xe9sum\xe9", "text/plain; charset=windows-1252", "naïve résumé"),
        (b"\xef\xbb\xbfBOM first", "text/plain; charset=iso-8859-1", "BOM first"),
        ("καλημέρα".encode(), "text/plain; charset=x-no-such-charset", "καλημέρα"),
        ("plain utf-8 ✓".encode(), "text/plain", "plain utf-8 ✓"),
    ],
)
def test_the_declared_charset_is_used(body: bytes, content_type: str, expected: str) -> None:
    kind, charset = fetch_module.content_type(content_type)
    assert expected in decode(body, charset, sniff_meta=kind == "text/html")


def test_a_page_in_a_declared_charset_reads_right(site: LoopbackServer, loopback_fakes: None) -> None:
    page = (
        "<html><head><title>Crème brûlée</title></head><body><p>Une crème brûlée parfaite.</p></body></html>"
    )
    site.routes["/fr"] = text(page.encode("iso-8859-1"), "text/html; charset=ISO-8859-1")
    answer = _fetch(site.url("/fr"))
    assert answer.startswith("Crème brûlée\n") and "Une crème brûlée parfaite." in answer


def test_a_redirect_chain_is_followed_to_the_page(site: LoopbackServer, loopback_fakes: None) -> None:
    site.routes.update({"/a": redirect("/b"), "/b": redirect(site.url("/c")), "/c": redirect("/article")})
    answer = _fetch(site.url("/a"))
    assert answer.splitlines()[1] == site.url("/article")
    assert "densest fur" in answer


def test_a_redirect_chain_that_goes_on_stops(site: LoopbackServer, loopback_fakes: None) -> None:
    site.routes.update({f"/r{i}": redirect(f"/r{i + 1}") for i in range(10)})
    with pytest.raises(ToolError, match="redirected more than 5 times"):
        _fetch(site.url("/r0"))


def test_a_redirect_to_a_private_address_is_refused(site: LoopbackServer, loopback_fakes: None) -> None:
    with LoopbackServer({"/": text("internal admin")}, host="127.0.0.2") as inner:
        site.routes["/go"] = redirect(inner.url("/"))
        with pytest.raises(ToolError, match=r"127\.0\.0\.2 is loopback"):
            _fetch(site.url("/go"))
        assert inner.seen == []


@pytest.mark.parametrize("kind", ["image/png", "application/pdf", "application/octet-stream", "video/mp4"])
def test_what_is_not_a_page_is_refused_by_its_type(
    site: LoopbackServer, loopback_fakes: None, kind: str
) -> None:
    site.routes["/file"] = text(b"\x89PNG....", kind)
    with pytest.raises(ToolError, match=f"is {kind}, not a web page or text"):
        _fetch(site.url("/file"))


def test_an_error_status_is_said(site: LoopbackServer, loopback_fakes: None) -> None:
    with pytest.raises(ToolError, match="answered 404 Not Found"):
        _fetch(site.url("/missing"))


def test_long_text_is_shortened_with_a_note(site: LoopbackServer, loopback_fakes: None) -> None:
    site.routes["/long"] = text("word " * 10_000, "text/plain")
    answer = _fetch(site.url("/long"), Limits(max_chars=1000))
    assert "more characters of the page left out]" in answer
    assert len(answer) < 1200


def test_without_the_extractor_the_tool_says_what_to_install(
    site: LoopbackServer, loopback_fakes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "trafilatura", None)
    with pytest.raises(ToolError, match=r"pip install 'cove\[web\]'"):
        _fetch(site.url("/article"))


# web_search, against a fake SearXNG


def _searxng(seen_queries: list[dict[str, list[str]]], results: list[Any], **extra: Any) -> Any:
    def answer(seen: Seen) -> Reply:
        seen_queries.append(parse_qs(urlsplit(seen.path).query))
        body = json.dumps({"query": "q", "results": results, **extra}).encode()
        return Reply(200, {"Content-Type": "application/json"}, body)

    return answer


RESULTS = [
    {"title": "Otter - Wikipedia", "url": "https://en.wikipedia.org/wiki/Otter", "content": "Otters are…"},
    {"title": "Sea otter facts", "url": "https://example.org/otters", "content": "x" * 1000},
    {"title": "a javascript result", "url": "javascript:alert(1)", "content": "dropped"},
    {"title": "Bell\x07 and\nnewline", "url": "https://example.net/", "content": "  spaced \t out  "},
    "not even a dict",
]


def _search(searxng: LoopbackServer, **arguments: Any) -> str:
    context = ToolContext(settings=Settings.from_env().replace(searxng_url=searxng.url("")))
    return web_search({"query": "sea otters", **arguments}, context)


def test_web_search_lists_titles_urls_and_snippets(site: LoopbackServer) -> None:
    queries: list[dict[str, list[str]]] = []
    site.routes["/search"] = _searxng(queries, RESULTS, answers=["Otters are mustelids."])
    answer = _search(site)
    assert queries == [{"q": ["sea otters"], "format": ["json"]}]
    lines = answer.splitlines()
    assert lines[0] == 'Web results for "sea otters":'
    assert lines[1] == "Answer: Otters are mustelids."
    assert lines[2:4] == ["1. Otter - Wikipedia", "   https://en.wikipedia.org/wiki/Otter"]
    assert "javascript:" not in answer and "dropped" not in answer
    assert "3. Bell and newline\n   https://example.net/\n   spaced out" in answer
    assert max(len(line) for line in lines) <= 310


def test_the_configured_instance_may_be_on_loopback_without_the_test_switch(site: LoopbackServer) -> None:
    # The user named this host in COVE_SEARXNG_URL, so it is reached though it is not public.
    site.routes["/search"] = _searxng([], RESULTS)
    assert "1. Otter - Wikipedia" in _search(site)


def test_but_a_redirect_from_it_to_another_private_address_is_refused(site: LoopbackServer) -> None:
    with LoopbackServer({"/": text("{}", "application/json")}, host="127.0.0.2") as inner:
        site.routes["/search"] = redirect(inner.url("/"))
        with pytest.raises(ToolError, match=r"127\.0\.0\.2 is loopback"):
            _search(site)
        assert inner.seen == []


def test_count_is_bounded(site: LoopbackServer) -> None:
    many = [{"title": f"r{i}", "url": f"https://example.com/{i}", "content": ""} for i in range(30)]
    site.routes["/search"] = _searxng([], many)
    assert "2. r1" in _search(site, count=2) and "3. r2" not in _search(site, count=2)
    assert "10. r9" in _search(site, count=500) and "11." not in _search(site, count=500)


def test_no_results_is_an_answer_not_an_error(site: LoopbackServer) -> None:
    site.routes["/search"] = _searxng([], [], unresponsive_engines=[["google", "timeout"]])
    assert _search(site) == 'No web results for "sea otters" (engines that did not answer: google).'


def test_web_search_without_an_instance_says_how_to_set_one() -> None:
    with pytest.raises(ToolError, match="set COVE_SEARXNG_URL"):
        web_search({"query": "otters"}, ToolContext(settings=Settings.from_env()))


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (
            Reply(403, {"Content-Type": "text/html"}, b"Forbidden"),
            "refused JSON .403.: add json to search.formats",
        ),
        (Reply(500, {"Content-Type": "text/html"}, b"oops"), "answered 500 Internal Server Error"),
        (Reply(200, {"Content-Type": "text/html"}, b"<html>"), "is text/html, not JSON"),
        (Reply(200, {"Content-Type": "application/json"}, b"{not json"), "not JSON"),
        (Reply(200, {"Content-Type": "application/json"}, b"[1, 2]"), "without a results list"),
        (Reply(200, {"Content-Type": "application/json"}, b"\xff\xfe{"), "not JSON"),
    ],
)
def test_a_broken_instance_is_one_clear_error(site: LoopbackServer, reply: Reply, words: str) -> None:
    site.routes["/search"] = lambda _: reply
    with pytest.raises(ToolError, match=words):
        _search(site)


def test_a_hanging_instance_times_out(site: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "LIMITS", Limits(read_s=0.5))
    site.routes["/search"] = site.routes["/hang"]
    with pytest.raises(ToolError, match=r"did not answer within 0\.5 s"):
        _search(site)


def test_an_empty_query_is_refused() -> None:
    outcome = run_tool(search_module.TOOL, {"query": "   "}, ToolContext(settings=Settings.from_env()))
    assert not outcome.ok and "give a query" in outcome.text


def test_the_tools_go_through_the_egress_gate(cove_home: Path) -> None:
    # fetch_url is off until the user enables it: the gate refuses before any connection.
    outcome = run_tool(fetch_module.TOOL, {"url": "http://93.184.215.14/"}, _context())
    assert not outcome.ok and "tool fetch_url is off" in outcome.text
    tool_policy.enable(cove_home, "fetch_url", allow=("example.org",))
    outcome = run_tool(fetch_module.TOOL, {"url": "http://93.184.215.14/"}, _context())
    assert not outcome.ok and "not on fetch_url's allow-list" in outcome.text


def test_environment_proxies_do_not_carry_a_tool_past_the_checks(
    site: LoopbackServer, loopback_fakes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackServer({}) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url("/"))
        assert "densest fur" in _fetch(site.url("/article"))
        assert proxy.seen == []
