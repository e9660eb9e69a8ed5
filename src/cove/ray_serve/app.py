"""The Ray Serve application: an OpenAI-compatible ingress in front of N replicas of cove's
llama.cpp engine, with conversation affinity (router.py).

The ingress reads each request (it is small and cheap: one replica is plenty), makes the
conversation key cove's remote engine makes, and calls the engine deployment through its handle
with that key as `affinity`, which the router reads. Each engine replica loads the model in its
own Ray actor process: a crash there costs that replica's requests, and Serve starts it again.
Every answer carries `system_fingerprint` naming the replica that made it.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

from ray import serve
from ray.serve.config import RequestRouterConfig
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..engine.base import LoadSpec
from ..engine.child import spec_from_json, spec_to_json
from ..engine.remote import affinity_key
from ..errors import BadRequest, CoveError

KINDS = {"/v1/chat/completions": "chat", "/v1/completions": "complete", "/v1/embeddings": "embed"}
ROUTER = "cove.ray_serve.router:ConversationRouter"


class EngineReplica:
    """One replica: the model loaded by cove's in-process engine (LlamaCppModel)."""

    def __init__(self, spec_json: str) -> None:
        from ..engine.llamacpp import LlamaCppModel

        self.spec = spec_from_json(spec_json)
        for path in (self.spec.model_path, self.spec.adapter_path, self.spec.draft_path):
            if path and not os.path.exists(path):  # a node that joined after the deploy's check
                raise RuntimeError(
                    f"{path} is not on this node ({os.uname().nodename}): cove's store must be on "
                    "a folder shared at the same path on every node, or the file copied there"
                )
        self.model = LlamaCppModel(self.spec)
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id if context is not None else str(os.getpid())

    def whole(self, kind: str, body: dict[str, Any], affinity: str | None = None) -> dict[str, Any]:
        try:
            result = _call(self.model, kind, body, None)
        except CoveError as exc:
            return _error(exc)
        return {**result, "system_fingerprint": self.replica}

    def stream(
        self, kind: str, body: dict[str, Any], affinity: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Each chunk as the engine makes it; when the caller goes away Serve closes this
        generator, and the engine stops at its next token."""
        chunks: queue.Queue[dict[str, Any] | None] = queue.Queue()
        stop = threading.Event()

        def relay(chunk: dict[str, Any]) -> bool:
            chunks.put({**chunk, "system_fingerprint": self.replica})
            return stop.is_set()

        def work() -> None:
            try:
                _call(self.model, kind, {**body, "stream": True}, relay)
            except CoveError as exc:
                chunks.put(_error(exc))
            except Exception as exc:  # the stream says what went wrong rather than hanging
                chunks.put(_error(CoveError(f"the engine failed: {exc}")))
            finally:
                chunks.put(None)

        worker = threading.Thread(target=work, name="cove-ray-stream", daemon=True)
        worker.start()
        try:
            while (chunk := chunks.get()) is not None:
                yield chunk
        finally:
            stop.set()
            worker.join(timeout=10)

    def check_health(self) -> None:
        """Serve's health check: a replica whose engine is gone is restarted."""
        if not self.model.alive:
            raise RuntimeError("the engine is gone")


def _call(model: Any, kind: str, body: dict[str, Any], on_chunk: Any) -> dict[str, Any]:
    request = {k: v for k, v in body.items() if k not in ("model", "stream_options")}
    if kind == "chat":
        return dict(model.chat(request, on_chunk))
    if kind == "complete":
        return dict(model.complete(request, on_chunk))
    return dict(model.embed(request))


def _error(exc: CoveError) -> dict[str, Any]:
    return {"error": {"message": str(exc), "code": exc.status}}


class Ingress:
    """The OpenAI-compatible HTTP face: /v1/models, chat, completions, embeddings, /health."""

    def __init__(self, engine: Any, model: str, api_key: str | None = None) -> None:
        self.engine = engine
        self.model = model
        self.api_key = api_key

    async def __call__(self, request: Request) -> Response:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _json_error(401, "a wrong or missing API key")
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path in ("/health", "/v1/health"):
            return JSONResponse({"status": "ok"})
        if request.method == "GET" and path == "/v1/models":
            return JSONResponse(
                {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "cove"}]}
            )
        kind = KINDS.get(path)
        if kind is None or request.method != "POST":
            return _json_error(404, f"no {request.method} {path} here")
        try:
            body = await request.json()
        except ValueError:
            return _json_error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _json_error(400, "the body is not a JSON object")
        if body.get("model") not in (None, self.model):
            return _json_error(404, f"this deployment serves {self.model}, not {body.get('model')!r}")
        key = affinity_key(kind, body)
        if body.get("stream") and kind != "embed":
            chunks = self.engine.options(stream=True).stream.remote(kind, body, affinity=key)
            return StreamingResponse(_sse(chunks), media_type="text/event-stream")
        result = await self.engine.whole.remote(kind, body, affinity=key)
        error = result.get("error")
        if error:
            return JSONResponse(result, status_code=int(error.get("code") or 500))
        return JSONResponse(result)


async def _sse(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": status}}, status_code=status)


def build(
    spec: LoadSpec,
    *,
    replicas: int,
    num_cpus: float = 1.0,
    parallel: int = 4,
    api_key: str | None = None,
    max_ongoing: int | None = None,
) -> Any:
    """The Serve application for `spec` (a model from cove's store), ready for `serve.run`."""
    if replicas < 1:
        raise BadRequest("--replicas must be 1 or more")
    sized = replace(spec, num_parallel=parallel, cache_ram_mib=min(spec.cache_ram_mib, 512))
    router: dict[str, Any] = {"request_router_class": ROUTER}  # a dotted path: Serve imports it
    engine: Any = serve.deployment(
        name="cove-engine",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": num_cpus},
        max_ongoing_requests=max_ongoing or parallel * 2,
        request_router_config=RequestRouterConfig(**router),
        health_check_period_s=10,
    )(EngineReplica)
    ingress: Any = serve.deployment(name="cove-ingress", num_replicas=1, ray_actor_options={"num_cpus": 0})(
        Ingress
    )
    return ingress.bind(engine.bind(spec_to_json(sized)), spec.name, api_key)
