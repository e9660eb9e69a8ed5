"""The default engine: llama.cpp's server engine in-process through `xllamacpp`."""

from __future__ import annotations

import secrets
from typing import Any

import xllamacpp

from ..errors import BadRequest, EngineError
from .base import ChunkCallback, LoadSpec
from .memory import default_threads


class LlamaCppModel:
    """One `xllamacpp.Server`: continuous batching over `num_parallel` slots, prompt cache on."""

    def __init__(self, spec: LoadSpec) -> None:
        params = xllamacpp.CommonParams()
        params.model.path = str(spec.model_path)
        # llama.cpp splits n_ctx across slots; give every slot the full context asked for.
        params.n_ctx = spec.num_ctx * spec.num_parallel
        params.n_parallel = spec.num_parallel
        params.cpuparams.n_threads = spec.num_threads or default_threads()
        params.cpuparams_batch.n_threads = params.cpuparams.n_threads
        params.verbosity = -1
        params.cache_prompt = True
        # The engine opens its own loopback HTTP listener; lock it with a secret only we know.
        params.api_keys = [secrets.token_urlsafe(32)]
        if spec.template:
            params.chat_template = spec.template
            params.use_jinja = "{" in spec.template
        if spec.adapter_path:
            adapter = xllamacpp.CommonAdapterLoraInfo(str(spec.adapter_path), 1.0)
            params.lora_adapters = [adapter]
        if spec.embedding:
            params.embedding = True
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        try:
            self._server: Any = xllamacpp.Server(params)
        except Exception as exc:  # the engine reports load failures as plain exceptions
            raise EngineError(f"the engine could not load {spec.name}: {exc}") from exc
        self.spec = spec

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        return self._call(self._server.handle_chat_completions, body, on_chunk)

    def complete(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        return self._call(self._server.handle_completions, body, on_chunk)

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(self._server.handle_embeddings, body, None)

    def _call(self, handler: Any, body: dict[str, Any], on_chunk: ChunkCallback | None) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def relay(chunk: dict[str, Any]) -> bool:
            nonlocal last
            if "error" in chunk:
                last = chunk
                return True
            last = chunk
            return bool(on_chunk(chunk)) if on_chunk else False

        try:
            result = handler(body, relay) if on_chunk else handler(body)
        except ValueError as exc:  # the engine's own request validation
            raise BadRequest(str(exc)) from exc
        result = result if isinstance(result, dict) else last
        raise_engine_error(result)
        return result

    def close(self) -> None:
        server, self._server = self._server, None
        del server


def raise_engine_error(result: dict[str, Any]) -> None:
    """The engine answers failures with an error dict; turn it into one of cove's errors."""
    error = result.get("error") if isinstance(result, dict) else None
    if not error:
        return
    message = error.get("message", "engine error") if isinstance(error, dict) else str(error)
    code = error.get("code", 500) if isinstance(error, dict) else 500
    if isinstance(code, int) and 400 <= code < 500:
        raise BadRequest(message)
    raise EngineError(message)
