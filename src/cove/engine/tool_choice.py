"""`tool_choice` that forces a call ("required" or one named function), enforced with a JSON schema.

llama.cpp's chat layer takes only "auto", "none" and "required", and under "required" it still
lets the model write text before the call, so a small model can ramble to its token limit and
never call. A forced call is asked of the engine as structured output instead: the tools stay in
the prompt, the answer must be `{"name": ..., "arguments": ...}` for one of the allowed tools, and
that answer is handed back as a tool call in the engine's own shapes (whole and streamed).
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from ..errors import BadRequest
from .base import ChunkCallback

_PASSED_ON = ("auto", "none")
_ID_ALPHABET = string.ascii_letters + string.digits


def forced_tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The tools one of which must be called, or None when the model may answer freely."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if choice is None or choice in _PASSED_ON:
        return None
    if choice == "required":
        return list(tools)
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        chosen = [t for t in tools if _name(t) == name]
        if not chosen:
            raise BadRequest(f"tool_choice names the function {name!r}, which is not among the tools")
        return chosen
    raise BadRequest(
        'tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}'
    )


def forced_request(body: dict[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The engine request: the same prompt (tools included), the answer held to a call schema."""
    if body.get("response_format") not in (None, {"type": "text"}):
        raise BadRequest("response_format cannot be combined with a tool_choice that forces a call")
    if not tools:
        raise BadRequest('tool_choice "required" needs at least one tool')
    request = {k: v for k, v in body.items() if k not in ("tool_choice", "parallel_tool_calls")}
    schema = {"anyOf": [_call_schema(t) for t in tools]} if len(tools) > 1 else _call_schema(tools[0])
    request["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "tool_call", "schema": schema},
    }
    return request


def _name(tool: dict[str, Any]) -> str | None:
    function = tool.get("function") if isinstance(tool, dict) else None
    return function.get("name") if isinstance(function, dict) else None


def _call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return {
        "type": "object",
        "properties": {"name": {"const": function.get("name")}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def call_from_text(text: str) -> dict[str, Any] | None:
    """The tool call the answer spells, in the engine's whole-answer shape; None if it is cut off."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments")
    return {
        "type": "function",
        "function": {
            "name": value["name"],
            "arguments": json.dumps(arguments if arguments is not None else {}),
        },
        "id": new_call_id(),
    }


def new_call_id() -> str:
    """The engine's own id form: 32 letters and digits."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(32))


def as_tool_call_result(result: dict[str, Any]) -> dict[str, Any]:
    """Turn a whole structured answer into the whole answer of a tool call."""
    choices = result.get("choices") or []
    if not choices:
        return result
    choice = choices[0]
    message = choice.get("message") or {}
    call = call_from_text(message.get("content") or "")
    if call is None:  # cut off (finish_reason "length"): hand back the text as it is
        return result
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {**result, "choices": [{**choice, "message": message, "finish_reason": "tool_calls"}]}


class ForcedCallStream:
    """Relays a streamed structured answer as a streamed tool call: the JSON text is held back
    and sent as one tool-call delta when the answer ends, in the engine's chunk shapes."""

    def __init__(self, on_chunk: ChunkCallback) -> None:
        self._on_chunk = on_chunk
        self._text: list[str] = []

    def __call__(self, chunk: dict[str, Any]) -> bool:
        choices = chunk.get("choices") or []
        if not choices:
            return self._on_chunk(chunk)
        choice = choices[0]
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") is None:
            self._text.append(delta.get("content") or "")
            if "role" in delta:  # the opening chunk: pass on the role, hold the text
                return self._on_chunk(_changed(chunk, {"role": delta["role"], "content": None}, None))
            return False
        return self._finish(chunk, choice["finish_reason"])

    def _finish(self, chunk: dict[str, Any], finish_reason: str) -> bool:
        text = "".join(self._text)
        call = call_from_text(text)
        if call is None:  # cut off: say what was written, with the engine's own finish reason
            if text and self._on_chunk(_changed(chunk, {"content": text}, None)):
                return True
            return self._on_chunk(chunk)
        streamed = {"index": 0, "id": call["id"], "type": "function", "function": dict(call["function"])}
        if self._on_chunk(_changed(chunk, {"tool_calls": [streamed]}, None)):
            return True
        return self._on_chunk(_changed(chunk, {}, "tool_calls"))


def _changed(chunk: dict[str, Any], delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    """The chunk with its one choice's delta and finish reason replaced."""
    choice = {**chunk["choices"][0], "delta": delta, "finish_reason": finish_reason}
    return {**chunk, "choices": [choice]}
