"""OpenAI's Responses API, driven by the official `openai` package against a real uvicorn (fake engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fakes import FakeEngine, FakeModel
from server_fixtures import LiveServer, make_app

from cove.engine.base import ChunkCallback, LoadSpec
from cove.history import History, db_path
from cove.library.local import Cove

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class ToolModel(FakeModel):
    """Calls the first tool it is offered (arguments in two pieces when streaming); else echoes."""

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        tools = body.get("tools")
        if not tools:
            return super().chat(body, on_chunk)
        with self.engine.lock:
            self.engine.requests.append(body)
        name = tools[0]["function"]["name"]
        usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
        if on_chunk is None:
            call = {
                "id": "call_abc",
                "type": "function",
                "function": {"name": name, "arguments": '{"city": "Oslo"}'},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            return {
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": usage,
            }
        first = {
            "index": 0,
            "id": "call_abc",
            "type": "function",
            "function": {"name": name, "arguments": '{"city": '},
        }
        on_chunk({"choices": [{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}]})
        rest = {"index": 0, "function": {"arguments": '"Oslo"}'}}
        on_chunk({"choices": [{"index": 0, "delta": {"tool_calls": [rest]}, "finish_reason": None}]})
        on_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        last = {"choices": [], "usage": usage}
        on_chunk(last)
        return last


class ToolEngine(FakeEngine):
    def __call__(self, spec: LoadSpec) -> FakeModel:
        with self.lock:
            self.loads.append(spec)
        return ToolModel(self, spec)


@pytest.fixture
def engine() -> FakeEngine:
    return ToolEngine()


@pytest.fixture
def api(fake_cove: Cove) -> Iterator[openai.OpenAI]:
    with LiveServer(make_app(fake_cove)) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
def history(fake_cove: Cove) -> Iterator[History]:
    with History(db_path(fake_cove.settings.home)) as store:
        yield store


def test_text_in_text_out(api: openai.OpenAI, history: History) -> None:
    response = api.responses.create(model="tiny", input="hello there", instructions="Be kind.")
    assert response.output_text == "You said: hello there"
    assert response.status == "completed" and response.id.startswith("resp_")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 4)
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant"
    # OpenAI's default is to store a response: here that is a cove conversation, kept locally.
    (kept,) = history.list()
    chat = history.get(kept.id)
    assert (chat.source, chat.system, chat.model) == ("api", "Be kind.", "tiny:latest")


def test_previous_response_id_continues_the_conversation(api: openai.OpenAI, engine: FakeEngine) -> None:
    first = api.responses.create(model="tiny", input="first")
    second = api.responses.create(model="tiny", input="second", previous_response_id=first.id)
    assert second.output_text == "You said: second"
    sent = [(m["role"], m["content"]) for m in engine.requests[-1]["messages"]]
    assert sent == [("user", "first"), ("assistant", "You said: first"), ("user", "second")]
    assert second.previous_response_id == first.id


def test_store_false_keeps_nothing(api: openai.OpenAI, history: History) -> None:
    response = api.responses.create(model="tiny", input="forget me", store=False)
    assert response.output_text == "You said: forget me"
    assert history.list() == []


def test_a_stream_in_the_order_the_sdk_expects(api: openai.OpenAI) -> None:
    events = list(api.responses.create(model="tiny", input="stream me", store=False, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "You said: stream me"
    final = events[-1].response
    assert final.output_text == deltas and final.usage is not None and final.usage.output_tokens == 4


def test_the_sdk_stream_helper(api: openai.OpenAI) -> None:
    with api.responses.stream(model="tiny", input="helper", store=False) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "You said: helper" == final.output_text


def test_function_tools_whole_and_streamed(api: openai.OpenAI, engine: FakeEngine) -> None:
    whole = api.responses.create(
        model="tiny", input="weather?", tools=[WEATHER], tool_choice="required", store=False
    )
    (call,) = whole.output
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments), call.call_id) == (
        "get_weather",
        {"city": "Oslo"},
        "call_abc",
    )
    sent = engine.requests[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["tool_choice"] == "required"

    events = list(
        api.responses.create(model="tiny", input="weather?", tools=[WEATHER], store=False, stream=True)
    )
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert pieces == ['{"city": ', '"Oslo"}']
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(done.arguments) == {"city": "Oslo"}
    (final_call,) = events[-1].response.output
    assert final_call.type == "function_call" and final_call.status == "completed"


def test_function_call_outputs_go_back_as_tool_messages(api: openai.OpenAI, engine: FakeEngine) -> None:
    api.responses.create(
        model="tiny",
        store=False,
        input=[
            {"role": "user", "content": "weather in Oslo?"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
    )
    user, assistant, tool = engine.requests[-1]["messages"]
    assert user == {"role": "user", "content": "weather in Oslo?"}
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


def test_structured_output_reaches_the_engine(api: openai.OpenAI, engine: FakeEngine) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    api.responses.create(
        model="tiny",
        input="json please",
        store=False,
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema}},
    )
    assert engine.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema},
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input_image",
        ),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "only function tools"),
        ({"input": "hi", "previous_response_id": "nonsense"}, "not a stored cove response"),
        ({"input": [{"type": "mystery"}]}, "'mystery' are not supported"),
    ],
)
def test_what_cannot_run_is_a_400(api: openai.OpenAI, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(openai.BadRequestError, match=message):
        api.responses.create(model="tiny", **extra)


def test_an_unknown_model_is_a_404(api: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        api.responses.create(model="nope", input="hi")
    assert caught.value.code == "model_not_found"
