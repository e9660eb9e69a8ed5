"""The OpenAI-compatible `/v1` routes: translate to a Call, answer in OpenAI's shapes."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..engine.options import parse_keep_alive
from ..errors import CoveError
from . import conversations
from .bodies import parse
from .generation import Call
from .guard import error_body
from .schemas import OAIChatRequest, OAICompletionRequest, OAIEmbeddingRequest
from .state import state_of
from .streams import primed

SAMPLING = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "logit_bias",
)


def chat_call(req: OAIChatRequest) -> Call:
    body: dict[str, Any] = {
        "messages": [m.model_dump(exclude_none=True) for m in req.messages],
    }
    for name in (
        *SAMPLING,
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "logprobs",
        "top_logprobs",
    ):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    limit = req.max_completion_tokens or req.max_tokens
    if limit:
        body["max_tokens"] = limit
    options = {"num_ctx": req.num_ctx} if req.num_ctx else {}
    return Call(req.model, body, options, parse_keep_alive(req.keep_alive))


async def chat_completions(request: Request) -> Response:
    req = await parse(request, OAIChatRequest)
    call = chat_call(req)
    await conversations.bind(request, call, req.conversation_id, req.persona)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return await answer(request, call, req.stream, include_usage)


async def completions(request: Request) -> Response:
    req = await parse(request, OAICompletionRequest)
    prompt = req.prompt if isinstance(req.prompt, str) else "".join(req.prompt)
    body: dict[str, Any] = {"prompt": prompt}
    for name in (*SAMPLING[:-1], "max_tokens", "logprobs", "echo"):
        value = getattr(req, name, None)
        if value is not None:
            body[name] = value
    call = Call(req.model, body, {}, parse_keep_alive(req.keep_alive), completion=True)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return await answer(request, call, req.stream, include_usage)


async def answer(request: Request, call: Call, stream: bool, include_usage: bool) -> Response:
    state = state_of(request)
    generator = state.generator
    if not stream:
        result = await generator.once(call)
        return JSONResponse(_public(result, call.model), headers=conversations.headers(call))
    chunks = await primed(generator.stream(call))
    return StreamingResponse(
        _sse(chunks, call.model, include_usage, state.scrub),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", **conversations.headers(call)},
    )


async def _sse(
    chunks: AsyncIterator[dict[str, Any]], model: str, include_usage: bool, scrub: Callable[[str], str]
) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            # Completion streams carry usage on their last text chunk; OpenAI clients expect it
            # only when asked, and then alone in a final chunk with no choices.
            # Copies, not edits: the engine thread may still hold (and read) the chunk it sent.
            rest = {k: v for k, v in chunk.items() if k != "usage"}
            if rest.get("choices"):
                yield _event(_public(rest, model))
            if chunk.get("usage") and include_usage:
                yield _event(_public({**rest, "choices": [], "usage": chunk["usage"]}, model))
    except CoveError as exc:
        # Headers are gone by now; the error travels in the stream, cleaned like any error body.
        yield b"data: " + error_body("/v1", exc.status, scrub(str(exc))) + b"\n\n"
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _public(data: dict[str, Any], model: str) -> dict[str, Any]:
    """The engine names the model by its file path; clients get the name they asked for."""
    return {**{k: v for k, v in data.items() if k != "timings"}, "model": model}


async def embeddings(request: Request) -> Response:
    req = await parse(request, OAIEmbeddingRequest)
    inputs = [req.input] if isinstance(req.input, str) else req.input
    vectors, tokens = await state_of(request).embed(req.model, inputs)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _b64(v) if req.encoding_format == "base64" else v,
        }
        for i, v in enumerate(vectors)
    ]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


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


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
]
