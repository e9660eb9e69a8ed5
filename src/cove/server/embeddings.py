"""The embedding routes of both APIs: Ollama's /api/embed and /api/embeddings, OpenAI's /v1/embeddings.

Inputs longer than the model's context are cut to fit, as Ollama does by default. Ollama's
`truncate: false` turns that into a 400 that says how long the input is; OpenAI's API has no such
field, so /v1 truncates as Ollama's own OpenAI layer does. `dimensions` other than the model's own
vector size is a 400: no model cove runs can shorten its vectors. A client that leaves, queued
or running, frees its slot within about a second (BAD-INPUTS 16).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import struct
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..engine.embedding import Embeddings
from ..engine.options import checked_options, parse_keep_alive
from .bodies import parse
from .schemas import EmbeddingsRequest, EmbedRequest, OAIEmbeddingRequest
from .state import state_of


async def run_embed(request: Request, model: str, inputs: list[Any], **kwargs: Any) -> Embeddings:
    """The embedding off the event loop; a client that leaves (queued or running) frees its slot
    within about a second: it is dropped from the queue, or stopped before the next batch."""
    state = state_of(request)
    cancel = threading.Event()
    watching = asyncio.create_task(_watch(request, cancel))
    work = functools.partial(state.cove.embed, model, inputs, cancel=cancel, **kwargs)
    try:
        result: Embeddings = await state.blocking(work)
    finally:
        cancel.set()  # also when this handler is itself cancelled: the thread stops too
        watching.cancel()
    return result


async def _watch(client: Request, cancel: threading.Event, every_s: float = 0.2) -> None:
    """Set `cancel` once the client has hung up (its body is read already)."""
    while not cancel.is_set():
        if await client.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(every_s)


def nanoseconds(seconds: float) -> int:
    return int(seconds * 1e9)


async def embed(request: Request) -> Response:
    req = await parse(request, EmbedRequest)
    checked_options(req.options)  # unused by embedders, but garbage is still a 400, as on /api/chat
    inputs = [req.input] if isinstance(req.input, str) else req.input
    result = await run_embed(
        request,
        req.model,
        inputs,
        keep_alive=parse_keep_alive(req.keep_alive),
        truncate=req.truncate is not False,
        dimensions=req.dimensions,
    )
    return JSONResponse(
        {
            "model": req.model,
            "embeddings": result.vectors,
            "total_duration": nanoseconds(result.total_duration_s),
            "load_duration": nanoseconds(result.load_duration_s),
            "prompt_eval_count": result.prompt_tokens,
        }
    )


async def embeddings(request: Request) -> Response:
    """Ollama's older single-prompt endpoint."""
    req = await parse(request, EmbeddingsRequest)
    checked_options(req.options)
    result = await run_embed(request, req.model, [req.prompt], keep_alive=parse_keep_alive(req.keep_alive))
    return JSONResponse({"embedding": result.vectors[0]})


async def openai_embeddings(request: Request) -> Response:
    req = await parse(request, OAIEmbeddingRequest)
    inputs = [req.input] if isinstance(req.input, str) or _is_tokens(req.input) else req.input
    result = await run_embed(request, req.model, list(inputs), dimensions=req.dimensions)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _b64(v) if req.encoding_format == "base64" else v,
        }
        for i, v in enumerate(result.vectors)
    ]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return JSONResponse({"object": "list", "data": data, "model": req.model, "usage": usage})


def _is_tokens(value: Any) -> bool:
    """One input given as token ids, e.g. [1, 2, 3], rather than a list of inputs."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) for v in value)


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


routes = [
    Route("/api/embed", embed, methods=["POST"]),
    Route("/api/embeddings", embeddings, methods=["POST"]),
    Route("/v1/embeddings", openai_embeddings, methods=["POST"]),
]
