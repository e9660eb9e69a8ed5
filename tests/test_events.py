"""The engine's dicts parsed once into typed events, and events folded back into a whole answer."""

from __future__ import annotations

from cove.engine.events import Assembler, ChatChunk, ToolCallDelta, answer_of, events_of

USAGE = {
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}},
    "timings": {"prompt_ms": 120.0, "predicted_ms": 30.0, "predicted_per_second": 100.0},
}


def test_a_chunk_becomes_events_and_the_usage_its_own() -> None:
    raw = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}], **USAGE}
    piece, done = events_of(raw)
    assert (piece.content, piece.done, piece.index) == ("Hi", False, 0)
    assert done.done and done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.cached_tokens, done.usage.tokens_per_s) == (9, 4, 100.0)


def test_the_role_only_opening_chunk_is_no_event() -> None:
    assert events_of({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}) == []


def test_tool_call_ids_take_openais_form() -> None:
    first = {"index": 0, "id": "Q7x2", "type": "function", "function": {"name": "f", "arguments": "{"}}
    (event,) = events_of({"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]})
    assert event.tool_calls == [ToolCallDelta(0, "call_Q7x2", "f", "{")]
    already = {**first, "id": "call_abc"}
    (event,) = events_of({"choices": [{"index": 0, "delta": {"tool_calls": [already]}}]})
    assert event.tool_calls[0].id == "call_abc"


def test_streamed_pieces_fold_into_the_whole_answer() -> None:
    whole = Assembler()
    for event in [
        ChatChunk("The "),
        ChatChunk(tool_calls=[ToolCallDelta(0, "call_1", "get", '{"a"')]),
        ChatChunk("end", tool_calls=[ToolCallDelta(0, None, "", ": 1}")], finish_reason="tool_calls"),
        ChatChunk("second", index=1, finish_reason="stop"),
        *events_of({"choices": [], **USAGE}),
    ]:
        whole.add(event)
    answer = whole.answer()
    assert (answer.content, answer.finish_reason) == ("The end", "tool_calls")
    (call,) = answer.tool_calls
    assert (call.id, call.name, call.parsed_arguments()) == ("call_1", "get", {"a": 1})
    assert [(c.index, c.content) for c in answer.choices] == [(0, "The end"), (1, "second")]
    assert answer.usage.completion_tokens == 3


def test_a_whole_result_and_arguments_that_are_not_json() -> None:
    call = {"id": "x", "type": "function", "function": {"name": "g", "arguments": '{"cut'}}
    message = {"role": "assistant", "content": "", "tool_calls": [call]}
    answer = answer_of({"choices": [{"index": 0, "message": message, "finish_reason": "length"}], **USAGE})
    (parsed,) = answer.tool_calls
    assert parsed.id == "call_x"
    assert parsed.parsed_arguments() == {"_raw": '{"cut'}  # kept, not lost, when the answer was cut off
    assert answer.time_to_first_token_s == 0.12
