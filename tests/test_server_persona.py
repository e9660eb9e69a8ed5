"""A saved persona named in a chat request (`persona` field) on both APIs, on the fake engine."""

from __future__ import annotations

import pytest
from fakes import FakeEngine
from server_fixtures import anyio_backend, client, make_app

from cove.library.local import Cove

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio

PIRATE = "Talk like a pirate."


async def test_persona_system_prompt_leads_on_both_apis(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/cove/personas", json={"name": "pirate", "system": PIRATE})
        assert r.status_code == 200
        for path, extra in (("/api/chat", {"stream": False}), ("/v1/chat/completions", {})):
            body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "persona": "pirate"}
            r = await c.post(path, json={**body, **extra})
            assert r.status_code == 200, r.text
            assert engine.requests[-1]["messages"][0] == {"role": "system", "content": PIRATE}


async def test_the_requests_own_system_prompt_wins(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        await c.post("/api/cove/personas", json={"name": "pirate", "system": PIRATE})
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
        r = await c.post(
            "/api/chat", json={"model": "tiny", "messages": messages, "persona": "pirate", "stream": False}
        )
        assert r.status_code == 200
    sent = engine.requests[-1]["messages"]
    assert [m["content"] for m in sent if m["role"] == "system"] == ["Be brief."]


async def test_unknown_persona_is_a_404_and_nothing_runs(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "persona": "nobody"}
        r = await c.post("/v1/chat/completions", json=body)
        assert r.status_code == 404 and "nobody" in r.json()["error"]["message"]
        r = await c.post("/api/chat", json={**body, "stream": False})
        assert r.status_code == 404 and "nobody" in r.json()["error"]
    assert engine.requests == []
