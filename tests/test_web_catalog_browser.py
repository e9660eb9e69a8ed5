"""The Models page in a real Chromium: each catalog card says whether it fits this machine and
how fast it should write (the server's ranking), best here first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_fixtures import RealServer

pytestmark = [pytest.mark.browser, pytest.mark.model]
web = pytest.importorskip("test_web_browser", reason="the browser tests' helpers")
browser = web.browser  # the module's Chromium fixture, shared here


@pytest.fixture(scope="module")
def server(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    with web.serving(model_home, tmp_path_factory.mktemp("web-catalog")) as real:
        yield real


def test_catalog_cards_show_fit_and_speed_best_first(browser: Any, server: RealServer) -> None:
    with web.opened(browser, server) as page:
        # The ranking the page itself received: the load average moves speeds between requests.
        with page.expect_response(lambda r: r.url.endswith("/api/cove/catalog")) as answer:
            page.click("nav button[data-view='models']")
        ranked = answer.value.json()["models"]
        planned = [m for m in ranked if "plan" in m]
        assert planned, ranked[:1]
        cards = page.locator("#catalog li")
        cards.first.wait_for()
        assert cards.count() == len(ranked)
        first = cards.first
        assert first.locator("h4").inner_text() == planned[0]["name"]
        assert first.get_attribute("data-fit") == planned[0]["fit"]
        line = first.locator("p.fit").inner_text()
        assert "tokens/s" in line and "GB" in line, line
        assert first.locator("p.fit").get_attribute("title") == planned[0]["plan"]["reason"]
