"""cove's tools on the API: `cove_tools` on /api/chat, /v1/chat/completions and /v1/responses; consent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import LiveServer, client, make_app, tiny_cove
from tool_fakes import ToolScriptEngine

from cove.library.local import Cove
from cove.tools import policy

pytestmark = pytest.mark.anyio
ASK = [{"role": "user", "content": "what is 6*7?"}]
CALL = [("calculator", {"expression": "6*7"})]
CONSENT = "/api/cove/tools/consent"


@pytest.fixture
def script() -> ToolScriptEngine:
    return ToolScriptEngine()


@pytest.fixture
def cove(cove_home: Path, script: ToolScriptEngine) -> Iterator[Cove]:
    cove = tiny_cove(cove_home, script)
    policy.enable(cove_home, "calculator")
    yield cove
    cove.close()


async def test_ollama_chat_runs_a_named_tool_and_says_so(cove: Cove, script: ToolScriptEngine) -> None:
    script.script = [CALL]
    async with client(make_app(cove)) as http:
        body = {"model": "tiny", "messages": ASK, "stream": False, "cove_tools": ["calculator"]}
        reply = (await http.post("/api/chat", json=body)).json()
    assert reply["message"]["content"] == "Tool said: 42"
    assert "tool_calls" not in reply["message"]
    assert reply["cove_tools_used"] == ["calculator"]


async def test_ollama_stream_has_a_line_per_tool_run(cove: Cove, script: ToolScriptEngine) -> None:
    script.script = [CALL]
    async with client(make_app(cove)) as http:
        body = {"model": "tiny", "messages": ASK, "cove_tools": ["calculator"]}
        lines = [json.loads(x) for x in (await http.post("/api/chat", json=body)).text.splitlines()]
    notes = [x["cove_tool"] for x in lines if "cove_tool" in x]
    assert notes == [
        {
            "kind": "ran",
            "name": "calculator",
            "arguments": {"expression": "6*7"},
            "call_id": "call_c0x",
            "message": "42",
            "seconds": notes[0]["seconds"],
        }
    ]
    assert lines[-1]["done"] is True and lines[-1]["cove_tools_used"] == ["calculator"]
    assert "tool_calls" not in lines[-1]["message"]  # cove ran it: not a call for the client
    assert "".join(x.get("message", {}).get("content", "") for x in lines).strip() == "Tool said: 42"


async def test_openai_chat_runs_a_named_tool(cove: Cove, script: ToolScriptEngine) -> None:
    script.script = [CALL]
    async with client(make_app(cove)) as http:
        body = {"model": "tiny", "messages": ASK, "cove_tools": ["calculator"]}
        reply = (await http.post("/v1/chat/completions", json=body)).json()
        script.script = [CALL]
        stream = await http.post("/v1/chat/completions", json={**body, "stream": True})
    assert reply["choices"][0]["message"]["content"] == "Tool said: 42"
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["cove_tools_used"] == ["calculator"]
    chunks = [json.loads(x[6:]) for x in stream.text.split("\n\n") if x.startswith("data: {")]
    assert [c["cove_tool"]["name"] for c in chunks if "cove_tool" in c] == ["calculator"]
    assert not any(ch["delta"].get("tool_calls") for c in chunks for ch in c["choices"])


async def test_openai_client_tools_still_reach_the_client(cove: Cove, script: ToolScriptEngine) -> None:
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    script.script = [[("get_weather", {"city": "Oslo"})]]
    async with client(make_app(cove)) as http:
        body = {"model": "tiny", "messages": ASK, "tools": [weather], "cove_tools": ["calculator"]}
        reply = (await http.post("/v1/chat/completions", json=body)).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
    }
    assert reply["cove_tools_used"] == []


async def test_a_tool_that_is_off_is_a_400_that_says_how_to_switch_it_on(cove: Cove, cove_home: Path) -> None:
    policy.disable(cove_home, "calculator")
    async with client(make_app(cove)) as http:
        body = {"model": "tiny", "messages": ASK, "stream": False, "cove_tools": ["calculator"]}
        answer = await http.post("/api/chat", json=body)
        unknown = await http.post("/v1/chat/completions", json={**body, "cove_tools": ["nope"]})
    assert answer.status_code == 400 and "cove tools enable calculator" in answer.json()["error"]
    assert unknown.status_code == 400 and "no tool named 'nope'" in unknown.json()["error"]["message"]


async def test_without_cove_tools_an_api_request_offers_none(cove: Cove, script: ToolScriptEngine) -> None:
    async with client(make_app(cove)) as http:
        body = {"model": "tiny", "messages": ASK, "stream": False}
        reply = (await http.post("/api/chat", json=body)).json()
    assert "tools" not in script.requests[0] and "cove_tools_used" not in reply


async def test_an_unknown_consent_is_a_404_and_a_bad_answer_a_400(cove: Cove) -> None:
    async with client(make_app(cove)) as http:
        missing = await http.post("/api/cove/tools/consent", json={"consent_id": "x", "answer": "yes"})
        bad = await http.post("/api/cove/tools/consent", json={"consent_id": "x", "answer": "sure"})
        listed = (await http.get("/api/cove/tools")).json()["tools"]
    assert missing.status_code == 404 and "no tool call is waiting" in missing.json()["error"]
    assert bad.status_code == 400
    assert {r["name"]: r["enabled"] for r in listed} == {"calculator": True, "current_time": False} | {
        r["name"]: False for r in listed if r["name"] not in ("calculator", "current_time")
    }


def test_the_web_turn_waits_for_the_consent_post(cove: Cove, script: ToolScriptEngine) -> None:
    """The stream pauses at the consent line; a POST with yes lets the tool run and the answer go on."""
    script.script = [CALL]
    seen: list[dict[str, Any]] = []
    with LiveServer(make_app(cove)) as url, httpx.Client(base_url=url, timeout=20) as http:
        body = {"model": "tiny", "messages": ASK}
        headers = {"x-cove-source": "web", "x-cove-consent": "ask"}
        with http.stream("POST", "/api/chat", json=body, headers=headers) as response:
            for line in response.iter_lines():
                item = json.loads(line)
                seen.append(item)
                note = item.get("cove_tool")
                if note and note["kind"] == "consent":
                    answer = {"consent_id": note["consent_id"], "answer": "yes"}
                    threading.Thread(
                        target=http.post, args=("/api/cove/tools/consent",), kwargs={"json": answer}
                    ).start()
    kinds = [x["cove_tool"]["kind"] for x in seen if "cove_tool" in x]
    assert kinds == ["consent", "ran"]
    assert seen[-1]["cove_tools_used"] == ["calculator"]


async def test_only_a_client_that_can_ask_is_offered_the_enabled_tools(
    cove: Cove, script: ToolScriptEngine
) -> None:
    """Without `X-Cove-Consent: ask` nobody could answer a consent, so nothing is offered unnamed."""
    async with client(make_app(cove)) as http:
        body = {"model": "tiny", "messages": ASK, "stream": False}
        await http.post("/api/chat", json=body, headers={"x-cove-source": "cli"})
        await http.post("/api/chat", json=body, headers={"x-cove-source": "cli", "x-cove-consent": "ask"})
    assert "tools" not in script.requests[0]
    assert [t["function"]["name"] for t in script.requests[1]["tools"]] == ["calculator"]


# -- /v1/responses ---------------------------------------------------------------------------------


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
