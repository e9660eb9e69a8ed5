"""Loopback fakes of OpenAI-compatible upstreams (a plain one, and vLLM's flavour) that can be
told to misbehave: slow, garbage, a 500 mid-stream, a dropped connection, a huge answer, 401."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Upstream:
    """What the fake does; tests change the fields while it runs."""

    name: str = "a"
    models: list[str] = field(default_factory=lambda: ["m"])
    vllm: bool = False
    key: str | None = None
    #: "ok", "slow", "garbage", "error_mid", "drop_mid", "huge", "huge_line", "500", "404", "down"
    mode: str = "ok"
    tokens: int = 5
    token_delay_s: float = 0.0
    slow_s: float = 5.0
    tool_call: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: The client port of each chat request: one port, one kept-alive connection.
    ports: list[int] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    cancelled: int = 0

    def words(self) -> list[str]:
        return [f"{self.name}{i} " for i in range(self.tokens)]


def app(up: Upstream) -> Starlette:
    async def models(request: Request) -> Response:
        if refused := _auth(up, request):
            return refused
        if up.mode in ("down", "500"):
            return JSONResponse({"error": {"message": "broken", "code": 500}}, status_code=500)
        if up.mode == "garbage":
            return PlainTextResponse("<html>not an API</html>")
        if up.mode == "404":
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        owner = "vllm" if up.vllm else "cove"
        data = [{"id": m, "object": "model", "created": 0, "owned_by": owner} for m in up.models]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        if refused := _auth(up, request):
            return refused
        body = await request.json()
        up.requests.append(body)
        up.headers.append(dict(request.headers))
        up.ports.append(request.client.port if request.client else 0)
        if up.mode == "404":
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if up.mode.startswith("redirect "):  # "redirect URL": somewhere else, with the key if followed
            return Response(status_code=307, headers={"location": up.mode.split(" ", 1)[1]})
        if up.mode == "500":
            return JSONResponse({"error": {"message": "out of cheese", "code": 500}}, status_code=500)
        if up.mode == "400":
            return JSONResponse(
                {"error": {"message": "max_tokens is too large", "code": 400}}, status_code=400
            )
        if up.mode == "garbage":
            return PlainTextResponse("<html>hello</html>")
        if up.mode == "slow":
            await asyncio.sleep(up.slow_s)
        if body.get("model") not in up.models:
            message = f"The model `{body.get('model')}` does not exist."
            return JSONResponse({"error": {"message": message, "code": 404}}, status_code=404)
        if up.mode == "huge" and not body.get("stream"):
            return StreamingResponse(_huge_json(), media_type="application/json")
        if body.get("stream"):
            return StreamingResponse(_stream(up, body, request), media_type="text/event-stream")
        text = "".join(up.words())
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if up.tool_call:
            call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return JSONResponse(
            {
                "id": "x",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": _usage(up, len(up.words())),
            }
        )

    return Starlette(
        routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])]
    )


def _auth(up: Upstream, request: Request) -> Response | None:
    if up.key is None or request.headers.get("authorization") == f"Bearer {up.key}":
        return None
    return JSONResponse({"error": {"message": "Invalid API key", "code": 401}}, status_code=401)


def _usage(up: Upstream, completion: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": 7,
        "completion_tokens": completion,
        "total_tokens": 7 + completion,
    }
    # vLLM sends null details; cove sends its cached tokens.
    usage["prompt_tokens_details"] = None if up.vllm else {"cached_tokens": 0}
    return usage


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
    chunk = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **more,
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _stream(up: Upstream, body: dict[str, Any], request: Request) -> AsyncIterator[bytes]:
    up.active += 1
    up.most_active = max(up.most_active, up.active)
    try:
        extra = {"usage": None} if up.vllm else {}
        yield _chunk(body, {"role": "assistant", "content": ""}, **extra)
        if up.mode == "huge":
            piece = (
                b"data: "
                + json.dumps({"choices": [{"index": 0, "delta": {"content": "x" * 60000}}]}).encode()
            )
            for _ in range(20_000):  # about 1.2 GB if nobody stops reading
                yield piece + b"\n\n"
            return
        if up.mode == "huge_line":
            for _ in range(20_000):
                yield b"data: " + b"x" * 60000
            return
        if up.tool_call:
            call = {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "add", "arguments": ""},
            }
            yield _chunk(body, {"tool_calls": [call]}, **extra)
            args = {"index": 0, "function": {"arguments": '{"a": 1}'}}
            yield _chunk(body, {"tool_calls": [args]}, **extra)
            yield _chunk(body, {}, "tool_calls", **extra)
        else:
            for i, word in enumerate(up.words()):
                if i == 2 and up.mode == "error_mid":
                    error = {"error": {"message": "CUDA error: out of memory", "code": 500}}
                    yield b"data: " + json.dumps(error).encode() + b"\n\n"
                    yield b"data: [DONE]\n\n"
                    return
                if i == 2 and up.mode == "drop_mid":
                    raise RuntimeError("the fake upstream drops the connection")
                if await request.is_disconnected():
                    up.cancelled += 1
                    return
                yield _chunk(body, {"content": word}, **extra)
                if up.token_delay_s:
                    await asyncio.sleep(up.token_delay_s)
            yield _chunk(body, {}, "stop", **extra)
        if (body.get("stream_options") or {}).get("include_usage"):
            count = 2 if up.tool_call else len(up.words())
            usage = {"id": "x", "object": "chat.completion.chunk", "model": body["model"], "choices": []}
            yield b"data: " + json.dumps({**usage, "usage": _usage(up, count)}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        up.active -= 1


async def _huge_json() -> AsyncIterator[bytes]:
    yield b'{"choices": [{"index": 0, "message": {"content": "'
    for _ in range(20_000):
        yield b"x" * 60000
    yield b'"}}]}'
