"""The web chat's knowledge base in a real Chromium, on the fake engine: the composer's collection
picker and what a turn sends, cited sources under streamed and reopened answers, [n] links that
open them, passages kept inert as text, and axe-core on all of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kb_helpers import FAKE_MODEL
from test_web_chat_browser import AXE, Site, axe, conversation, open_page
from test_web_chat_browser import site as site

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")
expect = sync_api.expect
pytestmark = [pytest.mark.browser]

EVIL = '<img src=x onerror="window.pwned=1">'
CITATIONS = [
    {"n": 1, "file": "harbour.pdf", "page": 3, "heading": None, "text": "Seals rest on the north pier.",
     "score": 0.9, "collection": "notes", "chunk_id": 11, "start": 0, "end": 29, "whole": False},
    {"n": 2, "file": "<b>tides</b>.md", "page": None, "heading": "Spring tides", "text": EVIL,
     "score": 0.5, "collection": "notes", "chunk_id": 12, "start": 0, "end": 40, "whole": False},
]  # fmt: skip
ANSWER = "Seals rest on the pier [1], at spring tides too [2]. Not [3]."


def kb_page(
    site: Site,
    collections: list[str],
    sent: list[dict[str, Any]],
    bypass_csp: bool = False,
    width: int = 1280,
) -> Any:
    """A page whose knowledge base holds `collections` and whose /api/chat answers ANSWER citing
    CITATIONS; each chat body sent is kept in `sent`."""
    context = site.browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=bypass_csp)
    context.route(
        "**/api/cove/kb", lambda r: r.fulfill(json={"collections": [{"name": n} for n in collections]})
    )

    def chat(route: Any) -> None:
        sent.append(json.loads(route.request.post_data))
        lines = [
            {"message": {"role": "assistant", "content": w + " "}, "done": False} for w in ANSWER.split(" ")
        ]
        lines.append({"message": {"role": "assistant", "content": ""}, "done": True, "citations": CITATIONS})
        route.fulfill(body="".join(json.dumps(x) + "\n" for x in lines), content_type="application/x-ndjson")

    context.route("**/api/chat", chat)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(site.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    return page


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    pages: list[Any] = []
    yield pages
    for page in pages:
        errors = page.errors
        page.context.close()
        assert errors == []


def ask(page: Any, text: str) -> Any:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    answer = page.locator("#messages > .msg.assistant").last
    answer.locator(".msg-foot .act-copy").wait_for()
    expect(page.locator("#send")).to_have_text("Send")
    return answer


def test_the_picker_is_hidden_without_collections(site: Site) -> None:
    page = open_page(site)
    try:
        expect(page.locator("#kb-box")).to_be_hidden()
    finally:
        page.context.close()


def test_the_chosen_collection_and_strictness_go_with_every_turn(site: Site, closing: list[Any]) -> None:
    sent: list[dict[str, Any]] = []
    page = kb_page(site, ["notes", "work"], sent)
    closing.append(page)
    expect(page.locator("#kb-box")).to_be_visible()
    expect(page.locator("#kb option")).to_have_text(["No documents", "notes", "work"])
    expect(page.locator("#kb")).to_have_value("")
    expect(page.locator("#kb-strict")).to_be_disabled()
    ask(page, "no documents")
    page.select_option("#kb", "work")
    page.check("#kb-strict")
    ask(page, "from work, strictly")
    page.uncheck("#kb-strict")
    ask(page, "from work")
    assert "collections" not in sent[0] and "cove_strict" not in sent[0]
    assert (sent[1]["collections"], sent[1]["cove_strict"]) == (["work"], True)
    assert (sent[2]["collections"], sent[2]["cove_strict"]) == (["work"], False)


def test_the_picker_fits_a_narrow_screen(site: Site, closing: list[Any]) -> None:
    page = kb_page(site, ["a-collection-with-a-long-name"], [], width=375)
    closing.append(page)
    page.click("#menu")  # the conversation list covers the chat on a phone until it is hidden
    for part in ("#kb", "#kb-strict", "#send", "#model"):
        box = page.locator(part).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, (part, box)


def test_the_knowledge_view_explains_a_bad_name(site: Site) -> None:
    page = open_page(site)
    try:
        page.click(".top nav button[data-view='knowledge']")
        page.fill("#kb-new-name", "../etc")
        page.click("#kb-create button[type=submit]")
        expect(page.locator("#kb-status")).to_contain_text("invalid collection name")
        expect(page.locator("#kb-new-name")).to_have_value("../etc")  # kept, to correct
        assert page.errors == []
    finally:
        page.context.close()


def check_sources(page: Any, answer: Any) -> None:
    """Sources listed, [n] linked to them, and every passage and name shown as text only."""
    sources = answer.locator(".sources details")
    expect(sources.locator("summary")).to_have_text(
        ["[1] harbour.pdf, page 3", "[2] <b>tides</b>.md, Spring tides"]
    )
    expect(answer.locator(".sources details[open]")).to_have_count(0)
    links = answer.locator(".md a.cite")
    expect(links).to_have_text(["[1]", "[2]"])  # [3] cites nothing: it stays text
    links.nth(1).click()
    expect(sources.nth(1)).to_have_attribute("open", "")
    expect(sources.nth(1).locator("summary")).to_be_focused()
    expect(sources.nth(1).locator(".passage")).to_have_text(EVIL)
    assert answer.locator(".sources img, .sources b").count() == 0
    assert page.evaluate("() => window.pwned") is None
    sources.nth(0).locator("summary").click()
    expect(sources.nth(0).locator(".passage")).to_have_text("Seals rest on the north pier.")


def test_a_streamed_answer_shows_its_sources(site: Site, closing: list[Any]) -> None:
    page = kb_page(site, ["notes"], [])
    closing.append(page)
    page.select_option("#kb", "notes")
    check_sources(page, ask(page, "where are the seals?"))


def test_a_reopened_answer_shows_its_sources(site: Site) -> None:
    chat = conversation("kbcite000001", "Seals", 1)
    chat["messages"][1]["content"] = ANSWER
    chat["messages"][1]["citations"] = CITATIONS
    site.load(chat)
    page = open_page(site)
    try:
        page.locator("#conversations li[data-id='kbcite000001'] .conv-open").click()
        answer = page.locator("#messages > .msg.assistant").first
        answer.locator(".sources").wait_for()
        check_sources(page, answer)
        assert page.errors == []
    finally:
        page.context.close()


@pytest.mark.skipif(not AXE.exists(), reason="needs axe-core: npm ci --prefix tests/web")
def test_axe_finds_nothing_serious_in_the_picker_and_sources(site: Site, closing: list[Any]) -> None:
    page = kb_page(site, ["notes"], [], bypass_csp=True)
    closing.append(page)
    page.select_option("#kb", "notes")
    answer = ask(page, "where are the seals?")
    answer.locator(".sources summary").first.click()
    assert axe(page) == []


# -- the Knowledge view, on the real knowledge routes (a hashed bag-of-words embedder) ----------


def test_the_knowledge_view_creates_a_collection(site: Site) -> None:
    page = open_page(site)
    try:
        page.click(".top nav button[data-view='knowledge']")
        page.fill("#kb-new-name", "created")
        page.click("#kb-create button[type=submit]")
        expect(page.locator("#kb-status")).to_have_text("Created created.")
        expect(page.locator("#kb-list section[data-collection='created'] h3")).to_have_text("created")
        expect(page.locator("#kb option")).to_contain_text(["No documents", "created"])  # the composer's too
        assert page.errors == []
    finally:
        page.context.close()


def test_files_uploaded_in_the_knowledge_view_are_indexed_and_searchable(site: Site, tmp_path: Any) -> None:
    made = httpx.post(site.url + "/api/cove/kb", json={"name": "docs", "model": FAKE_MODEL})
    assert made.status_code == 201, made.text
    (tmp_path / "harbour.txt").write_text("Seals rest on the north pier every morning.", "utf-8")
    (tmp_path / "evil.md").write_text(f"Seals and markup: {EVIL}", "utf-8")
    page = open_page(site)
    try:
        page.click(".top nav button[data-view='knowledge']")
        docs = page.locator("#kb-list section[data-collection='docs']")
        expect(docs.locator("p.muted").last).to_have_text("No documents yet.")
        docs.locator("input[type=file]").set_input_files(
            [str(tmp_path / "harbour.txt"), str(tmp_path / "evil.md")]
        )
        expect(page.locator("#kb-status")).to_have_text("docs synced: 2 added, 0 updated, 0 removed.")
        expect(docs.locator("tbody tr td:first-child")).to_have_text(["evil.md", "harbour.txt"])
        page.select_option("#kb-search-in", "docs")
        page.fill("#kb-query", "seals pier")
        page.click("#kb-search button[type=submit]")
        found = page.locator("#kb-results li")
        expect(found.first.locator(".kb-where")).to_contain_text("harbour.txt")
        expect(found.first.locator(".passage")).to_contain_text("Seals rest on the north pier")
        expect(page.locator("#kb-results .passage", has_text="onerror")).to_contain_text(EVIL)
        assert page.locator("#kb-results img").count() == 0
        assert page.evaluate("() => window.pwned") is None
        assert page.errors == []
    finally:
        page.context.close()


def indexed(site: Site) -> None:
    """The collection `docs` holds seals.txt (whatever earlier tests left there too)."""
    httpx.post(site.url + "/api/cove/kb", json={"name": "docs", "model": FAKE_MODEL})  # 409 if there
    files = {"file": ("seals.txt", b"Seals rest on the pier.", "text/plain")}
    assert httpx.post(site.url + "/api/cove/kb/docs/upload", files=files).status_code == 201
    synced = httpx.post(site.url + "/api/cove/kb/docs/sync", json={"stream": False}, timeout=60)
    assert synced.status_code == 200, synced.text


def test_a_real_turn_cites_its_collection_streamed_and_reopened(site: Site) -> None:
    """The server's own answer (the fake engine repeats the question, [1] and all) and its citations."""
    indexed(site)
    page = open_page(site)
    try:
        page.select_option("#kb", "docs")
        page.fill("#prompt", "seals on the pier [1]")
        page.press("#prompt", "Enter")
        answer = page.locator("#messages > .msg.assistant").last
        answer.locator(".msg-foot .act-regenerate").wait_for()
        expect(answer.locator(".sources summary").first).to_contain_text("[1] seals.txt")
        expect(answer.locator(".md a.cite").first).to_have_text("[1]")
        expect(answer.locator(".sources")).to_have_count(1)  # not drawn again once the turn is stored
        title = page.locator("#chat-title").inner_text()
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        page.locator("#conversations .conv-open", has_text=title).first.click()
        again = page.locator("#messages > .msg.assistant").last
        expect(again.locator(".sources summary").first).to_contain_text("[1] seals.txt")
        again.locator(".md a.cite").first.click()
        expect(again.locator(".sources details").first).to_have_attribute("open", "")
        expect(again.locator(".sources .passage").first).to_contain_text("Seals rest on the pier")
        assert page.errors == []
    finally:
        page.context.close()


@pytest.mark.skipif(not AXE.exists(), reason="needs axe-core: npm ci --prefix tests/web")
def test_axe_finds_nothing_serious_in_the_knowledge_view(site: Site) -> None:
    indexed(site)
    page = open_page(site, bypass_csp=True)
    try:
        page.click(".top nav button[data-view='knowledge']")
        page.locator("#kb-list section").first.wait_for()
        page.select_option("#kb-search-in", "docs")
        page.fill("#kb-query", "seals")
        page.click("#kb-search button[type=submit]")
        page.locator("#kb-results li").first.wait_for()
        assert axe(page) == []
        page.emulate_media(color_scheme="dark")
        assert axe(page) == []
    finally:
        page.context.close()


def test_a_failed_sync_is_explained(site: Site, tmp_path: Any) -> None:
    made = httpx.post(site.url + "/api/cove/kb", json={"name": "nomodel", "model": "missing-embedder:latest"})
    assert made.status_code == 201, made.text
    (tmp_path / "a.txt").write_text("Some words to index.", "utf-8")
    page = open_page(site)
    try:
        page.click(".top nav button[data-view='knowledge']")
        box = page.locator("#kb-list section[data-collection='nomodel']")
        box.locator("input[type=file]").set_input_files(str(tmp_path / "a.txt"))
        expect(page.locator("#kb-status")).to_contain_text("missing-embedder")
        assert "synced" not in page.locator("#kb-status").inner_text()
        assert page.errors == []
    finally:
        page.context.close()
