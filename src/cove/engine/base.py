"""The Engine protocol: what any inference backend gives cove (chat, completion, embeddings, rerank)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

#: Receives each streamed chunk (OpenAI chunk shape); returning True stops the generation.
ChunkCallback = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class LoadSpec:
    """Everything that decides how a model is loaded; two equal specs share one loaded model."""

    name: str
    model_path: Path
    digest: str
    num_ctx: int
    num_parallel: int = 1
    num_threads: int = 0
    template: str | None = None
    adapter_path: Path | None = None
    embedding: bool = False
    #: A cross-encoder loaded to rerank (an embedder too, with pooling type rank): scores, no vectors.
    rerank: bool = False
    #: Host RAM for prompts kept after they leave a slot (llama.cpp's cache_ram_mib; its default
    #: until the scheduler sizes it to the model, see memory.prompt_cache_mib).
    cache_ram_mib: int = 8192
    #: A cap on the engine process's writable memory (bytes; 0: none), see memory.process_limit.
    memory_limit: int = 0
    #: The KV-cache type asked for (recipe `PARAMETER kv_cache_type` or the option): "f16",
    #: "q8_0", or None to let the scheduler choose (f16 unless only q8_0 fits).
    kv_type: str | None = None
    #: The KV-cache type the engine is given (llama.cpp's cache_type_k/v), set by the scheduler.
    kv_cache_type: str = "f16"
    #: Prompt-lookup (n-gram) speculative decoding: the most tokens drafted a step, 0 off (recipe
    #: `PARAMETER draft_ngram`, else COVE_DRAFT_NGRAM); see engine/speculative.py.
    draft_ngram: int = 0
    #: A draft model's file (recipe `DRAFT`: a smaller model with the same vocabulary), or None.
    draft_path: str | None = None
    #: A remote model's upstreams (recipe FROM openai+https://HOST/v1#MODEL lines, one a replica);
    #: empty for a model that runs here. A remote model has no file, and no memory is planned.
    remote: tuple[str, ...] = ()
    #: The environment variable holding the upstreams' API key (recipe PARAMETER api_key_env).
    api_key_env: str | None = None
    #: Seconds to wait for an upstream's next byte (recipe PARAMETER remote_timeout); 0: default.
    remote_timeout_s: float = 0.0

    @property
    def key(self) -> tuple[object, ...]:
        load: tuple[object, ...] = (
            self.digest,
            self.num_ctx,
            self.template,
            self.adapter_path,
            self.embedding,
            self.kv_type,
        )
        load = (*load, True) if self.rerank else load  # a reranker's engine is not its embedder's
        remote = (self.remote, self.api_key_env, self.remote_timeout_s) if self.remote else ()
        return (*load, self.draft_ngram, self.draft_path, *remote)


class LoadedModel(Protocol):
    """A model held in memory. Requests are OpenAI-shaped dicts; calls may come from many threads."""

    #: How many engines run it: an embedder may run as one engine per core (engine/threads.py),
    #: and a batch of inputs then gives each of them some.
    engines: int

    @property
    def alive(self) -> bool:
        """False once the engine behind it is gone (its process died): the scheduler loads it again."""
        ...

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        """Chat completion; with on_chunk, streams chunks and returns the final usage/timings."""
        ...

    def complete(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]: ...

    def embed(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{query, documents, top_n}` scored by a reranker: `{results: [{index, relevance_score}]}`."""
        ...

    def prompt_tokens(self, messages: list[dict[str, Any]], *, continuing: bool) -> list[int]:
        """The chat template applied to `messages` (answer prompt added), as token ids. With
        `continuing`, without the begin-of-text token: the prompt follows earlier tokens."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """`text` as token ids, no special tokens added."""
        ...

    def close(self) -> None: ...


#: Loads a model; the scheduler takes one so tests can pass a fake.
EngineFactory = Callable[[LoadSpec], LoadedModel]
