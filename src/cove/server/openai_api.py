"""The OpenAI-compatible `/v1` routes: translate to a Call, answer in OpenAI's shapes."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import __version__
from ..chat.service import TurnRequest
from ..engine.events import ChatAnswer, ChatChunk, Choice, ToolCallDelta, Usage, call_id
from ..engine.options import OPTION_FIELDS, parse_keep_alive
from ..errors import BadRequest, CoveError
from ..tools.events import ToolEvent
from . import conversations
from .bodies import parse
from .guard import error_body
from .schemas import OAIChatRequest, OAICompletionRequest
from .state import state_of
from .streams import primed

#: Fields handed to the engine as they are.
CHAT_FIELDS = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs")


def _options(req: OAIChatRequest | OAICompletionRequest, limit: int | None) -> dict[str, Any]:
    # OpenAI's sampling fields are Ollama's options by the same names (its max_tokens is num_predict),
    # so a stored conversation keeps them like any option.
    named = (name for name in OPTION_FIELDS if name != "num_predict")
    options = {name: getattr(req, name) for name in named if getattr(req, name, None) is not None}
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    if limit:
        options["num_predict"] = limit
    return options


def one_choice(n: int | None, name: str = "n") -> None:
    if n is not None and n > 1:
        raise BadRequest(
            f"{name}: cove answers with one choice per request; send {n} requests for {n} answers"
        )


def chat_request(req: OAIChatRequest, request: Request) -> TurnRequest:
    one_choice(req.n)
    fields = {name: getattr(req, name) for name in CHAT_FIELDS if getattr(req, name) is not None}
    if req.logit_bias:
        fields["logit_bias"] = req.logit_bias
    options = _options(req, req.max_completion_tokens or req.max_tokens)
    if req.num_ctx:
        options["num_ctx"] = req.num_ctx
    return TurnRequest(
        model=req.model,
        messages=[m.model_dump(exclude_none=True) for m in req.messages],
        options=options,
        fields=fields,
        conversation=conversations.requested(req.conversation_id, request),
        persona=req.persona,
        source=conversations.source(request),
        keep_alive=parse_keep_alive(req.keep_alive),
        cove_tools=req.cove_tools,
        collections=None if req.collections is None else list(req.collections),
        strict=req.cove_strict,
    )


async def chat_completions(request: Request) -> Response:
    req = await parse(request, OAIChatRequest)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return await answer(request, chat_request(req, request), req.stream, include_usage, CHAT)


async def completions(request: Request) -> Response:
    req = await parse(request, OAICompletionRequest)
    one_choice(req.n)
    one_choice(req.best_of, "best_of")
    # A list of prompts gets one choice each: the engine answers them side by side.
    fields: dict[str, Any] = {"prompt": req.prompt}
    if req.logprobs is not None:
        fields["logprobs"] = req.logprobs
    if req.echo:
        fields["echo"] = True
    if req.logit_bias:
        fields["logit_bias"] = req.logit_bias
    wanted = TurnRequest(
        req.model,
        options=_options(req, req.max_tokens),
        fields=fields,
        keep_alive=parse_keep_alive(req.keep_alive),
        completion=True,
    )
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return await answer(request, wanted, req.stream, include_usage, TEXT)


async def answer(
    request: Request, wanted: TurnRequest, stream: bool, include_usage: bool, shape: Shape
) -> Response:
    state = state_of(request)
    generator = state.generator
    turn = await generator.prepare(wanted)
    reply = Reply(shape, wanted.model)
    if not stream:
        result = await generator.once(turn, request)
        body = reply.whole(result)
        if turn.tools:
            body["cove_tools_used"] = turn.tools_used_names()
        if turn.collections:
            body["citations"] = turn.citations_json()
        return JSONResponse(body, headers=conversations.headers(turn))
    events = await primed(generator.stream(turn))
    return StreamingResponse(
        _sse(events, reply, include_usage, state.scrub, turn.citations_json()),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", **conversations.headers(turn)},
    )


async def _sse(
    events: AsyncIterator[ChatChunk],
    reply: Reply,
    include_usage: bool,
    scrub: Callable[[str], str],
    citations: list[dict[str, Any]] | None = None,
) -> AsyncIterator[bytes]:
    try:
        if reply.shape is CHAT:
            opening = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None}
            yield _event(reply.chunk([{**opening, "finish_reason": None}]))
        async for event in events:
            if isinstance(event, ToolEvent):  # cove's own field, in a chunk with no choices
                yield _event({**reply.chunk([]), "cove_tool": event.to_dict()})
            elif not event.done:
                yield _event(reply.chunk([reply.delta(event)]))
            else:
                # OpenAI clients expect usage only when asked, alone in a final chunk with no
                # choices; cove's citations travel in that chunk too (or in one of their own).
                final: dict[str, Any] = {}
                if include_usage and event.usage:
                    final["usage"] = _usage(event.usage)
                if citations is not None:
                    final["citations"] = citations
                if final:
                    yield _event({**reply.chunk([]), **final})
    except CoveError as exc:
        # Headers are gone by now; the error travels in the stream, cleaned like any error body.
        yield b"data: " + error_body("/v1", exc.status, scrub(str(exc))) + b"\n\n"
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


@dataclass(frozen=True)
class Shape:
    """Chat completions and text completions differ only in names."""

    object: str
    chunk_object: str
    id_prefix: str


CHAT = Shape("chat.completion", "chat.completion.chunk", "chatcmpl-")
TEXT = Shape("text_completion", "text_completion", "cmpl-")


class Reply:
    """Builds one answer's OpenAI bodies; every chunk of a stream shares its id and timestamp."""

    def __init__(self, shape: Shape, model: str) -> None:
        self.shape = shape
        self.model = model
        self.id = shape.id_prefix + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
        self.created = int(time.time())

    def chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": self.shape.chunk_object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }

    def delta(self, event: ChatChunk) -> dict[str, Any]:
        if self.shape is TEXT:
            return {
                "index": event.index,
                "text": event.content,
                "logprobs": _text_logprobs(event.logprobs),
                "finish_reason": event.finish_reason,
            }
        delta: dict[str, Any] = {}
        if event.content:
            delta["content"] = event.content
        if event.reasoning:
            delta["reasoning_content"] = event.reasoning
        if event.tool_calls:
            delta["tool_calls"] = [_call_delta(piece) for piece in event.tool_calls]
        return {
            "index": event.index,
            "delta": delta,
            "logprobs": {"content": event.logprobs} if event.logprobs else None,
            "finish_reason": event.finish_reason,
        }

    def whole(self, answer: ChatAnswer) -> dict[str, Any]:
        choices = [self._choice(c) for c in answer.choices]
        return {**self.chunk(choices), "object": self.shape.object, "usage": _usage(answer.usage)}

    def _choice(self, choice: Choice) -> dict[str, Any]:
        if self.shape is TEXT:
            logprobs = _text_logprobs(choice.logprobs)
            return {
                "index": choice.index,
                "text": choice.content,
                "logprobs": logprobs,
                "finish_reason": choice.finish_reason,
            }
        message: dict[str, Any] = {"role": "assistant", "content": choice.content}
        if choice.reasoning:
            message["reasoning_content"] = choice.reasoning
        if choice.tool_calls:
            message["content"] = choice.content or None
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in choice.tool_calls
            ]
        return {
            "index": choice.index,
            "message": message,
            "logprobs": {"content": choice.logprobs} if choice.logprobs else None,
            "finish_reason": choice.finish_reason,
        }


def _call_delta(piece: ToolCallDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"index": piece.index, "function": {"arguments": piece.arguments}}
    if piece.id or piece.name:
        out["id"] = piece.id or call_id()
        out["type"] = "function"
        out["function"]["name"] = piece.name
    return out


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _text_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The legacy completions shape: parallel lists of tokens, their logprobs, and the best others."""
    if not entries:
        return None
    offsets, at = [], 0
    for entry in entries:
        offsets.append(at)
        at += len(entry.get("token", ""))
    return {
        "tokens": [e.get("token", "") for e in entries],
        "token_logprobs": [e.get("logprob") for e in entries],
        "top_logprobs": [
            {t.get("token", ""): t.get("logprob") for t in e.get("top_logprobs") or []} for e in entries
        ],
        "text_offset": offsets,
    }


async def list_models(request: Request) -> Response:
    models = state_of(request).cove.models()
    return JSONResponse({"object": "list", "data": [_model(m.name, m.modified) for m in models]})


async def get_model(request: Request) -> Response:
    state = state_of(request)
    # Off the loop: the bundled default model is imported (hundreds of MB) on first use.
    manifest = await state.blocking(state.cove.model, request.path_params["model"])
    return JSONResponse(_model(manifest.name, manifest.modified))


def _model(name: str, modified: str) -> dict[str, Any]:
    from datetime import datetime

    try:
        created = int(datetime.fromisoformat(modified).timestamp())
    except ValueError:
        created = int(time.time())
    return {"id": name, "object": "model", "created": created, "owned_by": "cove"}


FINGERPRINT = f"cove-{__version__}"

routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
]
