"""`cove_tools` on /v1/responses: cove runs the named tool, and the response says which ran."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_fixtures import client, make_app, tiny_cove
from tool_fakes import ToolScriptEngine

from cove.library.local import Cove
from cove.tools import policy

pytestmark = pytest.mark.anyio
CALL = [("calculator", {"expression": "6*7"})]


@pytest.fixture
def script() -> ToolScriptEngine:
    return ToolScriptEngine()


@pytest.fixture
def cove(cove_home: Path, script: ToolScriptEngine) -> Iterator[Cove]:
    cove = tiny_cove(cove_home, script)
    policy.enable(cove_home, "calculator")
    yield cove
    cove.close()


async def test_responses_runs_a_named_cove_tool(cove: Cove, script: ToolScriptEngine) -> None:
    body = {"model": "tiny", "input": "what is 6*7?", "store": False, "cove_tools": ["calculator"]}
    async with client(make_app(cove)) as http:
        script.script = [CALL]
        reply = (await http.post("/v1/responses", json=body)).json()
        script.script = [CALL]
        stream = await http.post("/v1/responses", json={**body, "stream": True})
    assert reply["output"][0]["content"][0]["text"] == "Tool said: 42"
    assert [item["type"] for item in reply["output"]] == ["message"]  # cove ran it: no function_call
    assert reply["cove_tools_used"] == ["calculator"]
    events = [json.loads(x.split("data: ", 1)[1]) for x in stream.text.split("\n\n") if "data: " in x]
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Tool said: 42"


async def test_responses_without_cove_tools_offers_none(cove: Cove, script: ToolScriptEngine) -> None:
    async with client(make_app(cove)) as http:
        reply = (
            await http.post("/v1/responses", json={"model": "tiny", "input": "hi", "store": False})
        ).json()
    assert "cove_tools_used" not in reply
    assert [request.get("tools") for request in script.requests] == [None]
