"""OpenAI's Responses API (`POST /v1/responses`), translated onto the same conversation service as chat.

Input items become chat messages (function calls and their outputs included), function tools
and `text.format` become the chat fields the engine knows, and the answer comes back as output
items: one assistant message, and one item per function call. With `store` (OpenAI's default)
the turn is kept as a cove conversation, and a response's id names it, so `previous_response_id`
continues that conversation with only the new input. `store: false` keeps nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..chat.service import TurnRequest
from ..engine.events import ChatAnswer, ChatChunk, ToolCall, Usage, call_id
from ..engine.options import parse_keep_alive
from ..errors import BadRequest, CoveError
from . import conversations
from .bodies import parse
from .guard import error_body
from .schemas import ResponsesRequest
from .state import state_of
from .streams import primed

MESSAGE_ROLES = ("user", "assistant", "system", "developer")


def _token() -> str:
    return secrets.token_hex(12)


def response_id(conversation_id: str | None) -> str:
    """A stored response names its conversation, so `previous_response_id` finds it again."""
    return f"resp_{conversation_id}_{_token()}" if conversation_id else f"resp_{_token()}"


def conversation_of(previous: str) -> str:
    parts = previous.split("_")
    if len(parts) != 3 or parts[0] != "resp":
        raise BadRequest(f"previous_response_id {previous!r} is not a stored cove response")
    return parts[1]


# -- the request ---------------------------------------------------------------------------------


def messages_of(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The instructions and input items as chat messages."""
    out: list[dict[str, Any]] = []
    if req.instructions:
        out.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        return [*out, {"role": "user", "content": req.input}]
    for item in req.input:
        kind = item.get("type") or "message"
        if kind == "message":
            out.append(_message(item))
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id") or call_id(),
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments") or "{}"},
            }
            if out and out[-1]["role"] == "assistant" and "tool_calls" in out[-1]:
                out[-1]["tool_calls"].append(call)  # calls made together stay in one turn
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            out.append({"role": "tool", "tool_call_id": item.get("call_id", ""), "content": text})
        elif kind != "reasoning":  # earlier reasoning is the model's own; nothing to send back
            raise BadRequest(f"input items of type {kind!r} are not supported")
    return out


def _message(item: dict[str, Any]) -> dict[str, Any]:
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise BadRequest(f"an input message's role is one of {', '.join(MESSAGE_ROLES)}, not {role!r}")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts = content if isinstance(content, list) else []
    texts = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            texts.append(str(part.get("text") or ""))
        elif kind in ("input_image", "input_file", "input_audio"):
            raise BadRequest(f"{kind} needs a model that reads it; cove's models here read text only")
        else:
            raise BadRequest(f"content parts of type {kind!r} are not supported")
    return {"role": role, "content": "".join(texts)}


def fields_of(req: ResponsesRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if req.tools:
        fields["tools"] = [_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        fields["tool_choice"] = _tool_choice(req.tool_choice)
    if req.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = req.parallel_tool_calls
    fmt = (req.text.format if req.text else None) or {}
    if fmt.get("type") == "json_schema":
        schema = {"name": fmt.get("name", "response"), "schema": fmt.get("schema") or {}}
        fields["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt.get("type") == "json_object":
        fields["response_format"] = {"type": "json_object"}
    elif fmt.get("type") not in (None, "text"):
        raise BadRequest(f"text.format type {fmt.get('type')!r} is not supported")
    return fields


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise BadRequest(f"only function tools run here, not {tool.get('type')!r} (cove reaches no network)")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise BadRequest("tool_choice is auto, none, required, or {type: function, name: ...}")


def turn_request(req: ResponsesRequest, request: Request) -> TurnRequest:
    options: dict[str, Any] = {}
    for name, value in (("temperature", req.temperature), ("top_p", req.top_p)):
        if value is not None:
            options[name] = value
    if req.max_output_tokens:
        options["num_predict"] = req.max_output_tokens
    conversation = None
    if req.previous_response_id:
        conversation = conversation_of(req.previous_response_id)
    elif req.store is not False:
        conversation = "new"
    return TurnRequest(
        model=req.model,
        messages=messages_of(req),
        options=options,
        fields=fields_of(req),
        conversation=conversation,
        source=conversations.source(request),
        keep_alive=parse_keep_alive(req.keep_alive),
        cove_tools=req.cove_tools,
        collections=None if req.collections is None else list(req.collections),
        strict=req.cove_strict,
    )


# -- the response --------------------------------------------------------------------------------


class Outcome:
    """One response object as it grows: its id, its output items, and its final status."""

    def __init__(self, req: ResponsesRequest, conversation_id: str | None) -> None:
        self.req = req
        self.id = response_id(conversation_id)
        self.created = int(time.time())
        self.message_id = f"msg_{_token()}"
        #: The sources the answer may cite as [n], when the request named collections.
        self.citations: list[dict[str, Any]] | None = None

    def body(
        self, status: str, output: list[dict[str, Any]], usage: Usage | None, finish: str | None
    ) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if finish == "length" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": "incomplete" if incomplete and status == "completed" else status,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": self.req.instructions,
            "max_output_tokens": self.req.max_output_tokens,
            "model": self.req.model,
            "output": output,
            "parallel_tool_calls": self.req.parallel_tool_calls is not False,
            "previous_response_id": self.req.previous_response_id,
            "store": self.req.store is not False,
            "temperature": self.req.temperature,
            "top_p": self.req.top_p,
            "text": {"format": (self.req.text.format if self.req.text else None) or {"type": "text"}},
            "tool_choice": self.req.tool_choice or "auto",
            "tools": self.req.tools or [],
            "truncation": self.req.truncation or "disabled",
            "usage": _usage(usage) if usage else None,
            "metadata": self.req.metadata or {},
            **self._citations(status),
        }

    def _citations(self, status: str) -> dict[str, Any]:
        """cove's `citations`, on a finished response of a request that named collections."""
        return {"citations": self.citations} if self.citations is not None and status != "in_progress" else {}

    def message(self, text: str, status: str = "completed") -> dict[str, Any]:
        part = {"type": "output_text", "text": text, "annotations": []}
        return {
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": [part] if status == "completed" else [],
        }

    def output(self, answer: ChatAnswer) -> list[dict[str, Any]]:
        items = [self.message(answer.content)] if answer.content or not answer.tool_calls else []
        return items + [function_call(c) for c in answer.tool_calls]


def function_call(call: ToolCall, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id or f"fc_{_token()}",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments if status == "completed" else "",
        "status": status,
    }


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


async def create(request: Request) -> Response:
    req = await parse(request, ResponsesRequest)
    state = state_of(request)
    turn = await state.generator.prepare(turn_request(req, request))
    outcome = Outcome(req, turn.conversation_id)
    outcome.citations = turn.citations_json()
    if not req.stream:
        answer = await state.generator.once(turn, request)
        body = outcome.body("completed", outcome.output(answer), answer.usage, answer.finish_reason)
        if turn.tools:
            body["cove_tools_used"] = turn.tools_used_names()
        return JSONResponse(body, headers=conversations.headers(turn))
    events = await primed(state.generator.stream(turn))  # an engine that fails at once gets a real status
    return StreamingResponse(
        Streamer(outcome).sse(events, state.scrub),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", **conversations.headers(turn)},
    )


class Streamer:
    """The Responses API's typed server-sent events, in the order its SDKs expect them."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.sequence = 0
        self.text: list[str] = []
        self.message_index: int | None = None
        self.calls: dict[int, dict[str, Any]] = {}  # tool-call index -> its output item, growing
        self.items: list[dict[str, Any]] = []

    def event(self, kind: str, **data: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()

    async def sse(
        self, events: AsyncIterator[ChatChunk], scrub: Callable[[str], str]
    ) -> AsyncIterator[bytes]:
        started = self.outcome.body("in_progress", [], None, None)
        yield self.event("response.created", response=started)
        yield self.event("response.in_progress", response=started)
        try:
            async for event in events:
                if event.done:
                    for chunk in self.finish(event):
                        yield chunk
                    return
                for chunk in self.piece(event):
                    yield chunk
        except CoveError as exc:
            message = json.loads(error_body("/v1", exc.status, scrub(str(exc))))["error"]
            yield self.event("error", code=message["code"], message=message["message"], param=None)
            failed = self.outcome.body("failed", self.items, None, None)
            yield self.event("response.failed", response={**failed, "error": message})

    def piece(self, event: ChatChunk) -> list[bytes]:
        out: list[bytes] = []
        if event.content:
            if self.message_index is None:
                out += self._open_message()
            self.text.append(event.content)
            out.append(
                self.event("response.output_text.delta", delta=event.content, logprobs=[], **self._where())
            )
        for piece in event.tool_calls:
            entry = self.calls.get(piece.index)
            if entry is None:
                entry = function_call(ToolCall(piece.id or call_id(), piece.name, ""), "in_progress")
                self.calls[piece.index] = entry
                self.items.append(entry)
                out.append(
                    self.event("response.output_item.added", output_index=len(self.items) - 1, item=entry)
                )
            entry["arguments"] += piece.arguments
            if piece.arguments:
                where = {"item_id": entry["id"], "output_index": self.items.index(entry)}
                out.append(
                    self.event("response.function_call_arguments.delta", delta=piece.arguments, **where)
                )
        return out

    def _open_message(self) -> list[bytes]:
        item = self.outcome.message("", "in_progress")
        self.items.append(item)
        self.message_index = len(self.items) - 1
        part = {"type": "output_text", "text": "", "annotations": []}
        return [
            self.event("response.output_item.added", output_index=self.message_index, item=item),
            self.event("response.content_part.added", part=part, **self._where()),
        ]

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.outcome.message_id, "output_index": self.message_index, "content_index": 0}

    def finish(self, event: ChatChunk) -> list[bytes]:
        out: list[bytes] = []
        if self.message_index is None and not self.calls:
            out += self._open_message()  # an empty answer is still one (empty) message
        if self.message_index is not None:
            text = "".join(self.text)
            done = self.outcome.message(text)
            self.items[self.message_index] = done
            out.append(self.event("response.output_text.done", text=text, logprobs=[], **self._where()))
            out.append(self.event("response.content_part.done", part=done["content"][0], **self._where()))
            out.append(self.event("response.output_item.done", output_index=self.message_index, item=done))
        for entry in self.calls.values():
            index = self.items.index(entry)
            entry["status"] = "completed"
            where = {"item_id": entry["id"], "output_index": index}
            out.append(
                self.event("response.function_call_arguments.done", arguments=entry["arguments"], **where)
            )
            out.append(self.event("response.output_item.done", output_index=index, item=entry))
        final = self.outcome.body("completed", self.items, event.usage, event.finish_reason)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        out.append(self.event(kind, response=final))
        return out


routes = [Route("/v1/responses", create, methods=["POST"])]
