"""The one way in for the CLI, the server and Python users: models, chat, generate, embed, rerank."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..chat.service import ChatService, TurnRequest, TurnStream
from ..config import Settings
from ..engine import calibration
from ..engine.base import EngineFactory, LoadedModel, LoadSpec
from ..engine.embedding import Embeddings, embed_in_batches, embedding_layout
from ..engine.events import Assembler, ChatAnswer, ChatChunk, LoadedInfo, answer_of, events_of
from ..engine.llama_fit import FitCache
from ..engine.memory import kv_cache_type
from ..engine.options import checked_options, context_size, with_recipe
from ..engine.reranking import Reranked, checked_inputs, ranked_of
from ..engine.scheduler import ModelRequest, Scheduler
from ..engine.streaming import EventCallback, stream_events
from ..errors import BadRequest, InvalidRecipe, ModelNotFound
from ..history import History, db_path
from ..recipe import Recipe, looks_like_path, parse_recipe, parse_remote
from ..store import catalog
from ..store.models import WHEEL_FOLDER_PREFIX, Manifest, ModelStore, describe, remote_base, validate_gguf
from ..store.names import parse_name
from ..store.progress import ProgressCallback, ignore_progress
from ..store.pull import pull
from .drafts import check_api_draft, find_draft, store_draft

if TYPE_CHECKING:
    from ..knowledge.service import KnowledgeBase

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma3:270m"
#: Where a reranking model is of use, for the errors that refuse it elsewhere.
RERANKER_USE = "it scores passages for a query (POST /v1/rerank, or `cove kb search --rerank`)"


def engine_factory(settings: Settings) -> EngineFactory:
    """COVE_ENGINE: each model in its own engine process, or in this one ("auto" is resolved to
    "process" by `cove serve`, and means this process for the CLI and the library).

    The engine's modules load only when a model does: `cove list` never imports them.
    """

    def load(spec: LoadSpec) -> LoadedModel:
        if settings.engine != "process":
            from ..engine.llamacpp import LlamaCppModel

            return LlamaCppModel(spec)
        from ..engine.process import IsolatedModel

        return IsolatedModel(spec)

    return load


class Cove:
    """A store plus a scheduler. Thread-safe; one per process is plenty."""

    def __init__(self, settings: Settings | None = None, factory: EngineFactory | None = None):
        self.settings = settings or Settings.from_env()
        self.store = ModelStore(self.settings.home)
        #: llama.cpp's fits of model files, kept in the home: the scheduler's and `cove fit`'s.
        self.fits = FitCache(self.settings.home)
        self.scheduler = Scheduler(
            factory or engine_factory(self.settings),
            max_loaded=self.settings.max_loaded,
            num_parallel=self.settings.num_parallel,
            max_queue=self.settings.max_queue,
            keep_alive_s=self.settings.keep_alive_s,
            on_loaded=calibration.load_recorder(self.settings.home),
            kv_types=("f16", "q8_0"),
            # llama.cpp's fit of the files the real engine loads (a fake one loads none).
            fits=self.fits if factory is None else None,
        )
        self._record_answer = calibration.answer_recorder(self.settings.home)
        #: Whether each timed answer's speeds are kept for `cove fit` (off while it checks itself).
        self.record_answers = True
        self._history: History | None = None
        self._history_lock = threading.Lock()
        self._knowledge: KnowledgeBase | None = None
        #: The one conversation service: every chat turn, from every door, goes through it.
        self.conversations = ChatService(self)

    @property
    def history(self) -> History:
        """The conversation store, opened on first use (many calls never need it)."""
        with self._history_lock:
            if self._history is None:
                self._history = History(db_path(self.settings.home))
            return self._history

    @property
    def knowledge(self) -> KnowledgeBase:
        """The knowledge base (COVE_HOME/knowledge.db), opened on first use."""
        with self._history_lock:
            if self._knowledge is None:
                from ..knowledge.service import KnowledgeBase

                self._knowledge = KnowledgeBase(self)
            return self._knowledge

    def chat_turn(self, request: TurnRequest) -> TurnStream:
        """One turn of a conversation (or a stateless chat), streamed; see `cove.chat.service`."""
        return self.conversations.stream(request)

    # -- the store ---------------------------------------------------------------------------

    def pull(self, ref: str, progress: ProgressCallback = ignore_progress) -> Manifest:
        return pull(self.store, ref, self.settings, progress)

    def models(self) -> list[Manifest]:
        return self.store.list()

    def model(self, name: str) -> Manifest:
        """A stored model; the bundled default is imported on first use, with no network."""
        try:
            return self.store.get(name)
        except ModelNotFound:
            entry = catalog.find(str(parse_name(name)))
            if entry and isinstance(entry.source, catalog.Bundled):
                return self.pull(entry.name)
            raise

    def remove(self, name: str) -> Manifest:
        self.scheduler.stop(str(parse_name(name)))
        return self.store.remove(name)

    def copy(self, source: str, destination: str) -> Manifest:
        return self.store.copy(source, destination)

    def import_model(self, path: Path, name: str | None = None) -> Manifest:
        target = name or path.stem.lower().replace(" ", "-")
        return self.store.import_gguf(path, target, source=f"file {path.name}")

    def create(
        self, name: str, recipe_text: str, folder: Path | None = None, source: str = "recipe"
    ) -> Manifest:
        """Store a recipe under `name`; FROM names a stored model or a GGUF file beside the recipe."""
        where = folder or Path.cwd()
        # Checked against the folder and the store first, so every error names its recipe line.
        recipe = parse_recipe(recipe_text, source=source, folder=where, lookup=self.model)
        base = self._recipe_base(recipe, where)
        recipe = store_draft(recipe, where, self.store.blobs, source)
        return self._save_recipe(name, recipe, base, self._recipe_adapter(recipe, where))

    def create_from_api(
        self, name: str, recipe: Recipe | str, blob: str | None, adapter: str | None
    ) -> Manifest:
        """Like `create`, for remote callers: files come as uploaded blobs, never as paths."""
        parsed = parse_recipe(recipe) if isinstance(recipe, str) else recipe
        if parsed.remote:
            # Where prompts are sent is the machine owner's choice, never a remote caller's.
            raise BadRequest(
                "a remote engine (FROM openai+https://…) is set up on this machine: "
                "`cove create NAME -f Recipe`"
            )
        if blob:
            base = self._blob_model(name, blob)
            parsed.base = base.name = str(parse_name(name))
        elif looks_like_path(parsed.base, slash_is_path=False):
            # Never look at the server's disk for it: even "exists or not" would leak.
            raise BadRequest("FROM a file path works only from the CLI; upload it with /api/blobs")
        else:
            base = self.model(parsed.base)
        if adapter:
            self._blob_model("adapter", adapter)
        check_api_draft(parsed, self.store.blobs)
        parsed.adapter = None
        return self._save_recipe(name, parsed, base, adapter)

    def _blob_model(self, name: str, digest: str) -> Manifest:
        path = self.store.blobs.path(digest)
        if not path.is_file():
            raise BadRequest(f"blob sha256:{digest[:12]}… is not here; upload it to /api/blobs first")
        info = describe(validate_gguf(path))
        return Manifest(name=name, digest=digest, size=path.stat().st_size, source="upload", info=info)

    def _save_recipe(self, name: str, recipe: Recipe, base: Manifest, adapter: str | None) -> Manifest:
        merged = recipe.merged_over(base.recipe_obj())
        return self.store.save(
            Manifest(
                name=str(parse_name(name)),
                digest=base.digest,
                size=base.size,
                source=f"recipe from {base.name}",
                info=base.info,
                recipe=merged.to_dict(),
                adapter_digest=adapter or base.adapter_digest,
            )
        )

    def _recipe_base(self, recipe: Recipe, folder: Path) -> Manifest:
        if recipe.remote:  # served by upstreams: a manifest with no blob
            return remote_base(recipe)
        candidate = (folder / recipe.base).resolve()
        if candidate.is_dir() and looks_like_path(recipe.base, slash_is_path=False):
            return self._converted_base(candidate)
        if recipe.base.endswith(".gguf") or candidate.is_file():
            if not candidate.is_file():
                raise InvalidRecipe(f"recipe: FROM file {recipe.base!r} does not exist")
            # Store the bytes without naming them: naming the file's stem would silently replace
            # a model that already has that name (and fail on stems that are not valid names).
            info = validate_gguf(candidate)
            digest = self.store.blobs.add_file(candidate)
            return Manifest(
                name=candidate.name, digest=digest, size=info.file_size, source="file", info=describe(info)
            )
        return self.model(recipe.base)

    def _converted_base(self, folder: Path) -> Manifest:
        """FROM a BERT's folder in Hugging Face's layout (an embedder, or a cross-encoder that
        reranks): converted into a GGUF once, and its bytes stored like a FROM file's."""
        import tempfile

        from ..store.bert_gguf import convert, folder_reader, is_model_folder

        if not is_model_folder(folder):
            raise InvalidRecipe(
                f"recipe: FROM folder {folder.name!r} has no config.json and model.safetensors"
            )
        # In the folder pulls convert in: one left by a kill -9 is cleared like theirs.
        with tempfile.TemporaryDirectory(dir=self.store.home, prefix=WHEEL_FOLDER_PREFIX) as work:
            out = Path(work) / "model.gguf"
            convert(folder_reader(folder), out, folder.name)
            info = validate_gguf(out)
            digest = self.store.blobs.add_file(out)
        return Manifest(
            name=folder.name, digest=digest, size=info.file_size, source="folder", info=describe(info)
        )

    def _recipe_adapter(self, recipe: Recipe, folder: Path) -> str | None:
        if not recipe.adapter:
            return None
        path = (folder / recipe.adapter).resolve()
        if path.is_file():
            validate_gguf(path)
            return self.store.blobs.add_file(path)
        return self.model(recipe.adapter).digest

    def create_tuned(self, name: str, base_name: str, adapter: Path, tuned: dict[str, Any]) -> Manifest:
        """A fine-tuned model (`cove tune`): FROM its base, ADAPTER the stored LoRA GGUF, and the
        run's data summary, settings and before/after figures kept as `info["tuned"]`."""
        base = self.model(base_name)
        validate_gguf(adapter)
        digest = self.store.blobs.add_file(adapter)
        recipe = Recipe(base=base.name, adapter=f"sha256:{digest}")
        saved = self._save_recipe(name, recipe, base, digest)
        info = {**saved.info, "tuned": tuned}
        return self.store.save(replace(saved, source=f"tuned from {base.name}", info=info))

    # -- running models ----------------------------------------------------------------------

    def prepare(
        self, name: str, options: dict[str, Any] | None = None, *, embedding: bool = False
    ) -> tuple[ModelRequest, Recipe, dict[str, Any]]:
        """Everything needed to run `name`: what to load, its recipe, and the checked options.

        With `embedding`, any model loads as an embedder (its own engine instance, mean pooling);
        a reranker always loads as one, with rank pooling.
        """
        manifest = self.model(name)
        reranker = catalog.is_reranker(manifest)
        recipe = manifest.recipe_obj()
        opts = checked_options(options)
        adapter = self.store.blobs.path(manifest.adapter_digest) if manifest.adapter_digest else None
        drafts = recipe.draft and not embedding and not manifest.is_remote
        draft = find_draft(recipe.draft, self.store.blobs, self.model) if drafts and recipe.draft else None
        drafted = recipe.parameters.get("draft_ngram", self.settings.draft_ngram)  # the option wins
        spec = LoadSpec(
            name=manifest.name,
            model_path=self.store.model_path(manifest),
            digest=manifest.digest,
            num_ctx=context_size(recipe, opts, manifest.info.get("context_length")),
            num_threads=self.settings.num_threads,
            template=recipe.template,
            adapter_path=adapter,
            embedding=manifest.is_embedding or embedding or reranker,
            rerank=reranker,
            kv_type=kv_cache_type(recipe.parameters, opts),
            draft_ngram=int(opts.get("draft_ngram", drafted)),
            draft_path=str(self.store.model_path(draft)) if draft else None,
            **_remote_fields(manifest, recipe),
        )
        # A draft model loads beside its target: its weights and KV cache count in the plan too.
        weights = manifest.size + (draft.size if draft else 0)
        info = {**manifest.info, "draft": draft.info} if draft else manifest.info
        return ModelRequest(spec, info, weights), recipe, opts

    def run_chat(
        self,
        name: str,
        body: dict[str, Any],
        *,
        options: dict[str, Any] | None = None,
        keep_alive: float | None = None,
        on_event: EventCallback | None = None,
        completion: bool = False,
        cancel: threading.Event | None = None,
        context: list[int] | None = None,
    ) -> ChatAnswer:
        """One engine call with the recipe applied: the single implementation of chat for all.

        With `on_event`, every piece is handed over as it is made (returning True stops the
        answer); the return value is the whole answer either way, figures included.

        With `context` (Ollama's token memory of an earlier /api/generate; [] to start one), the
        chat is run as the tokens of that context followed by the templated new messages, and
        the answer carries the context to send next time.
        """
        request, recipe, opts = self.prepare(name, options)
        if request.spec.rerank:
            raise BadRequest(f"{request.spec.name} is a reranking model and cannot chat: {RERANKER_USE}")
        if request.spec.embedding:
            raise BadRequest(f"{request.spec.name} is an embedding model and cannot chat")
        full = with_recipe(body, recipe, opts)
        if context is not None and request.spec.remote:
            # Its tokenizer is upstream: a fresh generate is a chat turn with no context back.
            if context:
                raise BadRequest(f"{request.spec.name} is a remote engine: it cannot continue a `context`")
            context = None
        started = time.perf_counter()
        with self.scheduler.use(request, keep_alive, cancel) as model:
            ready = time.perf_counter()
            as_text = completion or context is not None
            if context is not None:
                full = _with_context(model, body, full, context)
            if as_text:
                full = as_completion(full)
            call = model.complete if as_text else model.chat
            if on_event is None:
                answer = answer_of(call(full, None))
            else:
                answer = _streamed(call, full, on_event, ready)
            if context is not None:
                answer = replace(answer, context=full["prompt"] + model.tokenize(answer.content))
        self._measured(request.spec, answer)
        return answer.with_load(ready - started)

    def _measured(self, spec: LoadSpec, answer: ChatAnswer) -> None:
        """Keep the answer's speeds, which `cove fit` predicts from; a failed write (a full disk,
        a locked database) costs the measurement, never the answer."""
        if not self.record_answers or spec.remote:  # a remote model's speeds are its upstream's
            return
        try:
            self._record_answer(spec, answer.usage)
        except Exception as exc:
            log.warning("could not record the speeds of an answer from %s: %s", spec.name, exc)

    def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        options: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        keep_alive: float | None = None,
    ) -> ChatAnswer:
        """Answer a conversation in one go."""
        body: dict[str, Any] = {"messages": messages}
        if tools:
            body["tools"] = tools
        return self.run_chat(model, body, options=options, keep_alive=keep_alive)

    def stream_chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        options: dict[str, Any] | None = None,
        keep_alive: float | None = None,
    ) -> Generator[ChatChunk, None, None]:
        """Answer token by token; close the iterator (or break) to stop the generation."""
        body = {"messages": messages}
        yield from stream_events(
            lambda relay: self.run_chat(model, body, options=options, keep_alive=keep_alive, on_event=relay)
        )

    def generate(self, model: str, prompt: str, *, options: dict[str, Any] | None = None) -> ChatAnswer:
        """Continue raw text with no chat template (for base models and completion tasks)."""
        return self.run_chat(model, {"prompt": prompt}, options=options, completion=True)

    def embed(
        self,
        model: str,
        inputs: list[Any],
        *,
        keep_alive: float | None = None,
        truncate: bool = True,
        dimensions: int | None = None,
        cancel: threading.Event | None = None,
    ) -> Embeddings:
        """One vector per input (text, or token ids), the tokens they took, and the durations.

        An input longer than the context is cut to fit, or refused when `truncate` is off. A
        `dimensions` other than the model's own size is refused: no model here can shorten its
        vectors (only Matryoshka-trained ones can, and cove does not yet know which those are).
        A set `cancel` gives up, while waiting for a slot or between the engine's batches.
        """
        if not inputs:
            raise BadRequest("nothing to embed: input is empty")
        started = time.perf_counter()
        request, _, _ = self.prepare(model, embedding=True)
        if request.spec.rerank:
            raise BadRequest(f"{request.spec.name} is a reranking model and makes no vectors: {RERANKER_USE}")
        size = request.info.get("embedding_length")
        if dimensions is not None and size and dimensions != size:
            raise BadRequest(f"{request.spec.name} gives {size}-dimensional vectors and cannot shorten them")
        with self.scheduler.use(request, keep_alive, cancel) as loaded:
            ready = time.perf_counter()  # loading (when not loaded yet) and waiting for a slot
            slots = embedding_layout(request.spec.num_ctx, request.spec.num_parallel)[1]
            slots *= loaded.engines  # a batch gives each of an embedder's engines some
            result = embed_in_batches(loaded.embed, inputs, truncate=truncate, cancel=cancel, min_batch=slots)
        vectors = [item["embedding"] for item in sorted(result["data"], key=lambda d: d["index"])]
        if dimensions is not None and vectors and len(vectors[0]) != dimensions:
            raise BadRequest(
                f"{request.spec.name} gives {len(vectors[0])}-dimensional vectors and cannot shorten them"
            )
        return Embeddings(
            vectors=vectors,
            prompt_tokens=int((result.get("usage") or {}).get("prompt_tokens", 0)),
            load_duration_s=ready - started,
            total_duration_s=time.perf_counter() - started,
            truncated=int(result.get("truncated") or 0),
        )

    def rerank(
        self,
        model: str,
        query: str,
        documents: list[str],
        *,
        top_n: int | None = None,
        keep_alive: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Reranked:
        """Each document scored by the reranker `model` for how well it answers `query`, best
        first (the `top_n` best when given). A document too long to fit the context with the
        query is cut to fit (counted in `truncated`). Only a reranking model can rerank."""
        query, documents, top_n = checked_inputs(query, documents, top_n)
        started = time.perf_counter()
        manifest = self.model(model)
        if not catalog.is_reranker(manifest):
            raise BadRequest(
                f"{manifest.name} is a {catalog.model_kind(manifest)} model and cannot rerank; "
                "use a reranking model (`cove list` shows their KIND as reranker)"
            )
        request, _, _ = self.prepare(model)
        body = {"query": query, "documents": documents, "top_n": top_n or len(documents)}
        with self.scheduler.use(request, keep_alive, cancel) as loaded:
            ready = time.perf_counter()
            result = loaded.rerank(body)
        return Reranked(
            results=ranked_of(result, len(documents))[: top_n or len(documents)],
            prompt_tokens=int((result.get("usage") or {}).get("prompt_tokens", 0)),
            load_duration_s=ready - started,
            total_duration_s=time.perf_counter() - started,
            truncated=int(result.get("truncated") or 0),
        )

    def loaded(self) -> list[LoadedInfo]:
        now = time.monotonic()
        return [
            LoadedInfo(
                name=r.spec.name,
                digest=r.spec.digest,
                size=r.size,
                num_ctx=r.spec.num_ctx,
                num_parallel=r.spec.num_parallel,
                active=r.active,
                expires_in_s=None if r.expires_at == float("inf") else r.expires_at - now,
                runs_on=tuple(_host_port(ref) for ref in r.spec.remote),
            )
            for r in self.scheduler.loaded()
        ]

    def preload(self, name: str, keep_alive: float | None = None) -> None:
        """Load a model ahead of use (or unload it with keep_alive 0), as an empty Ollama prompt does."""
        if keep_alive == 0:
            self.stop(name)
            return
        request, _, _ = self.prepare(name)
        with self.scheduler.use(request, keep_alive):
            pass

    def stop(self, name: str) -> bool:
        canonical = str(parse_name(name))
        digest = self.store.get(canonical).digest if self.store.has(canonical) else None
        return self.scheduler.stop(canonical, digest)

    def close(self) -> None:
        self.scheduler.close()
        if self._history is not None:
            self._history.close()
        if self._knowledge is not None:
            self._knowledge.close()

    def __enter__(self) -> Cove:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _remote_fields(manifest: Manifest, recipe: Recipe) -> dict[str, Any]:
    """A remote model's upstreams and their settings (engine/remote.py runs it), else nothing."""
    if not manifest.is_remote:
        return {}
    return {
        "remote": (recipe.base, *recipe.replicas),
        "api_key_env": recipe.parameters.get("api_key_env"),
        "remote_timeout_s": float(recipe.parameters.get("remote_timeout") or 0.0),
    }


def _host_port(remote: str) -> str:
    ref = parse_remote(remote)
    return f"[{ref.host}]:{ref.port}" if ":" in ref.host else f"{ref.host}:{ref.port}"


def _with_context(
    model: LoadedModel, body: dict[str, Any], full: dict[str, Any], context: list[int]
) -> dict[str, Any]:
    """The request as a completion of the earlier context's tokens and the templated new messages.

    The recipe's system prompt is in an earlier context already: then only the new turns follow.
    """
    messages = body["messages"] if context else full["messages"]
    prompt = context + model.prompt_tokens(messages, continuing=bool(context))
    return {**{k: v for k, v in full.items() if k != "messages"}, "prompt": prompt}


def as_completion(body: dict[str, Any]) -> dict[str, Any]:
    """A completion takes its output format as `json_schema`; OpenAI's `response_format` is for chat."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return body
    rest = {k: v for k, v in body.items() if k != "response_format"}
    if fmt.get("type") == "json_object":
        return {**rest, "json_schema": {"type": "object"}}
    if fmt.get("type") == "json_schema":
        return {**rest, "json_schema": (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}}
    return rest


def _streamed(call: Any, body: dict[str, Any], on_event: EventCallback, started: float) -> ChatAnswer:
    """Run a streamed engine call, parsing each chunk once into events, and fold them into the answer."""
    whole = Assembler()
    stopped = False

    def relay(raw: dict[str, Any]) -> bool:
        nonlocal stopped
        for event in events_of(raw):
            if whole.first_token_s is None and (event.content or event.tool_calls):
                whole.first_token_s = time.perf_counter() - started
            whole.add(event)
            if not event.done and not stopped:
                stopped = bool(on_event(event))
        return stopped

    call({**body, "stream": True, "stream_options": {"include_usage": True}}, relay)
    return whole.answer()
