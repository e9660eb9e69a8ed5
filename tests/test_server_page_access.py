"""The web page under an API key and on a non-loopback bind: it loads, and its own calls pass."""

from __future__ import annotations

import pytest
from server_fixtures import anyio_backend, client, make_app

from cove.library.local import Cove

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio

KEY = "page-test-key"


async def test_page_and_assets_load_without_the_key_but_data_does_not(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove, api_keys=(KEY,))) as c:
        page = await c.get("/", headers={"accept": "text/html"})
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert (await c.get("/static/app.js")).status_code == 200
        assert (await c.get("/api/tags")).status_code == 401
        assert (await c.get("/api/cove/conversations")).status_code == 401
        assert (await c.get("/api/tags", headers={"authorization": f"Bearer {KEY}"})).status_code == 200


async def test_the_servers_own_origin_may_call_it_on_a_network_bind(fake_cove: Cove) -> None:
    app = make_app(fake_cove, bind_host="0.0.0.0", api_keys=(KEY,))
    own = {"host": "192.0.2.10:11435", "authorization": f"Bearer {KEY}"}
    async with client(app) as c:
        r = await c.post(
            "/api/copy",
            json={"source": "tiny", "destination": "mine"},
            headers={**own, "origin": "http://192.0.2.10:11435"},
        )
        assert r.status_code == 200
        r = await c.post(
            "/api/copy",
            json={"source": "tiny", "destination": "theirs"},
            headers={**own, "origin": "http://evil.example"},
        )
        assert r.status_code == 403
    names = {m.name for m in fake_cove.models()}
    assert "mine:latest" in names and "theirs:latest" not in names


async def test_a_rebinding_name_is_not_the_servers_own_origin(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post(
            "/api/copy",
            json={"source": "tiny", "destination": "x"},
            headers={"host": "evil.example", "origin": "http://evil.example"},
        )
        assert r.status_code == 403
    assert "x:latest" not in {m.name for m in fake_cove.models()}


async def test_unknown_routes_and_methods_answer_in_each_apis_error_shape(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.get("/api/nothing-here")
        assert r.status_code == 404 and "no such endpoint" in r.json()["error"]
        r = await c.get("/v1/nothing-here")
        assert r.status_code == 404 and "no such endpoint" in r.json()["error"]["message"]
        r = await c.get("/api/chat")
        assert r.status_code == 405 and r.json()["error"] == "method not allowed here"
        assert "allow" in {k.lower() for k in r.headers}
