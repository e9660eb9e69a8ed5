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
from ..engine.options import parse_keep_alive
from ..errors import BadRequest, CoveError
from . import conversations
from .bodies import parse
from .generation import Call
from .ollama_models import routes as model_routes
from .schemas import OllamaChatRequest, OllamaGenerateRequest, OllamaMessage
from .state import state_of
from .streams import primed

NDJSON = "application/x-ndjson"


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


def chat_call(req: OllamaChatRequest) -> Call:
    body: dict[str, Any] = {
        "messages": [to_openai_message(m, i) for i, m in enumerate(req.messages)],
    }
    if req.tools:
        body["tools"] = req.tools
    fmt = response_format(req.format)
    if fmt:
        body["response_format"] = fmt
    return Call(req.model, body, req.options or {}, parse_keep_alive(req.keep_alive))


def generate_call(req: OllamaGenerateRequest) -> Call:
    if req.template:
        raise BadRequest("a per-request template is not supported; put it in a recipe")
    if req.suffix:
        raise BadRequest("suffix (fill-in-the-middle) is not supported yet")
    options, keep_alive = req.options or {}, parse_keep_alive(req.keep_alive)
    fmt = response_format(req.format)
    if req.raw:
        body: dict[str, Any] = {"prompt": req.prompt}
        if fmt:
            body["response_format"] = fmt
        return Call(req.model, body, options, keep_alive, completion=True)
    messages = [{"role": "system", "content": req.system}] if req.system else []
    body = {"messages": [*messages, {"role": "user", "content": req.prompt}]}
    if fmt:
        body["response_format"] = fmt
    return Call(req.model, body, options, keep_alive)


async def chat(request: Request) -> Response:
    req = await parse(request, OllamaChatRequest)
    if not req.messages:
        return await load_only(request, req.model, req.keep_alive, "message")
    call = chat_call(req)
    await conversations.bind(request, call, req.conversation_id, req.persona)
    return await answer(request, call, req.stream, "message")


async def generate(request: Request) -> Response:
    req = await parse(request, OllamaGenerateRequest)
    if not req.prompt and not req.system:
        return await load_only(request, req.model, req.keep_alive, "response")
    return await answer(request, generate_call(req), req.stream, "response")


async def load_only(request: Request, model: str, keep_alive: Any, field: str) -> Response:
    """An empty prompt loads the model (or unloads it with keep_alive 0), as Ollama does."""
    seconds = parse_keep_alive(keep_alive)
    state = state_of(request)
    reason = "unload" if seconds == 0 else "load"
    await state.blocking(state.cove.preload, model, seconds)
    empty: Any = {"role": "assistant", "content": ""} if field == "message" else ""
    return JSONResponse(
        {"model": model, "created_at": now(), field: empty, "done": True, "done_reason": reason}
    )


async def answer(request: Request, call: Call, stream: bool, field: str) -> Response:
    state = state_of(request)
    generator = state.generator
    started = time.perf_counter()
    if not stream:
        result = await generator.once(call)
        return JSONResponse(whole(result, call.model, field, started), headers=conversations.headers(call))
    chunks = await primed(generator.stream(call))
    return StreamingResponse(
        ndjson(chunks, call.model, field, started, state.scrub),
        media_type=NDJSON,
        headers=conversations.headers(call),
    )


def whole(result: dict[str, Any], model: str, field: str, started: float) -> dict[str, Any]:
    choice = result["choices"][0]
    message = choice.get("message") or {}
    text = message.get("content") or choice.get("text") or ""
    calls = [_ollama_call(c) for c in message.get("tool_calls") or []]
    body = {
        "model": model,
        "created_at": now(),
        field: _piece(field, text, calls),
        "done": True,
        "done_reason": _reason(choice.get("finish_reason")),
    }
    return {**body, **stats(result, started)}


async def ndjson(
    chunks: AsyncIterator[dict[str, Any]],
    model: str,
    field: str,
    started: float,
    scrub: Callable[[str], str],
) -> AsyncIterator[bytes]:
    calls = ToolCallBuffer()
    reason = "stop"
    usage: dict[str, Any] | None = None
    try:
        async for chunk in chunks:
            choice = (chunk.get("choices") or [{}])[0]
            delta = choice.get("delta") or {}
            calls.add(delta.get("tool_calls") or [])
            reason = _reason(choice.get("finish_reason")) or reason
            text = delta.get("content") or choice.get("text") or ""
            if text:
                yield _line(
                    {
                        "model": model,
                        "created_at": now(),
                        field: _piece(field, text, []),
                        "done": False,
                    }
                )
            # Chat streams end with a usage-only chunk; completion streams put the usage on
            # their last chunk, beside its text and finish_reason.
            usage = chunk if chunk.get("usage") else usage
    except CoveError as exc:
        yield _line({"error": scrub(str(exc))})
        return
    # Ollama clients wait for `done: true`; it comes once, even if the engine sent no usage.
    final = {
        "model": model,
        "created_at": now(),
        field: _piece(field, "", calls.finished()),
        "done": True,
        "done_reason": reason,
        **stats(usage or {}, started),
    }
    yield _line(final)


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def _piece(field: str, text: str, calls: list[dict[str, Any]]) -> Any:
    if field == "response":
        return text
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    return message


def _reason(finish: str | None) -> str:
    return {"length": "length", None: ""}.get(finish, "stop")


def _ollama_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        parsed = {"_raw": arguments}
    return {"function": {"name": function.get("name", ""), "arguments": parsed}}


class ToolCallBuffer:
    """Streamed tool calls arrive in pieces (name, then argument text); Ollama sends them whole."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: list[dict[str, Any]]) -> None:
        for delta in deltas:
            entry = self.calls.setdefault(int(delta.get("index", 0)), {"name": "", "arguments": ""})
            function = delta.get("function") or {}
            entry["name"] += function.get("name") or ""
            entry["arguments"] += function.get("arguments") or ""

    def finished(self) -> list[dict[str, Any]]:
        return [_ollama_call({"function": c}) for _, c in sorted(self.calls.items())]


def stats(result: dict[str, Any], started: float) -> dict[str, int]:
    usage = result.get("usage") or {}
    timings = result.get("timings") or {}
    return {
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": int(usage.get("prompt_tokens", 0)),
        "prompt_eval_duration": int(timings.get("prompt_ms", 0) * 1e6),
        "eval_count": int(usage.get("completion_tokens", 0)),
        "eval_duration": int(timings.get("predicted_ms", 0) * 1e6),
    }


async def version(_: Request) -> Response:
    return JSONResponse({"version": __version__})


def _route(path: str, endpoint: Callable[..., Any], *methods: str) -> Route:
    return Route(path, endpoint, methods=list(methods))


routes = [
    _route("/api/chat", chat, "POST"),
    _route("/api/generate", generate, "POST"),
    _route("/api/version", version, "GET"),
    *model_routes,
]
