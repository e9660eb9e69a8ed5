"""The web chat's Privacy page in a real Chromium against a real `cove serve` (no model needed)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from server_fixtures import RealServer, _wait_until_up, cove_script, free_port

from cove.net.ledger import Ledger

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    folder = tmp_path_factory.mktemp("privacy-web")
    home = folder / "home"
    # Not COVE_*, so EGRESS_AUDIT_REPORT stays: the server's hook reports to this session's check.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_") and k != "HF_TOKEN"}
    env["COVE_HOME"] = str(home)
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
        process.wait(timeout=15)


@pytest.fixture
def page(server: RealServer) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        asked: list[str] = []

        def guard(route: Any) -> None:  # nothing may leave the machine, even if the page tried
            asked.append(route.request.url)
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(30_000)
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='1']")
        yield page
        assert errors == []
        assert all(urlsplit(url).hostname == "127.0.0.1" for url in asked), asked
        browser.close()


def test_empty_ledger_is_shown_as_proof_then_entries_appear(page: Any, server: RealServer) -> None:
    page.click("nav button[data-view='privacy']")
    verdict = page.locator("#privacy-verdict")
    verdict.wait_for()
    page.wait_for_function("document.querySelector('#privacy-verdict').textContent.length > 0")
    assert verdict.inner_text() == "The ledger is empty: nothing has left this machine."
    assert verdict.get_attribute("data-left") == "0"
    assert "proof" in (verdict.get_attribute("class") or "")
    assert page.locator("#privacy-ledger").is_hidden()
    assert "only for what you ask for by name" in page.locator("#privacy-summary").inner_text()
    rules = page.locator("#privacy-rules tbody tr")
    assert rules.first.locator("td").first.inner_text() == "pull"
    assert "outside cove's process" in page.locator("#privacy-notes").inner_text()

    # The server's ledger gets a refusal (with markup in the host: it must stay text) and a pull.
    ledger = Ledger(server.home)
    ledger.record(
        "tool:fetch_url", "<img src=x onerror=alert(1)>.example", 443, "refused", "tool fetch_url is off"
    )
    row = ledger.record("pull", "huggingface.co", 443, "allowed", "a model you asked for by name")
    ledger.finish(row, 900, 2_500_000)
    ledger.close()
    page.click("nav button[data-view='chat']")
    page.click("nav button[data-view='privacy']")
    page.locator("#privacy-ledger tbody tr").nth(1).wait_for()
    assert verdict.get_attribute("data-left") == "1"
    assert verdict.inner_text() == "1 connection(s) left this machine: 900 bytes sent, 2500000 received."
    first, second = (page.locator("#privacy-ledger tbody tr").nth(i) for i in (0, 1))
    assert first.locator("td").nth(2).inner_text() == "huggingface.co"
    assert first.locator("td").nth(6).inner_text() == "2.5 MB"
    assert "refused" in (second.get_attribute("class") or "")
    assert second.locator("td").nth(2).inner_text() == "<img src=x onerror=alert(1)>.example"
    assert page.locator("#privacy-ledger img").count() == 0
