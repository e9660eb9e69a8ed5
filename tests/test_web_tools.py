"""The web chat's consent dialog, in a real Chromium, against the app on the scripted fake engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_fixtures import LiveServer, make_app, tiny_cove
from tool_fakes import ToolScriptEngine

from cove.library.local import Cove
from cove.tools import policy

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")
#: What a model might be led to send by a pasted page: markup that must stay text in the dialog.
SNEAKY = {"expression": "<img src=x onerror=alert(1)>"}


@pytest.fixture
def script() -> ToolScriptEngine:
    return ToolScriptEngine()


@pytest.fixture
def page(cove_home: Path, script: ToolScriptEngine) -> Iterator[Any]:
    cove: Cove = tiny_cove(cove_home, script)
    policy.enable(cove_home, "calculator")
    with LiveServer(make_app(cove)) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: errors.append(f"a native dialog opened: {d.message}") or d.dismiss())
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']")
        yield page
        browser.close()
        assert errors == []
    cove.close()


def ask(page: Any, text: str) -> Any:
    before = page.locator(".msg.assistant").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    return page.locator(".msg.assistant").nth(before)


@pytest.mark.parametrize(
    ("button", "said", "note"),
    [
        ("yes", "Tool said: 42", "calculator ran"),
        ("no", "Tool said: error: the user did not allow", "not run"),
    ],
)
def test_the_dialog_shows_the_call_and_its_answer_decides(
    page: Any, script: ToolScriptEngine, button: str, said: str, note: str
) -> None:
    script.script = [[("calculator", {"expression": "6*7"})]]
    answer = ask(page, "what is 6*7?")
    dialog = page.locator("dialog.tool-dialog")
    dialog.wait_for()
    assert "calculator" in dialog.inner_text() and '"expression": "6*7"' in dialog.inner_text()
    dialog.locator(f"button[value='{button}']").click()
    answer.locator(".msg-foot .act-copy").wait_for()
    assert said in answer.inner_text()
    assert note in answer.locator(".tool-note").inner_text()
    assert page.locator("dialog.tool-dialog").count() == 0


def test_always_is_not_asked_again_and_arguments_stay_text(page: Any, script: ToolScriptEngine) -> None:
    script.script = [[("calculator", SNEAKY)], "first", [("calculator", {"expression": "1+1"})]]
    first = ask(page, "go")
    dialog = page.locator("dialog.tool-dialog")
    dialog.wait_for()
    assert dialog.locator("img").count() == 0 and "<img src=x" in dialog.inner_text()
    dialog.locator("button[value='always']").click()
    first.locator(".msg-foot .act-copy").wait_for()
    second = ask(page, "again")
    second.locator(".msg-foot .act-copy").wait_for()
    assert "Tool said: 2" in second.inner_text()
    assert page.locator("dialog.tool-dialog").count() == 0


def test_a_reopened_conversation_shows_its_tool_runs_as_text(page: Any, script: ToolScriptEngine) -> None:
    script.script = [[("calculator", SNEAKY)]]
    answer = ask(page, "go")
    page.locator("dialog.tool-dialog button[value='yes']").click()
    answer.locator(".msg-foot .act-copy").wait_for()
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.locator("#conversations .conv-open").first.click()
    note = page.locator("#messages > .tool-note")
    note.wait_for()
    assert note.inner_text().startswith('calculator({"expression": "<img src=x onerror=alert(1)>"}) → ')
    assert page.locator("#messages img").count() == 0


def test_a_tool_step_is_quiet_text_set_apart_and_a_long_one_wraps(
    page: Any, script: ToolScriptEngine
) -> None:
    long_word = "1" * 450 + "+"  # not arithmetic: the error quotes it, one long word
    script.script = [[("calculator", {"expression": long_word})]]
    answer = ask(page, "go")
    page.locator("dialog.tool-dialog button[value='yes']").click()
    answer.locator(".msg-foot .act-copy").wait_for()
    note = answer.locator(".tool-note")
    assert "is not an arithmetic expression" in note.inner_text()
    style = note.evaluate(
        "n => { const s = getComputedStyle(n), b = getComputedStyle(document.body);"
        " return [parseFloat(s.fontSize) < parseFloat(b.fontSize), s.borderLeftStyle, s.whiteSpace,"
        " s.color !== b.color, n.scrollWidth <= n.parentElement.clientWidth]; }"
    )
    assert style == [True, "solid", "pre-wrap", True, True]
    # The answer quotes the long word too: it wraps inside its bubble (code blocks still scroll).
    assert answer.evaluate("n => n.scrollWidth <= n.clientWidth")
