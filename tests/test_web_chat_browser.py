"""The web chat's habits in a real Chromium, on the fake engine (fast, no model): the date-grouped
list and its "⋯" menu, undoable delete, branching edits and regenerate, settings, attachments,
keyboard, long conversations, mathematics, a lost server, and axe-core on every page."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeEngine
from server_fixtures import LiveServer, make_app, tiny_cove

from cove.library.local import Cove

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
AXE = Path(__file__).parent / "web" / "node_modules" / "axe-core" / "axe.min.js"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")
expect = sync_api.expect


class Site:
    """The app on the fake engine, a browser, and helpers to import conversations."""

    def __init__(self, url: str, cove: Cove, engine: FakeEngine, browser: Any) -> None:
        self.url, self.cove, self.engine, self.browser = url, cove, engine, browser

    def load(self, *conversations: dict[str, Any]) -> None:
        doc = {
            "format": "cove.history",
            "version": 1,
            "exported_at": STAMP,
            "conversations": list(conversations),
        }
        r = httpx.post(self.url + "/api/cove/import", json=doc)
        assert r.status_code == 200, r.text


STAMP = "2026-11-28T09:30:00+00:00"


def conversation(cid: str, title: str, pairs: int, stamp: str = STAMP, **extra: Any) -> dict[str, Any]:
    messages = []
    for i in range(pairs):
        messages.append({"position": 2 * i, "role": "user", "content": f"question {i}", "created_at": stamp})
        messages.append(
            {"position": 2 * i + 1, "role": "assistant", "content": f"answer **{i}**", "created_at": stamp}
        )
    return {"id": cid, "title": title, "model": "tiny:latest", "created_at": stamp, "updated_at": stamp,
            "source": "import", "messages": messages, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("web-chat") / "home"
    engine = FakeEngine()
    cove = tiny_cove(home, engine)
    with LiveServer(make_app(cove)) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield Site(url, cove, engine, browser)
        browser.close()
    cove.close()


def open_page(site: Site, scheme: str = "light", width: int = 1280, bypass_csp: bool = False) -> Any:
    """A fresh page, ready; `bypass_csp` only to inject axe-core (the CSP allows no inline script)."""
    context = site.browser.new_context(
        viewport={"width": width, "height": 800}, color_scheme=scheme, bypass_csp=bypass_csp
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("dialog", lambda d: page.errors.append(f"a native dialog opened: {d.message}") or d.dismiss())
    page.goto(site.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    return page


@pytest.fixture
def page(site: Site) -> Iterator[Any]:
    page = open_page(site)
    yield page
    errors = page.errors
    page.context.close()
    assert errors == []


def ask(page: Any, text: str) -> Any:
    """Send a message; the answer once it is done (its actions are there)."""
    before = page.locator("#messages > .msg.assistant").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    answer = page.locator("#messages > .msg.assistant").nth(before)
    answer.locator(".msg-foot .act-regenerate").wait_for()
    return answer


# -- the layout ---------------------------------------------------------------------------------


def test_conversations_are_grouped_by_date(site: Site, page: Any) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    site.load(
        conversation("group0today1", "Today's", 1, (now - timedelta(minutes=5)).isoformat()),
        conversation("group0yester", "Yesterday's", 1, (now - timedelta(days=1)).isoformat()),
        conversation("group0week01", "Last week's", 1, (now - timedelta(days=4)).isoformat()),
        conversation("group0old001", "Old", 1, "2020-01-01T10:00:00+00:00"),
    )
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    groups = page.locator("#conversations h2.group").all_inner_texts()
    for name in ("Today", "Yesterday", "Previous 7 days", "Older"):
        assert name in groups
    older = page.locator("#conversations ul[aria-labelledby='group-older'] li[data-id='group0old001']")
    expect(older).to_have_count(1)
    assert page.locator("#conversations li .conv-actions").count() == 0  # one "⋯" menu, not four buttons


def test_menu_renames_in_place_and_exports(site: Site, page: Any) -> None:
    site.load(conversation("menu00000001", "Before the rename", 1))
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    item = page.locator("#conversations li[data-id='menu00000001']")
    item.locator(".conv-menu").click()
    menu = item.locator("[role=menu]")
    expect(menu).to_be_visible()
    expect(item.locator("[role=menuitem]").first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(item.locator("[role=menuitem].export-md")).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(item.locator(".conv-menu")).to_be_focused()
    item.locator(".conv-menu").click()
    item.locator("[role=menuitem].rename").click()
    field = item.locator("input.rename-input")
    field.fill("After the rename")
    field.press("Enter")
    expect(item.locator(".conv-title")).to_have_text("After the rename")
    assert httpx.get(site.url + "/api/cove/conversations/menu00000001").json()["title"] == "After the rename"
    item.locator(".conv-menu").click()
    with page.expect_download() as info:
        item.locator("[role=menuitem].export-json").click()
    data = json.loads(Path(info.value.path()).read_text("utf-8"))
    assert data["conversations"][0]["title"] == "After the rename"
    assert info.value.suggested_filename == "cove-menu00000001.json"


def test_delete_is_undoable_then_final(site: Site, page: Any) -> None:
    site.load(conversation("undo00000001", "Delete me", 1), conversation("undo00000002", "Delete me too", 1))
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#conversations li[data-id='undo00000001'] .conv-open").click()
    page.locator(".msg.user", has_text="question 0").wait_for()
    item = page.locator("#conversations li[data-id='undo00000001']")
    item.locator(".conv-menu").click()
    item.locator("[role=menuitem].delete").click()
    expect(item).to_have_count(0)
    expect(page.locator("#toast")).to_contain_text("Deleted “Delete me”")
    assert page.locator("#messages .msg").count() == 0  # the open chat was the deleted one
    page.locator("#toast button", has_text="Undo").click()
    expect(item).to_have_count(1)
    page.locator(".msg.user", has_text="question 0").wait_for()  # and it is open again
    assert httpx.get(site.url + "/api/cove/conversations/undo00000001").status_code == 200
    other = page.locator("#conversations li[data-id='undo00000002']")
    other.locator(".conv-menu").click()
    other.locator("[role=menuitem].delete").click()
    expect(other).to_have_count(0)
    assert httpx.get(site.url + "/api/cove/conversations/undo00000002").status_code == 200  # not yet
    page.wait_for_timeout(6500)
    assert httpx.get(site.url + "/api/cove/conversations/undo00000002").status_code == 404


def test_sidebar_collapses_and_composer_holds_picker_attach_and_send(page: Any) -> None:
    bar = page.locator("#composer .composer-bar")
    assert bar.locator("#model").count() == 1 and bar.locator("#attach").count() == 1
    assert bar.locator("#send").inner_text() == "Send"
    page.click("#menu")
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#menu")).to_have_attribute("aria-expanded", "false")
    page.click("#menu")
    expect(page.locator("#sidebar")).to_be_visible()


def test_send_turns_into_stop_while_streaming(site: Site, page: Any) -> None:
    site.engine.token_delay = 0.15
    try:
        page.fill("#prompt", " ".join(f"w{i}" for i in range(60)))
        page.press("#prompt", "Enter")
        expect(page.locator("#send")).to_have_text("Stop")
        page.wait_for_function(
            "() => (document.querySelector('#messages .msg.assistant .md')?.textContent.length ?? 0) > 20"
        )
        page.click("#send")
        expect(page.locator("#send")).to_have_text("Send")
        assert "stopped" in page.locator(".msg.assistant .stats").inner_text()
    finally:
        site.engine.token_delay = 0.0


# -- the empty chat -------------------------------------------------------------------------------


def test_the_empty_chat_says_model_use_speed_and_offers_prompts(page: Any) -> None:
    expect(page.locator("#empty")).to_be_visible()
    # The only model stored is a base model: chosen, and said to be one, with what it is good for.
    assert page.locator("#empty-model").inner_text() == "tiny:latest (a base model)"
    assert "continues text" in page.locator("#empty-about").inner_text()
    expect(page.locator("#empty-speed")).to_contain_text("Not measured on this machine yet")
    assert page.locator("#examples button").count() >= 3
    page.locator("#examples button").first.click()
    assert page.input_value("#prompt") == page.locator("#examples button").first.inner_text()
    expect(page.locator("#prompt")).to_be_focused()


def test_the_empty_chat_shows_a_measured_speed(site: Site, page: Any) -> None:
    from cove.history.measurements import Measurement, Measurements

    digest = site.cove.store.get("tiny").digest
    with Measurements.of_home(site.cove.settings.home) as m:
        m.record(
            Measurement(model="tiny:latest", digest=digest, kind="answer", decode_tps=42.0, prompt_tps=300.0)
        )
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    expect(page.locator("#empty-speed")).to_contain_text("about 42.0 tokens/s writing")


# -- messages: copy, edit that branches, regenerate that adds a sibling ----------------------------


def test_edit_branches_and_the_switcher_goes_back(site: Site, page: Any) -> None:
    ask(page, "first version")
    ask(page, "follow up")
    first = page.locator("#messages > .msg.user").first
    first.hover()
    first.locator(".act-edit").click()
    page.locator(".edit-area").fill("second version")
    page.locator(".edit-area").press("Enter")
    page.locator("#messages > .msg.assistant .act-regenerate").first.wait_for()
    expect(page.locator("#messages > .msg.user")).to_have_count(1)
    first = page.locator("#messages > .msg.user").first
    expect(first.locator(".version")).to_have_text("2/2")
    assert "You said: second version" in page.locator("#messages > .msg.assistant").inner_text()
    first.locator("button[aria-label='Previous version']").click()
    expect(page.locator("#messages > .msg.user").first.locator(".version")).to_have_text("1/2")
    assert page.locator("#messages > .msg.user").all_inner_texts()[0].startswith("first version")
    expect(page.locator("#messages > .msg.user")).to_have_count(2)  # the whole first branch, follow-up too
    cid = page.locator("#conversations li.current").get_attribute("data-id")
    users = [
        m
        for m in httpx.get(f"{site.url}/api/cove/conversations/{cid}").json()["messages"]
        if m["role"] == "user"
    ]
    assert [m["content"] for m in users] == ["first version", "follow up"]


def test_regenerate_adds_a_sibling_answer_not_a_second_question(site: Site, page: Any) -> None:
    bodies: list[dict[str, Any]] = []
    page.on(
        "request", lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/api/chat") else None
    )
    answer = ask(page, "name a colour")
    answer.hover()
    answer.locator(".act-regenerate").click()
    page.locator("#messages > .msg.assistant .version").wait_for()
    answer = page.locator("#messages > .msg.assistant")
    expect(answer).to_have_count(1)
    expect(answer.locator(".version")).to_have_text("2/2")
    stats = answer.locator(".stats").inner_text()
    assert "first token" in stats and "tokens/s" in stats
    # The question is sent once; Regenerate sends no new message in the stored conversation.
    assert [[m["role"] for m in b["messages"]] for b in bodies] == [["user"], []]
    cid = page.locator("#conversations li.current").get_attribute("data-id")
    tree = httpx.get(f"{site.url}/api/cove/conversations/{cid}/branches").json()
    assert tree["branches"] == 2 and len(tree["messages"]) == 3  # one question, two answers


def test_copy_an_answer_and_a_code_block(site: Site, page: Any) -> None:
    code = "print('hi')\n"
    chat = conversation("copy00000001", "Copying", 0)
    chat["messages"] = [
        {"position": 0, "role": "user", "content": "code please", "created_at": STAMP},
        {
            "position": 1,
            "role": "assistant",
            "content": f"Here:\n\n```python\n{code}```",
            "created_at": STAMP,
        },
    ]
    site.load(chat)
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#conversations li[data-id='copy00000001'] .conv-open").click()
    page.locator(".copy-code").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == code
    page.locator("#messages > .msg.assistant .act-copy").click()
    assert page.evaluate("() => navigator.clipboard.readText()").startswith("Here:")


# -- settings ------------------------------------------------------------------------------------


def test_settings_are_saved_with_the_conversation(site: Site, page: Any) -> None:
    page.click("#settings-button")
    expect(page.locator("#settings-panel")).to_be_visible()
    assert "model default" in (page.get_attribute("#temperature", "placeholder") or "")
    page.fill("#system", "Answer in French.")
    page.fill("#temperature", "0.4")
    page.fill("#num_predict", "64")
    page.click("#settings-save")
    ask(page, "bonjour")
    sent = site.engine.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}
    cid = page.locator("#conversations li.current").get_attribute("data-id")
    chat = httpx.get(f"{site.url}/api/cove/conversations/{cid}").json()
    assert chat["system"] == "Answer in French." and chat["parameters"]["temperature"] == 0.4
    page.fill("#temperature", "")
    page.fill("#num_ctx", "1024")
    page.click("#settings-save")
    expect(page.locator("#settings-status")).to_have_text("Saved with this conversation.")
    chat = httpx.get(f"{site.url}/api/cove/conversations/{cid}").json()
    assert "temperature" not in chat["parameters"] and chat["num_ctx"] == 1024
    page.click("#new-chat")
    page.locator(f"#conversations li[data-id='{cid}'] .conv-open").click()
    expect(page.locator("#num_ctx")).to_have_value("1024")
    expect(page.locator("#system")).to_have_value("Answer in French.")


# -- attachments ---------------------------------------------------------------------------------


def test_an_attached_file_becomes_a_chip_and_goes_with_the_message(
    site: Site, page: Any, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Harbour\n\nThe seals sleep on the north pier.\n", "utf-8")
    page.click("#settings-button")
    page.fill("#num_ctx", "8192")  # tiny's own context is 256 tokens
    page.set_input_files("#file", str(notes))
    chip = page.locator("#chips .chip")
    expect(chip).to_contain_text("notes.md")
    expect(page.locator("#fit")).to_contain_text("Attachments: about")
    ask(page, "where do the seals sleep?")
    sent = site.engine.requests[-1]["messages"][-1]["content"]
    assert "The seals sleep on the north pier." in sent and sent.endswith("where do the seals sleep?")
    expect(page.locator("#chips .chip")).to_have_count(0)


def test_an_attachment_can_go_to_a_collection_too(page: Any, tmp_path: Path) -> None:
    calls: list[tuple[str, str]] = []

    def kb(route: Any) -> None:
        request = route.request
        calls.append((request.method, request.url.split("/api/cove/kb", 1)[1]))
        if request.method == "GET":
            route.fulfill(json={"collections": [{"name": "notes"}, {"name": "shipping"}]})
        elif request.url.endswith("/upload"):
            assert b'filename="harbour.txt"' in (request.post_data_buffer or b"")
            route.fulfill(status=201, json={"files": ["harbour.txt"]})
        else:
            assert json.loads(request.post_data) == {"stream": False}
            route.fulfill(json={"added": 1})

    page.route("**/api/cove/kb**", kb)
    path = tmp_path / "harbour.txt"
    path.write_text("Seals on the pier.", "utf-8")
    page.set_input_files("#file", str(path))
    picker = page.locator("#chips select.to-collection")
    picker.select_option("shipping")
    expect(page.locator("#toast")).to_contain_text("harbour.txt is in the collection shipping")
    assert calls == [("GET", ""), ("POST", "/shipping/upload"), ("POST", "/shipping/sync")]
    expect(page.locator("#chips .chip")).to_have_count(1)  # and it still goes with the next message


def test_a_file_dropped_on_the_composer_is_attached(page: Any) -> None:
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(['dropped words'], 'dropped.txt', { type: 'text/plain' }));
            const drop = new DragEvent('drop', { dataTransfer: data, bubbles: true });
            document.querySelector('#composer').dispatchEvent(drop);
        }"""
    )
    expect(page.locator("#chips .chip")).to_contain_text("dropped.txt")


def test_an_attachment_that_does_not_fit_is_warned_about(page: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("many words here " * 4000, "utf-8")  # about 16,000 tokens
    page.click("#settings-button")
    page.fill("#num_ctx", "2048")
    page.set_input_files("#file", str(big))
    expect(page.locator("#fit.warn")).to_contain_text("does not fit")


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("tool.exe", b"MZ\x00\x00", "not .exe"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "could not be attached"),
        ("empty.txt", b"   ", "could not be attached"),
    ],
)
def test_a_bad_attachment_is_explained_and_changes_nothing(
    page: Any, tmp_path: Path, name: str, content: bytes, said: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    page.fill("#prompt", "kept as typed")
    page.set_input_files("#file", str(path))
    expect(page.locator("#notice")).to_contain_text(said)
    assert page.locator("#chips .chip").count() == 0
    assert page.input_value("#prompt") == "kept as typed" and page.locator("#messages .msg").count() == 0


def test_a_too_large_attachment_is_refused_in_the_page(page: Any) -> None:
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(21 * 1024 * 1024)], 'huge.txt'));
            const drop = new DragEvent('drop', { dataTransfer: data, bubbles: true });
            document.querySelector('#composer').dispatchEvent(drop);
        }"""
    )
    expect(page.locator("#notice")).to_contain_text("too large")
    assert page.locator("#chips .chip").count() == 0


# -- rendering -----------------------------------------------------------------------------------


def test_tables_and_mathematics_render_under_the_csp(site: Site, page: Any) -> None:
    chat = conversation("math00000001", "Maths", 0)
    answer = (
        "Euler: $e^{i\\pi} + 1 = 0$.\n\n$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |"
    )
    chat["messages"] = [
        {"position": 0, "role": "user", "content": "maths", "created_at": STAMP},
        {"position": 1, "role": "assistant", "content": answer, "created_at": STAMP},
    ]
    site.load(chat)
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#conversations li[data-id='math00000001'] .conv-open").click()
    page.locator(".math-inline .katex").wait_for()
    assert page.locator(".math-display .katex-display").count() == 1
    assert page.locator(".md table td").all_inner_texts() == ["1", "2"]
    assert page.evaluate("() => document.fonts.check('16px KaTeX_Main')")


# -- keyboard ------------------------------------------------------------------------------------


def test_keyboard_shortcuts(site: Site, page: Any) -> None:
    page.evaluate("() => document.activeElement.blur()")  # nothing focused: keys go to the page
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    assert "New chat" in page.locator("#shortcuts").inner_text()
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()
    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.press("Shift+Escape")
    expect(page.locator("#prompt")).to_be_focused()
    ask(page, "remember me")
    page.keyboard.press("Control+Shift+O")
    expect(page.locator("#messages .msg")).to_have_count(0)
    expect(page.locator("#prompt")).to_be_focused()
    page.keyboard.press("Control+k")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.press("Control+,")
    expect(page.locator("#settings-panel")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#settings-panel")).to_be_hidden()
    site.engine.token_delay = 0.15
    try:
        page.fill("#prompt", " ".join(f"w{i}" for i in range(60)))
        page.press("#prompt", "Enter")
        expect(page.locator("#send")).to_have_text("Stop")
        page.keyboard.press("Escape")
        expect(page.locator("#send")).to_have_text("Send")
    finally:
        site.engine.token_delay = 0.0


def test_everything_is_reachable_with_tab(site: Site, page: Any) -> None:
    site.load(conversation("tabs00000001", "Tabbing", 1))
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    reached: set[str] = set()
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.id || document.activeElement.className"))
    for wanted in (
        "new-chat",
        "search",
        "conv-open",
        "conv-menu",
        "prompt",
        "model",
        "attach",
        "send",
        "settings-button",
    ):
        assert wanted in reached, (wanted, reached)


# -- long conversations, a lost server -----------------------------------------------------------


def test_a_thousand_message_conversation_opens_fast_and_pages(site: Site, page: Any) -> None:
    site.load(conversation("long00000001", "Long", 500))
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    took = page.evaluate(
        """async () => {
            const t = performance.now();
            document.querySelector("#conversations li[data-id='long00000001'] .conv-open").click();
            while (!document.querySelector('#messages .msg')) await new Promise((r) => setTimeout(r, 5));
            return performance.now() - t;
        }"""
    )
    assert took < 3000, took
    shown = page.locator("#messages > .msg").count()
    assert 0 < shown <= 100  # a page, not a thousand
    assert page.locator("#messages > .msg").last.inner_text().startswith("answer 499")
    frame = page.evaluate(
        """async () => {
            const box = document.querySelector('#messages');
            let worst = 0, last = performance.now();
            for (let i = 0; i < 30; i++) {
                box.scrollTop -= 400;
                await new Promise((r) => requestAnimationFrame(r));
                const now = performance.now(); worst = Math.max(worst, now - last); last = now;
            }
            return worst;
        }"""
    )
    assert frame < 250, frame
    print(f"\n1,000 messages: first page shown in {took:.0f} ms, worst frame scrolling {frame:.0f} ms")
    page.locator("#earlier").scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelectorAll('#messages > .msg').length > 100")


def test_a_cut_stream_keeps_what_came_and_a_lost_server_is_shown(site: Site, page: Any) -> None:
    def cut(route: Any) -> None:
        line = json.dumps(
            {"model": "tiny", "message": {"role": "assistant", "content": "half an ans"}, "done": False}
        )
        route.fulfill(status=200, headers={"content-type": "application/x-ndjson"}, body=line + "\n{not json")

    page.route("**/api/chat", cut)
    page.fill("#prompt", "tell me")
    page.press("#prompt", "Enter")
    answer = page.locator("#messages > .msg.assistant")
    expect(answer.locator(".cutoff")).to_contain_text("Cut off")
    assert "half an ans" in answer.locator(".md").inner_text()
    assert "cut off" in answer.locator(".stats").inner_text()
    page.unroute("**/api/chat")
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))
    page.fill("#prompt", "anyone?")
    page.press("#prompt", "Enter")
    expect(page.locator("#connection")).to_contain_text("not answering")
    page.unroute("**/api/**")
    expect(page.locator("#connection")).to_contain_text("Reconnected", timeout=10_000)


def test_a_stored_cut_off_answer_is_shown_as_cut_off(site: Site, page: Any) -> None:
    chat = conversation("cutoff000001", "Cut", 1)
    chat["messages"][1]["cut_off"] = "the engine stopped"
    site.load(chat)
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#conversations li[data-id='cutoff000001'] .conv-open").click()
    answer = page.locator("#messages > .msg.assistant")
    expect(answer.locator(".cutoff")).to_have_text("Cut off: the engine stopped")
    assert "cut off" in answer.locator(".stats").inner_text()


def test_it_works_behind_an_api_key(tmp_path: Path, site: Site) -> None:
    engine = FakeEngine()
    cove = tiny_cove(tmp_path / "keyed", engine)
    with LiveServer(make_app(cove, api_keys=("sesame",))) as url:
        context = site.browser.new_context()
        page = context.new_page()
        page.goto(url + "/")
        page.locator("#key-dialog").wait_for()
        page.fill("#key", "sesame")
        page.click("#key-form button[value='ok']")
        page.wait_for_selector("body[data-ready='1']")
        page.fill("#prompt", "hello behind a key")
        page.press("#prompt", "Enter")
        page.locator("#messages > .msg.assistant .act-regenerate").wait_for()
        expect(page.locator("#conversations li")).to_have_count(1)
        context.close()
    cove.close()


# -- accessibility: axe-core on every page, both themes -----------------------------------------

VIEWS = ["chat", "models", "usage", "tools", "privacy", "knowledge"]


@pytest.mark.skipif(not AXE.exists(), reason="needs axe-core: npm ci --prefix tests/web")
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violations(site: Site, scheme: str) -> None:
    site.load(conversation("axe000000001", "Accessible", 2))
    page = open_page(site, scheme, bypass_csp=True)
    try:
        page.locator("#conversations li[data-id='axe000000001'] .conv-open").click()
        page.locator("#messages .msg").first.wait_for()
        found: dict[str, list[str]] = {}
        for view in VIEWS:
            page.click(f".top nav button[data-view='{view}']")
            page.wait_for_timeout(600)
            if view == "chat":
                page.click("#settings-button")  # the panel too
            found[view] = axe(page)
        page.click(".top nav button[data-view='chat']")
        page.click("#new-chat")
        found["empty chat"] = axe(page)
        page.keyboard.press("?")
        found["shortcuts"] = axe(page)
        assert found == {name: [] for name in found}
    finally:
        page.context.close()


def axe(page: Any) -> list[str]:
    """Serious and critical violations, as 'rule: target' lines."""
    if not page.evaluate("() => Boolean(window.axe)"):
        page.add_script_tag(content=AXE.read_text("utf-8"))
    results = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
    return [
        f"{v['id']}: {node['target']} {node.get('failureSummary', '')[:120]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
        for node in v["nodes"]
    ]


def test_the_tools_view_lists_tools(page: Any) -> None:
    page.click(".top nav button[data-view='tools']")
    row = page.locator("#tools-table tr[data-tool='calculator']")
    row.wait_for()
    assert row.locator("td").nth(4).inner_text() in ("on", "off")
    expect(page.locator("#tools-summary")).to_contain_text("tools")


def test_screenshots(site: Site) -> None:
    """docs/chat-*.png, written only when COVE_WEB_SCREENSHOTS names a folder (e.g. docs)."""
    folder = os.environ.get("COVE_WEB_SCREENSHOTS")
    if not folder:
        pytest.skip("set COVE_WEB_SCREENSHOTS=docs to refresh the screenshots")
    out = Path(folder)
    out.mkdir(exist_ok=True)
    page = open_page(site, "light")
    page.locator("#empty").wait_for()
    page.screenshot(path=str(out / "chat-empty.png"))
    ask(page, "What is the integral of x squared from 0 to 1?")
    answer = page.locator("#messages > .msg.assistant")
    answer.hover()
    answer.locator(".act-regenerate").click()
    answer.locator(".version").wait_for()
    page.click("#settings-button")
    page.fill("#system", "Answer briefly, with formulas in TeX.")
    page.screenshot(path=str(out / "chat-settings.png"))
    page.context.close()
    chat = conversation("shot00000001", "Euler's identity", 0)
    answer_text = (
        "Euler's identity joins five constants:\n\n$$e^{i\\pi} + 1 = 0$$\n\n"
        "| constant | value |\n|---|---|\n| $e$ | 2.718… |\n| $\\pi$ | 3.14159… |\n\n"
        "```python\nimport cmath\nprint(cmath.exp(1j * cmath.pi) + 1)\n```"
    )
    chat["messages"] = [
        {"position": 0, "role": "user", "content": "Explain Euler's identity.", "created_at": STAMP},
        {"position": 1, "role": "assistant", "content": answer_text, "created_at": STAMP,
         "time_to_first_token_ms": 84, "tokens_per_s": 61.5, "model": "tiny:latest"},
    ]  # fmt: skip
    site.load(chat)
    page = open_page(site, "dark")
    page.locator("#conversations li[data-id='shot00000001'] .conv-open").click()
    page.locator(".math-display .katex").wait_for()
    page.locator("#prompt").focus()
    page.screenshot(path=str(out / "chat-dark.png"))
    page.context.close()
