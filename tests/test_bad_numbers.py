"""Inputs that answered 500 and now answer 400: numbers no field can hold, and engine refusals."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from server_fixtures import anyio_backend, client, make_app

from cove.engine.llamacpp import LlamaCppModel
from cove.engine.process import _result
from cove.errors import BadRequest
from cove.library.local import Cove

__all__ = ["anyio_backend"]

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "raw", "says"),
    [
        (
            "/api/chat",
            b'{"model": "tiny", "messages": [], "options": {"seed": ' + b"9" * 5000 + b"}}",
            "4,300 digits",
        ),
        ("/v1/chat/completions", b'{"model": "tiny", "seed": ' + b"1" * 4400 + b"}", "4,300 digits"),
        (
            "/api/chat",
            b'{"model": "tiny", "messages": [], "format": {"maximum": 1e400}}',
            "format.maximum: inf",
        ),
        (
            "/api/chat",
            b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": '
            + b"1" * 400
            + b"}}",
            "finite number",
        ),
    ],
)
async def test_numbers_no_field_can_hold(fake_cove: Cove, path: str, raw: bytes, says: str) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert says in r.text


@pytest.mark.anyio
@pytest.mark.parametrize("keep_alive", ["nanm", "1e999h", "-infs", "infm"])
async def test_durations_that_are_not_durations(fake_cove: Cove, keep_alive: str) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json={**CHAT, "keep_alive": keep_alive})
        ps = await c.get("/api/ps")
    assert r.status_code == 400 and "keep_alive" in r.json()["error"]
    assert ps.status_code == 200


def test_an_engine_that_refuses_a_request_is_a_400_in_process() -> None:
    class Refusing:
        def handle_chat_completions(self, body: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("Failed to parse tools: Missing tool type")

    model = object.__new__(LlamaCppModel)
    model._server = Refusing()
    with pytest.raises(BadRequest, match="Failed to parse tools"):
        model._call("chat", {"messages": []}, None)


def test_an_engine_process_that_refuses_a_request_is_a_400() -> None:
    refused = httpx.Response(500, json={"error": {"code": 500, "message": "Failed to parse tools"}})
    with pytest.raises(BadRequest, match="Failed to parse tools"):
        _result(refused)
    assert _result(httpx.Response(200, json={"choices": []})) == {"choices": []}
