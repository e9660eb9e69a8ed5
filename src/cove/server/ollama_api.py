"""The Ollama-compatible `/api` routes: translate to a Call, answer in Ollama's shapes (NDJSON)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import __version__
from ..chat.service import TurnRequest
from ..engine.events import Assembler, ChatAnswer, ChatChunk, ToolCall, Usage
from ..engine.options import parse_keep_alive
from ..errors import BadRequest, CoveError
from ..library.remote import CONSENT_HEADER
from ..tools.events import ToolEvent
from . import conversations
from .bodies import parse
from .ollama_models import routes as model_routes
from .schemas import OllamaChatRequest, OllamaGenerateRequest, OllamaMessage
from .state import state_of
from .streams import primed

NDJSON = "application/x-ndjson"
#: A client that shows each tool call to the person and posts the answer says so with "ask".


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def to_openai_message(message: OllamaMessage, index: int) -> dict[str, Any]:
    if message.images:
        raise BadRequest("images need a vision model, which cove does not run yet")
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": f"call_{index}_{i}",
                "type": "function",
                "function": {
                    "name": call.function.get("name", ""),
                    "arguments": json.dumps(call.function.get("arguments", {})),
                },
            }
            for i, call in enumerate(message.tool_calls)
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_name or f"call_{index}"
        if message.tool_name:
            out["name"] = message.tool_name
    return out


def response_format(fmt: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    return None


def _extras(req: OllamaChatRequest | OllamaGenerateRequest) -> dict[str, Any]:
    """Engine fields both routes share: the output format and log-probabilities."""
    fields: dict[str, Any] = {}
    fmt = response_format(req.format)
    if fmt:
        fields["response_format"] = fmt
    if req.logprobs:
        fields["logprobs"] = True
        if req.top_logprobs:
            fields["top_logprobs"] = req.top_logprobs
    return fields


def chat_request(req: OllamaChatRequest, request: Request) -> TurnRequest:
    fields = _extras(req)
    if req.tools:
        fields["tools"] = req.tools
    return TurnRequest(
        model=req.model,
        messages=[to_openai_message(m, i) for i, m in enumerate(req.messages)],
        options=req.options or {},
        fields=fields,
        conversation=conversations.requested(req.conversation_id, request),
        persona=req.persona,
        source=conversations.source(request),
        keep_alive=parse_keep_alive(req.keep_alive),
        think=req.think,
        cove_tools=req.cove_tools,
        asks_consent=request.headers.get(CONSENT_HEADER, "").strip().lower() == "ask",
        collections=None if req.collections is None else list(req.collections),
        strict=req.cove_strict,
    )


def generate_request(req: OllamaGenerateRequest) -> TurnRequest:
    if req.template:
        raise BadRequest("a per-request template is not supported; put it in a recipe")
    if req.suffix:
        raise BadRequest("suffix (fill-in-the-middle) is not supported yet")
    options, keep_alive = req.options or {}, parse_keep_alive(req.keep_alive)
    fields = _extras(req)
    if req.raw:
        fields["prompt"] = req.prompt
        return TurnRequest(req.model, [], options, fields, keep_alive=keep_alive, completion=True)
    messages = [{"role": "system", "content": req.system}] if req.system else []
    messages.append({"role": "user", "content": req.prompt})
    # Ollama answers every templated generate with its `context`, and continues one it is given.
    context = list(req.context or [])
    return TurnRequest(
        req.model, messages, options, fields, keep_alive=keep_alive, think=req.think, context=context
    )


async def chat(request: Request) -> Response:
    req = await parse(request, OllamaChatRequest)
    # No messages only loads the model (Ollama's rule), except in a stored conversation: there
    # it answers the conversation as it stands again (the web chat's Regenerate, after a branch).
    if not req.messages and req.conversation_id in (None, "", "new"):
        return await load_only(request, req.model, req.keep_alive, "message")
    return await answer(request, chat_request(req, request), req.stream, "message")


async def generate(request: Request) -> Response:
    req = await parse(request, OllamaGenerateRequest)
    if not req.prompt and not req.system:
        return await load_only(request, req.model, req.keep_alive, "response")
    return await answer(request, generate_request(req), req.stream, "response")


async def load_only(request: Request, model: str, keep_alive: Any, field: str) -> Response:
    """An empty prompt loads the model (or unloads it with keep_alive 0), as Ollama does."""
    seconds = parse_keep_alive(keep_alive)
    state = state_of(request)
    reason = "unload" if seconds == 0 else "load"
    started = time.perf_counter()
    await state.blocking(state.cove.preload, model, seconds)
    empty: Any = {"role": "assistant", "content": ""} if field == "message" else ""
    body = {"model": model, "created_at": now(), field: empty, "done": True, "done_reason": reason}
    if reason == "load":
        body["load_duration"] = int((time.perf_counter() - started) * 1e9)
    return JSONResponse(body)


async def answer(request: Request, wanted: TurnRequest, stream: bool, field: str) -> Response:
    state = state_of(request)
    generator = state.generator
    started = time.perf_counter()
    turn = await generator.prepare(wanted)
    if not stream:
        result = await generator.once(turn, request)
        body = whole(result, wanted.model, field, started)
        if turn.tools:
            body["cove_tools_used"] = turn.tools_used_names()
        if turn.collections:
            body["citations"] = turn.citations_json()
        return JSONResponse(body, headers=conversations.headers(turn))
    events = await primed(generator.stream(turn))
    return StreamingResponse(
        ndjson(events, wanted.model, field, started, state.scrub, turn.citations_json()),
        media_type=NDJSON,
        headers=conversations.headers(turn),
    )


def whole(result: ChatAnswer, model: str, field: str, started: float) -> dict[str, Any]:
    body = {
        "model": model,
        "created_at": now(),
        field: _piece(field, result.content, result.tool_calls, result.reasoning),
        "done": True,
        "done_reason": _reason(result.finish_reason),
        **stats(result.usage, started),
    }
    if result.context is not None and field == "response":
        body["context"] = result.context
    if result.logprobs:
        body["logprobs"] = _logprobs(result.logprobs)
    return body


async def ndjson(
    events: AsyncIterator[ChatChunk],
    model: str,
    field: str,
    started: float,
    scrub: Callable[[str], str],
    citations: list[dict[str, Any]] | None = None,
) -> AsyncIterator[bytes]:
    calls = Assembler()  # Ollama sends tool calls whole, in the last line; they stream in pieces
    used: list[str] | None = None
    try:
        async for event in events:
            if isinstance(event, ToolEvent):  # a line of its own: the web chat and the CLI show it
                used = [*(used or []), *([event.name] if event.kind == "ran" else [])]
                note = {"model": model, "created_at": now(), "cove_tool": event.to_dict(), "done": False}
                yield _line(note)
                continue
            if event.done:
                # Ollama clients wait for `done: true`; it comes once, with the figures.
                so_far = calls.answer()
                final = {
                    "model": model,
                    "created_at": now(),
                    field: _piece(field, "", so_far.tool_calls, ""),
                    "done": True,
                    "done_reason": _reason(event.finish_reason or so_far.finish_reason),
                    **stats(event.usage, started),
                }
                if event.context is not None and field == "response":
                    final["context"] = event.context
                if used is not None:
                    final["cove_tools_used"] = used
                if citations is not None:  # the sources the answer cites as [n]
                    final["citations"] = citations
                yield _line(final)
                return
            calls.add(event)
            if event.content or event.reasoning:
                line = {
                    "model": model,
                    "created_at": now(),
                    field: _piece(field, event.content, [], event.reasoning),
                    "done": False,
                }
                if event.logprobs:
                    line["logprobs"] = _logprobs(event.logprobs)
                yield _line(line)
    except CoveError as exc:
        yield _line({"error": scrub(str(exc))})


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def _piece(field: str, text: str, calls: list[ToolCall], thinking: str) -> Any:
    if field == "response":
        return text
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.parsed_arguments()}} for c in calls
        ]
    return message


def _reason(finish: str | None) -> str:
    return {"length": "length", None: "stop"}.get(finish, "stop")


def _logprobs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's per-token entries in Ollama's shape (token, logprob, bytes, top_logprobs)."""
    keep = ("token", "logprob", "bytes")
    return [
        {
            **{k: e[k] for k in keep if k in e},
            "top_logprobs": [{k: t[k] for k in keep if k in t} for t in e.get("top_logprobs") or []],
        }
        for e in entries
    ]


def stats(usage: Usage | None, started: float) -> dict[str, int]:
    usage = usage or Usage()
    return {
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": int(usage.load_s * 1e9),
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": int((usage.prompt_ms or 0) * 1e6),
        "eval_count": usage.completion_tokens,
        "eval_duration": int((usage.predicted_ms or 0) * 1e6),
    }


#: The Ollama release whose API cove answers like. Clients compare this to decide which calls they
#: may make (a bare "0.1.0" made some treat cove as an Ollama from 2023); cove's own is beside it.
OLLAMA_API_VERSION = "0.13.0"


async def version(_: Request) -> Response:
    return JSONResponse({"version": OLLAMA_API_VERSION, "cove": __version__})


def _route(path: str, endpoint: Callable[..., Any], *methods: str) -> Route:
    return Route(path, endpoint, methods=list(methods))


routes = [
    _route("/api/chat", chat, "POST"),
    _route("/api/generate", generate, "POST"),
    _route("/api/version", version, "GET"),
    *model_routes,
]
