"""The web chat in a real Chromium (Playwright) against a real `cove serve` on the bundled model."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fake_hf import FakeHF
from gguf_writer import GGML_F16, make_gguf
from server_fixtures import RealServer, _wait_until_up, cove_script, free_port, linked_home

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
MODEL = "gemma3:270m"
SECOND = "web-second:latest"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.model,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")

#: Every URL the page asked for, across the whole module (checked at the end).
REQUESTS: list[str] = []


@contextmanager
def serving(model_home: Path, folder: Path, **extra: str) -> Iterator[RealServer]:
    """A private `cove serve`: its own COVE_HOME (and so its own history) on the bundled model."""
    home = linked_home(model_home, folder / "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_") and k != "HF_TOKEN"}
    env.update({"COVE_HOME": str(home), **extra})
    port = free_port()
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(cove_script()), "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    real = RealServer(f"http://127.0.0.1:{port}", home, process, log)
    try:
        _wait_until_up(real)
        yield real
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    with serving(model_home, tmp_path_factory.mktemp("web-server")) as real:
        yield real


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


@contextmanager
def opened(browser: Any, server: RealServer, key: str | None = None) -> Iterator[Any]:
    """A fresh context and page on `server`, ready; with `key`, typed into the page's key dialog."""
    code = server.process.poll()
    assert code is None, f"cove serve exited with {code}:\n{server.log_tail()}"
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)

    def guard(route: Any) -> None:  # nothing may leave the machine, even if the page tried
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    context.route("**/*", guard)
    context.on("request", lambda request: REQUESTS.append(request.url))
    page = context.new_page()
    dialogs: list[str] = []
    answers: list[str] = []  # a test that expects prompt()/confirm() queues its answers here

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        if answers:
            dialog.accept(answers.pop(0))
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    page.dialogs = dialogs
    page.answers = answers
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.console = console
    page.set_default_timeout(60_000)
    page.goto(server.url + "/")
    if key is not None:
        page.locator("#key-dialog").wait_for()
        page.fill("#key", key)
        page.click("#key-form button[value='ok']")
    page.wait_for_selector("body[data-ready='1']")
    yield page
    context.close()
    blocked = [line for line in console if "Content Security Policy" in line]
    assert blocked == [], blocked  # the page never needs anything its own CSP forbids


@pytest.fixture
def page(browser: Any, server: RealServer) -> Iterator[Any]:
    with opened(browser, server) as page:
        yield page


def chat_bodies(page: Any) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/api/chat") else None,
    )
    return bodies


def open_settings(page: Any) -> None:
    if page.locator("#settings-panel").is_hidden():
        page.click("#settings-button")


def send(page: Any, text: str, num_predict: int = 16) -> Any:
    """Type a message, press Enter; the answer's bubble once its stats footer appears."""
    open_settings(page)
    page.fill("#num_predict", str(num_predict))
    before = page.locator(".msg.assistant").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    answer = page.locator(".msg.assistant").nth(before)
    try:
        answer.locator(".msg-foot .act-copy").wait_for(timeout=60_000)
    except sync_api.TimeoutError as exc:
        shown = page.locator("#messages").inner_html()[-2000:]
        raise AssertionError(
            f"no answer; notice={page.locator('#notice').inner_text()!r}\n{shown}\n{page.console}"
        ) from exc
    return answer


def test_send_streams_an_answer(page: Any, server: RealServer) -> None:
    bodies = chat_bodies(page)
    answer = send(page, "Say hello to the harbour seals.")
    assert page.locator(".msg.user .body").last.inner_text() == "Say hello to the harbour seals."
    assert answer.locator(".md").inner_text().strip()
    stats = answer.locator(".stats").inner_text()
    assert "first token" in stats and "tokens/s" in stats
    assert bodies[0]["conversation_id"] == "new" and bodies[0]["options"]["num_predict"] == 16
    assert bodies[0]["model"] == MODEL
    second = send(page, "And to the otters.")
    assert second.locator(".md").inner_text().strip()
    assert bodies[1]["conversation_id"] not in ("new", None)
    assert page.locator("#conversations li").count() >= 1
    assert page.locator("#send").inner_text() == "Send"  # not Stop: nothing streams now


def tokens_out(server: RealServer) -> float:
    text = httpx.get(server.url + "/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cove_tokens_total{") and 'direction="out"' in line
    )


def test_stop_mid_stream(page: Any, server: RealServer) -> None:
    open_settings(page)
    page.fill("#num_predict", "4000")
    page.fill("#prompt", "Count from 1 to 2000, one number per line, no other words.")
    page.click("#send")
    answer = page.locator(".msg.assistant").last
    page.wait_for_function(
        "() => document.querySelector('.msg.assistant:last-child .md').textContent.length > 20"
    )
    assert page.locator("#send").inner_text() == "Stop"  # send turns into stop while streaming
    page.click("#send")
    answer.locator(".msg-foot .act-copy").wait_for()
    assert "stopped" in answer.locator(".stats").inner_text()
    length = len(answer.locator(".md").inner_text())
    page.wait_for_timeout(1500)
    assert len(answer.locator(".md").inner_text()) == length
    counted = tokens_out(server)  # and the server stopped generating too
    page.wait_for_timeout(1500)
    assert tokens_out(server) == counted
    assert page.locator("#send").inner_text() == "Send"
    assert send(page, "Thanks.").locator(".md").inner_text().strip()  # usable again


def test_regenerate(page: Any) -> None:
    bodies = chat_bodies(page)
    answer = send(page, "Name a colour.")
    answer.hover()
    answer.locator(".act-regenerate").click()
    page.locator(".msg.assistant .version").wait_for(timeout=60_000)
    assert page.locator(".msg.assistant").count() == 1
    assert page.locator(".msg.assistant .version").inner_text() == "2/2"  # a sibling answer
    stats = page.locator(".msg.assistant .stats").inner_text()
    assert "first token" in stats and "tokens/s" in stats
    # The question is sent (and stored) once; the second turn only asks for another answer.
    assert [[m["role"] for m in b["messages"]] for b in bodies] == [["user"], []]


def test_switch_model_and_persona(page: Any, server: RealServer) -> None:
    r = httpx.post(server.url + "/api/copy", json={"source": MODEL, "destination": SECOND})
    assert r.status_code == 200, r.text
    r = httpx.post(
        server.url + "/api/cove/personas", json={"name": "pirate", "system": "Talk like a pirate."}
    )
    assert r.status_code == 200, r.text
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    bodies = chat_bodies(page)
    page.select_option("#model", SECOND)
    open_settings(page)
    page.select_option("#persona", "pirate")
    page.fill("#temperature", "0.3")
    page.fill("#num_ctx", "2048")
    send(page, "Where is the treasure?")
    body = bodies[0]
    assert body["model"] == SECOND
    assert body["messages"][0] == {"role": "system", "content": "Talk like a pirate."}
    assert body["options"] == {"temperature": 0.3, "num_ctx": 2048, "num_predict": 16}
    send(page, "And the map?")
    assert bodies[1]["messages"] == [{"role": "user", "content": "And the map?"}]  # persona sent once


def test_search_open_and_export(page: Any, server: RealServer) -> None:
    send(page, "Tell me about zanzibarwhales please.")
    page.fill("#search", "zanzibarwhales")
    hit = page.locator("#search-results li button").first
    hit.wait_for()
    hit.click()
    page.locator(".msg.user", has_text="zanzibarwhales").wait_for()
    item = page.locator("#conversations li.current")
    data = json.loads(export(page, item, "json").read_text("utf-8"))
    assert data["format"] == "cove.history"
    assert any("zanzibarwhales" in m["content"] for m in data["conversations"][0]["messages"])
    assert "zanzibarwhales" in export(page, item, "md").read_text("utf-8")


def export(page: Any, item: Any, kind: str) -> Path:
    """Export a conversation as JSON or Markdown from its "⋯" menu; the saved file."""
    item.locator(".conv-menu").click()
    with page.expect_download() as info:
        item.locator(f"[role=menuitem].export-{kind}").click()
    download = info.value
    assert download.failure() is None
    cid = item.get_attribute("data-id")
    assert download.suggested_filename == f"cove-{cid}.{kind}"
    return Path(download.path())


def test_models_view(page: Any) -> None:
    page.click("nav button[data-view='models']")
    row = page.locator(f"#models-table tr[data-model='{MODEL}']")
    row.wait_for()
    sync_api.expect(row.locator("td").nth(3)).to_contain_text("tokens")
    assert row.locator("td").nth(2).inner_text().strip()  # the quantization
    assert page.locator("#catalog li").count() >= 1
    assert "RAM" in page.locator("#catalog li").first.inner_text()


HF_REF = "hf.co/owner/repo:Q4_K_M"
HF_NAME = "hf.co/owner/repo:q4_k_m"


@pytest.fixture(scope="module")
def fake_hf() -> Iterator[FakeHF]:
    """Hugging Face on loopback: a valid 2 MB GGUF whose body takes about 2 s to send."""
    with FakeHF() as hf:
        data = make_gguf(tensors=[("token_embd.weight", (256, 4096), GGML_F16)])
        hf.add_file("owner", "repo", "repo-Q4_K_M.gguf", data, lfs=True)
        hf.slow = 2.0 / (len(data) / (16 * 1024))  # 16 KiB a chunk
        yield hf


@pytest.fixture(scope="module")
def hf_server(
    model_home: Path, tmp_path_factory: pytest.TempPathFactory, fake_hf: FakeHF
) -> Iterator[RealServer]:
    """A `cove serve` of its own that pulls from the fake Hugging Face."""
    with serving(model_home, tmp_path_factory.mktemp("web-hf"), COVE_HF_ENDPOINT=fake_hf.url) as real:
        yield real


def test_pull_progress_and_delete(browser: Any, hf_server: RealServer, fake_hf: FakeHF) -> None:
    with opened(browser, hf_server) as page:
        page.click("nav button[data-view='models']")
        page.locator(f"#models-table tr[data-model='{MODEL}']").wait_for()
        seen_before = len(REQUESTS)
        page.evaluate(  # every value the bar takes, as the page sets it
            """() => {
                const bar = document.querySelector('#pull-progress');
                window.__bar = [];
                new MutationObserver(() => window.__bar.push([bar.value, bar.max]))
                    .observe(bar, { attributes: true, attributeFilter: ['value', 'max'] });
            }"""
        )
        page.fill("#pull-name", HF_REF)
        page.click("#pull-form button")
        sync_api.expect(page.locator("#pull-text")).to_have_text(f"{HF_REF} is ready.", timeout=60_000)
        row = page.locator(f"#models-table tr[data-model='{HF_NAME}']")
        row.wait_for()
        assert page.locator("#pull-progress").evaluate("p => p.value") == 1
        values: list[list[float]] = page.evaluate("() => window.__bar")
        middle = [(v, m) for v, m in values if m > 1 and 0 < v < m]
        assert middle, values  # the bar moved through the download, not just from empty to full
        assert fake_hf.seen("GET", "/resolve/main/repo-Q4_K_M.gguf")  # the server did fetch it
        names = [m["name"] for m in httpx.get(hf_server.url + "/api/tags").json()["models"]]
        assert HF_NAME in names
        page_requests = REQUESTS[seen_before:]
        assert page_requests and all(urlsplit(u).hostname == "127.0.0.1" for u in page_requests)
        assert not any(fake_hf.url in u for u in page_requests)  # the pull is the server's, not the page's
        r = httpx.post(hf_server.url + "/api/copy", json={"source": MODEL, "destination": SECOND})
        assert r.status_code == 200, r.text
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        page.click("nav button[data-view='models']")
        delete = page.locator(f"#models-table tr[data-model='{SECOND}'] button")
        delete.click()
        sync_api.expect(delete).to_have_text("Really delete?")  # an in-page confirmation
        delete.click()
        sync_api.expect(page.locator(f"#models-table tr[data-model='{SECOND}']")).to_have_count(0)
        names = [m["name"] for m in httpx.get(hf_server.url + "/api/tags").json()["models"]]
        assert SECOND not in names and MODEL in names and HF_NAME in names


def test_rename_and_delete_conversation(page: Any, server: RealServer) -> None:
    send(page, "A conversation to rename.")
    item = page.locator("#conversations li.current")
    cid = item.get_attribute("data-id")
    item.locator(".conv-menu").click()
    item.locator("[role=menuitem].rename").click()
    item.locator("input.rename-input").fill("Renamed by the test")
    item.locator("input.rename-input").press("Enter")
    sync_api.expect(page.locator(f"#conversations li[data-id='{cid}'] .conv-title")).to_have_text(
        "Renamed by the test"
    )
    item = page.locator(f"#conversations li[data-id='{cid}']")
    item.locator(".conv-menu").click()
    item.locator("[role=menuitem].delete").click()
    sync_api.expect(page.locator(f"#conversations li[data-id='{cid}']")).to_have_count(0)
    assert page.locator("#messages .msg").count() == 0  # the open chat was the deleted one
    page.wait_for_timeout(6500)  # past the time to undo
    assert httpx.get(f"{server.url}/api/cove/conversations/{cid}").status_code == 404
    assert page.dialogs == []  # no prompt() or confirm()


def test_usage_view_draws_charts(page: Any) -> None:
    page.click("nav button[data-view='usage']")
    page.locator("#chart-tokens svg rect").first.wait_for()
    assert page.locator("#chart-speed svg rect").count() >= 1
    assert page.locator("#chart-cost svg rect").count() >= 1
    assert MODEL in page.locator("#chart-tokens svg").inner_html()


def test_no_model_installed(page: Any) -> None:
    page.route("**/api/tags", lambda route: route.fulfill(json={"models": []}))
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert "No model is installed" in page.locator("#notice").inner_text()
    page.fill("#prompt", "Hello?")
    page.press("#prompt", "Enter")
    assert "Models" in page.locator("#notice").inner_text()


def test_preselects_the_best_chat_model(page: Any) -> None:
    def store_holds(*names: str) -> None:
        listed = {"models": [{"name": n, "model": n, "size": 1, "details": {}} for n in names]}
        page.unroute("**/api/tags")
        page.route("**/api/tags", lambda route: route.fulfill(json=listed))
        page.reload()
        page.wait_for_selector("body[data-ready='1']")

    store_holds("gemma3:270m", "qwen2.5:0.5b", "smollm2:135m")
    assert page.input_value("#model") == "smollm2:135m"  # the catalog's default chat model
    store_holds("gemma3:270m", "qwen2.5:0.5b")
    assert page.input_value("#model") == "qwen2.5:0.5b"  # any chat model before a base model
    assert page.locator("#notice").is_hidden()
    assert page.locator("#model option").all_inner_texts() == ["gemma3:270m (base model)", "qwen2.5:0.5b"]

    store_holds("gemma3:270m")  # only a base model: chosen, and said to be one
    assert page.input_value("#model") == "gemma3:270m"
    assert page.locator("#model").get_attribute("title") == "gemma3:270m is a base model"
    assert "gemma3:270m is a base model" in page.locator("#notice").inner_text()
    store_holds("gemma3:270m", "qwen2.5:0.5b")
    page.select_option("#model", "gemma3:270m")  # picking one by hand says so too
    assert "is a base model" in page.locator("#notice").inner_text()
    page.select_option("#model", "qwen2.5:0.5b")
    assert page.locator("#notice").is_hidden()


def test_busy_and_memory_errors_are_explained(page: Any) -> None:
    busy = {"status": 503, "headers": {"retry-after": "2"}, "json": {"error": "server busy: queue full"}}
    page.route("**/api/chat", lambda route: route.fulfill(**busy))
    page.fill("#prompt", "Anyone there?")
    page.press("#prompt", "Enter")
    sync_api.expect(page.locator("#notice")).to_contain_text("busy")
    assert "Try again in 2 s" in page.locator("#notice").inner_text()
    page.unroute("**/api/chat")
    too_big = "gemma3:270m needs 9.1 GiB for num_ctx 131072 but 2.0 GiB is free; try num_ctx 8192"
    page.route("**/api/chat", lambda route: route.fulfill(status=507, json={"error": too_big}))
    page.fill("#prompt", "And now?")
    page.press("#prompt", "Enter")
    sync_api.expect(page.locator("#notice")).to_have_text(too_big)
    assert page.locator("#send").is_enabled()


def test_api_key_is_asked_for_and_kept_in_the_tab(page: Any) -> None:
    seen: list[str | None] = []

    def needs_key(route: Any) -> None:
        given = route.request.headers.get("authorization")
        seen.append(given)
        if given == "Bearer sesame":
            route.continue_()
        else:
            route.fulfill(status=401, headers={"www-authenticate": "Bearer"}, json={"error": "missing key"})

    page.route("**/api/cove/personas", needs_key)
    page.reload()
    page.locator("#key-dialog").wait_for()
    page.fill("#key", "sesame")
    page.click("#key-form button[value='ok']")
    page.wait_for_selector("body[data-ready='1']")
    assert seen[0] is None and seen[-1] == "Bearer sesame"
    assert page.evaluate("() => sessionStorage.getItem('cove-api-key')") == "sesame"
    assert page.evaluate("() => localStorage.length") == 0


@pytest.fixture(scope="module")
def keyed_server(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """A `cove serve` that wants an API key on every API call."""
    with serving(model_home, tmp_path_factory.mktemp("web-keyed"), COVE_API_KEYS="sesame") as real:
        yield real


def test_export_downloads_with_the_key(browser: Any, keyed_server: RealServer) -> None:
    stamp = "2026-11-28T09:30:00+00:00"
    chat = {"id": "keyed0000001", "title": "Kept behind a key", "model": MODEL,
            "created_at": stamp, "updated_at": stamp, "source": "import", "messages": [
                {"position": 0, "role": "user", "content": "Where do puffins nest?", "created_at": stamp},
                {"position": 1, "role": "assistant", "content": "In burrows.", "created_at": stamp},
            ]}  # fmt: skip
    doc = {"format": "cove.history", "version": 1, "exported_at": stamp, "conversations": [chat]}
    auth = {"authorization": "Bearer sesame"}
    assert httpx.post(keyed_server.url + "/api/cove/import", json=doc, headers=auth).status_code == 200
    path = "/api/cove/conversations/keyed0000001/export?format=json"
    assert httpx.get(keyed_server.url + path).status_code == 401  # so a plain link would fail
    with opened(browser, keyed_server, key="sesame") as page:
        item = page.locator("#conversations li[data-id='keyed0000001']")
        data = json.loads(export(page, item, "json").read_text("utf-8"))
        assert data["format"] == "cove.history"
        assert [m["content"] for m in data["conversations"][0]["messages"]] == [
            "Where do puffins nest?",
            "In burrows.",
        ]
        assert "puffins" in export(page, item, "md").read_text("utf-8")
        assert page.evaluate("() => sessionStorage.getItem('cove-api-key')") == "sesame"


def test_phone_width_sidebar_collapses(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    sidebar = page.locator("#sidebar")
    sync_api.expect(sidebar).to_be_hidden()  # off-screen and out of the tab order
    page.click("#menu")
    sync_api.expect(page.locator("#menu")).to_have_attribute("aria-expanded", "true")
    sync_api.expect(page.locator("#new-chat")).to_be_in_viewport()
    page.keyboard.press("Escape")
    sync_api.expect(page.locator("#menu")).to_have_attribute("aria-expanded", "false")
    sync_api.expect(sidebar).to_be_hidden()
    page.locator("#prompt").focus()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#prompt") == "first line\nsecond line"  # Shift+Enter did not send


XSS_MESSAGES = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "[x](javascript:window.__xss=1)",
    '<iframe src="javascript:window.__xss=1"></iframe>',
    "<svg onload=window.__xss=1>",
    "![](https://example.com/x.png)",
    "<a href='javascript:window.__xss=1'>click</a> and <body onload=window.__xss=1>",
]


def test_hostile_history_stays_inert(page: Any, server: RealServer) -> None:
    stamp = "2026-11-01T09:30:00+00:00"
    messages = [
        {"position": i, "role": "user" if i % 2 == 0 else "assistant", "content": text, "created_at": stamp}
        for i, text in enumerate([*XSS_MESSAGES, "closing words"])
    ]
    doc = {
        "format": "cove.history",
        "version": 1,
        "exported_at": stamp,
        "conversations": [
            {"id": "hostile00001", "title": "<img src=x onerror=window.__xss=1>", "model": MODEL,
             "created_at": stamp, "updated_at": stamp, "source": "import", "messages": messages}
        ],
    }  # fmt: skip
    r = httpx.post(server.url + "/api/cove/import", json=doc)
    assert r.status_code == 200, r.text
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#conversations li[data-id='hostile00001'] .conv-open").click()
    page.locator(".msg.assistant .msg-foot .act-copy").nth(2).wait_for()
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.dialogs == []
    assert page.locator("#messages script, #messages iframe, #messages svg").count() == 0
    assert page.locator("#messages [onerror], #messages [onload]").count() == 0
    assert page.locator("#messages a[href^='javascript']").count() == 0
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in REQUESTS), REQUESTS


DEMO_CODE = 'def add(a: float, b: float) -> float:\n    """Return the sum of a and b."""\n    return a + b\n'


def open_demo(page: Any, server: RealServer) -> None:
    """Import a conversation with a code block and a table, and open it."""
    answer = (
        "Here is a small function with type hints:\n\n"
        f"```python\n{DEMO_CODE}```\n\n"
        "| call | result |\n|---|---|\n| `add(2, 3)` | 5 |\n| `add(0.5, 0.25)` | 0.75 |\n\n"
        "It works for **ints** too, since Python widens them to floats where needed."
    )
    stamp = "2026-11-28T09:30:00+00:00"
    chat = {"id": "demo00000001", "title": "Adding two numbers in Python", "model": MODEL,
            "created_at": stamp, "updated_at": stamp, "source": "import", "messages": [
                {"position": 0, "role": "user", "created_at": stamp,
                 "content": "Write a Python function that adds two numbers."},
                {"position": 1, "role": "assistant", "created_at": stamp, "content": answer,
                 "time_to_first_token_ms": 84, "tokens_per_s": 61.5, "model": MODEL},
            ]}  # fmt: skip
    doc = {"format": "cove.history", "version": 1, "exported_at": stamp, "conversations": [chat]}
    assert httpx.post(server.url + "/api/cove/import", json=doc).status_code == 200
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#conversations li[data-id='demo00000001'] .conv-open").click()
    page.locator(".msg.assistant .copy-code").wait_for()


def test_copy_buttons(page: Any, server: RealServer) -> None:
    open_demo(page, server)
    page.locator(".msg.assistant .copy-code").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == DEMO_CODE
    page.locator(".msg.assistant .act-copy").click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.startswith("Here is a small function") and "| call | result |" in copied
    assert page.locator(".msg.assistant .stats").inner_text() == "first token 84 ms · 61.5 tokens/s"


def test_screenshots(page: Any, server: RealServer) -> None:
    """docs/*.png, written only when COVE_WEB_SCREENSHOTS names a folder (e.g. docs)."""
    folder = os.environ.get("COVE_WEB_SCREENSHOTS")
    if not folder:
        pytest.skip("set COVE_WEB_SCREENSHOTS=docs to refresh the screenshots")
    out = Path(folder)
    out.mkdir(exist_ok=True)
    open_demo(page, server)
    page.locator(".msg.assistant .copy-code").wait_for()
    page.locator("#prompt").blur()
    page.screenshot(path=str(out / "chat.png"))
    page.click("nav button[data-view='models']")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#models-table td')].some(t => /tokens/.test(t.textContent))"
    )
    page.screenshot(path=str(out / "models.png"))
    page.click("nav button[data-view='usage']")
    page.locator("#chart-tokens svg rect").first.wait_for()
    page.screenshot(path=str(out / "usage.png"))


def test_every_request_stayed_local() -> None:
    if not REQUESTS:
        pytest.skip("no browser test ran in this session")
    outside = [u for u in REQUESTS if urlsplit(u).hostname != "127.0.0.1"]
    assert outside == []
