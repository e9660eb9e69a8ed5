"""The web chat's knowledge base in a real Chromium, on the fake engine: the composer's collection
picker and what a turn sends (set back to a reopened conversation's collections), cited sources
under streamed and reopened answers, [n] links that open them, each source's link to its original
file (a PDF's page), deleting documents and collections from the Knowledge view, passages, HTML
documents and hostile file names kept inert, and axe-core on all of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes import FakeEngine
from kb_files import pdf_bytes
from kb_helpers import FAKE_MODEL
from server_fixtures import LiveServer, make_app, tiny_cove
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
    # "No documents" is said too: it turns off what a conversation chose before
    assert sent[0]["collections"] == [] and "cove_strict" not in sent[0]
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
        expect(docs.locator("p.muted").first).to_contain_text(
            "reranked when a reranking model is in the store"
        )
        page.select_option("#kb-search-in", "docs")
        page.fill("#kb-query", "seals pier")
        page.click("#kb-search button[type=submit]")
        expect(page.locator("#kb-results-summary")).to_contain_text("passages, best first.")
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
    # A collection of its own: what other tests upload would otherwise compete for [1].
    collection_of(site, "cited", {"seals.txt": b"Seals rest on the pier."})
    page = open_page(site)
    try:
        page.select_option("#kb", "cited")
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


# -- deleting from the Knowledge view, opening a document's original, the picker restored ---------


def collection_of(site: Site, name: str, files: dict[str, bytes]) -> None:
    """A fresh collection `name` holding `files` (uploaded, then synced)."""
    httpx.delete(f"{site.url}/api/cove/kb/{name}")  # whatever an earlier run left
    made = httpx.post(site.url + "/api/cove/kb", json={"name": name, "model": FAKE_MODEL})
    assert made.status_code == 201, made.text
    if files:
        parts = [("file", (file, data, "application/octet-stream")) for file, data in files.items()]
        assert httpx.post(f"{site.url}/api/cove/kb/{name}/upload", files=parts).status_code == 201
    synced = httpx.post(f"{site.url}/api/cove/kb/{name}/sync", json={"stream": False}, timeout=60)
    assert synced.status_code == 200, synced.text


def knowledge_view(site: Site) -> Any:
    page = open_page(site)
    page.click(".top nav button[data-view='knowledge']")
    page.locator("#kb-list section").first.wait_for()
    return page


def test_a_document_and_a_collection_are_deleted_from_the_knowledge_view(site: Site) -> None:
    collection_of(
        site, "doomed", {"keep.txt": b"Gulls nest on cliffs.", "drop.txt": b"Crabs hide under rocks."}
    )
    page = knowledge_view(site)
    try:
        box = page.locator("#kb-list section[data-collection='doomed']")
        row = box.locator("tr[data-file='drop.txt']")
        delete = row.get_by_role("button", name="Delete drop.txt from doomed")
        delete.click()
        expect(row.locator("button")).to_have_text("Really delete?")  # asked, not yet done
        assert {d["file"] for d in documents(site, "doomed")} == {"keep.txt", "drop.txt"}
        row.locator("button").click()
        expect(page.locator("#kb-status")).to_have_text("Deleted drop.txt from doomed.")
        expect(box.locator("tbody tr td:first-child")).to_have_text(["keep.txt"])
        assert [d["file"] for d in documents(site, "doomed")] == ["keep.txt"]
        found = httpx.post(
            site.url + "/api/cove/kb/search", json={"collections": ["doomed"], "query": "crabs rocks"}
        )
        assert all(p["file"] != "drop.txt" for p in found.json()["passages"])  # its text is gone too
        drop = box.get_by_role("button", name="Delete collection doomed (its documents' index)")
        drop.click()
        expect(drop).to_have_text("Really delete?")
        drop.click()
        expect(page.locator("#kb-status")).to_have_text("Deleted the collection doomed.")
        expect(page.locator("#kb-list section[data-collection='doomed']")).to_have_count(0)
        expect(page.locator("#kb option[value='doomed']")).to_have_count(0)  # nor in the composer
        assert httpx.get(site.url + "/api/cove/kb/doomed").status_code == 404
        assert page.errors == []
    finally:
        page.context.close()


def test_a_failed_delete_is_explained_and_the_button_can_be_pressed_again(site: Site) -> None:
    collection_of(site, "vanishing", {"a.txt": b"Words."})
    page = knowledge_view(site)
    try:
        httpx.delete(site.url + "/api/cove/kb/vanishing")  # gone behind the page's back
        drop = page.get_by_role("button", name="Delete collection vanishing (its documents' index)")
        drop.click()
        drop.click()
        expect(page.locator("#kb-status")).to_contain_text("no collection named 'vanishing'")
        expect(drop).to_be_enabled()
        expect(drop).to_have_text("Delete collection")
        assert page.errors == []
    finally:
        page.context.close()


def documents(site: Site, name: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    listed = httpx.get(f"{site.url}/api/cove/kb/{name}/documents", headers=headers or {}).json()
    found: list[dict[str, Any]] = listed["documents"]
    return found


PDF = pdf_bytes(["Gulls circle the harbour.", "Seals rest on the pier at noon."])


def test_a_pdf_citation_links_to_its_page(site: Site) -> None:
    collection_of(site, "papers", {"harbour.pdf": PDF})
    page = open_page(site)
    try:
        page.select_option("#kb", "papers")
        page.fill("#prompt", "seals rest on the pier at noon [1]")
        page.press("#prompt", "Enter")
        answer = page.locator("#messages > .msg.assistant").last
        answer.locator(".msg-foot .act-regenerate").wait_for()
        expect(answer.locator(".sources summary").first).to_have_text("[1] harbour.pdf, page 2")
        link = answer.locator(".sources a.original").first
        expect(link).to_have_text("Open page 2 of harbour.pdf")
        expect(link).to_have_attribute("href", "/api/cove/kb/papers/file?file=harbour.pdf#page=2")
        expect(link).to_have_attribute("target", "_blank")
        fetched = page.evaluate(
            """async (href) => { const r = await fetch(href); const b = new Uint8Array(await r.arrayBuffer());
                return [r.status, r.headers.get('content-type'), r.headers.get('content-disposition'),
                        String.fromCharCode(...b.slice(0, 5))]; }""",
            link.get_attribute("href"),
        )
        assert fetched == [
            200,
            "application/pdf",
            "inline; filename=\"harbour.pdf\"; filename*=UTF-8''harbour.pdf",
            "%PDF-",
        ]
        # The Knowledge view links each document to its file too.
        page.click(".top nav button[data-view='knowledge']")
        row = page.locator("#kb-list section[data-collection='papers'] tr[data-file='harbour.pdf']")
        href = row.locator("a.original").get_attribute("href")
        doc_id = documents(site, "papers")[0]["id"]
        assert href == f"/api/cove/kb/papers/documents/{doc_id}/file"
        assert page.errors == []
    finally:
        page.context.close()


SCRIPTED = (
    "<html><body><script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'>Seals.</body></html>"
)
HOSTILE_NAME = "<img src=x onerror=window.pwned=3>.txt"


def test_an_html_document_and_a_hostile_name_run_no_script(site: Site, tmp_path: Any) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "page.html").write_text(SCRIPTED, "utf-8")
    (folder / HOSTILE_NAME).write_text("Seals rest on the pier under a hostile name.", "utf-8")
    collection_of(site, "hostile", {})
    assert (
        httpx.post(site.url + "/api/cove/kb/hostile/paths", json={"paths": [str(folder)]}).status_code == 200
    )
    assert (
        httpx.post(site.url + "/api/cove/kb/hostile/sync", json={"stream": False}, timeout=60).status_code
        == 200
    )
    page = knowledge_view(site)
    try:
        box = page.locator("#kb-list section[data-collection='hostile']")
        expect(box.locator("a.original")).to_have_text([HOSTILE_NAME, "page.html"])  # as text
        for name in ("page.html", HOSTILE_NAME):
            with page.context.expect_page() as opened:
                box.locator(f"tr[data-file='{name}'] a.original").click()
            tab = opened.value
            tab.wait_for_load_state()
            shown = tab.evaluate("() => document.body.innerText")
            assert shown == (
                SCRIPTED if name == "page.html" else "Seals rest on the pier under a hostile name."
            )
            assert tab.evaluate("() => window.pwned") is None and tab.locator("img").count() == 0
            tab.close()
        page.click(".top nav button[data-view='chat']")
        page.select_option("#kb", "hostile")
        page.fill("#prompt", "seals rest on the pier under a hostile name [1]")
        page.press("#prompt", "Enter")
        answer = page.locator("#messages > .msg.assistant").last
        answer.locator(".msg-foot .act-regenerate").wait_for()
        expect(answer.locator(".sources summary").first).to_have_text(f"[1] {HOSTILE_NAME}")
        expect(answer.locator(".sources a.original").first).to_have_text(f"Open {HOSTILE_NAME}")
        assert answer.locator(".sources img").count() == 0
        assert page.evaluate("() => window.pwned") is None
        assert page.errors == []
    finally:
        page.context.close()


def test_a_reopened_conversation_sets_the_picker_back_to_its_collections(site: Site) -> None:
    collection_of(site, "alpha", {"a.txt": b"Seals rest on the pier."})
    collection_of(site, "beta", {"b.txt": b"Gulls nest on cliffs."})
    both = httpx.post(site.url + "/api/chat", json={
        "model": "tiny", "stream": False, "conversation_id": "new", "collections": ["alpha", "beta"],
        "messages": [{"role": "user", "content": "gulls and seals from both"}]})  # fmt: skip
    assert both.status_code == 200, both.text
    page = open_page(site)
    sent: list[dict[str, Any]] = []
    page.on(
        "request", lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/api/chat") else None
    )
    try:
        page.select_option("#kb", "alpha")
        page.check("#kb-strict")
        ask(page, "seals on the pier, strictly")
        page.click("#new-chat")
        page.select_option("#kb", "")
        ask(page, "no documents at all")
        open_titled(page, "seals on the pier, strictly")
        expect(page.locator("#kb")).to_have_value("alpha")
        expect(page.locator("#kb-strict")).to_be_checked()
        open_titled(page, "no documents at all")
        expect(page.locator("#kb")).to_have_value("")
        expect(page.locator("#kb-strict")).to_be_disabled()
        open_titled(page, "gulls and seals from both")
        expect(page.locator("#kb")).to_have_value("alpha,beta")
        expect(page.locator("#kb option:checked")).to_have_text("alpha + beta")
        expect(page.locator("#kb-strict")).not_to_be_checked()
        ask(page, "and the gulls?")
        assert (sent[-1]["collections"], sent[-1]["cove_strict"]) == (["alpha", "beta"], False)
        assert page.errors == []
    finally:
        page.context.close()


def test_a_conversation_whose_collection_is_gone_says_so(site: Site) -> None:
    collection_of(site, "fleeting", {"f.txt": b"Seals rest on the pier."})
    made = httpx.post(site.url + "/api/chat", json={
        "model": "tiny", "stream": False, "conversation_id": "new", "collections": ["fleeting"],
        "messages": [{"role": "user", "content": "about the fleeting seals"}]})  # fmt: skip
    assert made.status_code == 200, made.text
    httpx.delete(site.url + "/api/cove/kb/fleeting")
    page = open_page(site)
    try:
        open_titled(page, "about the fleeting seals")
        expect(page.locator("#notice")).to_contain_text(
            "answered from fleeting, which is no longer a collection"
        )
        expect(page.locator("#kb")).to_have_value("")
        assert page.errors == []
    finally:
        page.context.close()


def open_titled(page: Any, title: str) -> None:
    page.locator("#conversations .conv-open", has_text=title).first.click()
    expect(page.locator("#chat-title")).to_have_text(title)


KEY = "k3y-for-the-page"


@pytest.fixture(scope="module")
def keyed(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A server that wants an API key, which a plain link to a file cannot send (the same browser)."""
    cove = tiny_cove(tmp_path_factory.mktemp("web-kb-keyed") / "home", FakeEngine())
    with LiveServer(make_app(cove, api_keys=(KEY,))) as url:
        yield Site(url, cove, FakeEngine(), site.browser)
    cove.close()


def test_with_an_api_key_a_document_opens_from_memory_as_text(keyed: Site) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    made = httpx.post(keyed.url + "/api/cove/kb", json={"name": "locked", "model": FAKE_MODEL}, headers=auth)
    assert made.status_code == 201, made.text
    files = [("file", ("page.html", SCRIPTED.encode(), "text/html"))]
    assert httpx.post(keyed.url + "/api/cove/kb/locked/upload", files=files, headers=auth).status_code == 201
    synced = httpx.post(
        keyed.url + "/api/cove/kb/locked/sync", json={"stream": False}, headers=auth, timeout=60
    )
    assert synced.status_code == 200, synced.text
    href = f"/api/cove/kb/locked/documents/{documents(keyed, 'locked', auth)[0]['id']}/file"
    assert httpx.get(keyed.url + href).status_code == 401  # what a plain link would get
    context = keyed.browser.new_context()
    context.add_init_script(f"sessionStorage.setItem('cove-api-key', {json.dumps(KEY)})")
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(keyed.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        page.click(".top nav button[data-view='knowledge']")
        link = page.locator("#kb-list section[data-collection='locked'] a.original")
        expect(link).to_have_attribute("href", href)
        with context.expect_page() as opened:
            link.click()
        tab = opened.value
        tab.wait_for_url("blob:**")
        tab.wait_for_load_state()
        assert tab.evaluate("() => document.body.innerText") == SCRIPTED  # the source, as text
        assert tab.evaluate("() => window.pwned") is None and tab.locator("img").count() == 0
        assert tab.evaluate("() => window.opener") is None
        assert page.evaluate("() => window.pwned") is None and errors == []
    finally:
        context.close()
