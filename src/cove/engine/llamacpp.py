"""The default engine: llama.cpp's server engine in-process through `xllamacpp`."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import xllamacpp

from ..errors import BadRequest, CoveError, EngineError
from ..store.gguf import read_gguf
from ..templates import is_builtin_template_name, tool_template
from .base import ChunkCallback, LoadSpec
from .embedding import SPECIALS_ALLOWANCE, embedding_layout, fit_to_context
from .render_guard import RenderGuard
from .reranking import SEGMENT_B_KEY, as_segment_b, plain_query
from .speculative import apply_speculative
from .threads import choose_threads, embedder_engines
from .tool_choice import ForcedCallStream, as_tool_call_result, forced_request, forced_tools

#: How many pieces an embedder run as several engines cuts a call's inputs into, per engine:
#: more than one, so that an engine the machine holds back leaves its next piece to the others.
PIECES_PER_ENGINE = 2

#: The in-process engine's call for each kind of request.
HANDLERS = {
    "chat": "handle_chat_completions",
    "complete": "handle_completions",
    "embed": "handle_embeddings",
    "rerank": "handle_rerank",
}


class LlamaCppModel:
    """One `xllamacpp.Server`: continuous batching over `num_parallel` slots, prompt cache on."""

    def __init__(self, spec: LoadSpec, listen: str | None = None) -> None:
        """`listen`: a Unix socket path for the engine's own listener (an engine process's, in a
        folder of its own), else one in a private folder made here and removed on close. The
        engine always opens a listener; on a socket file nothing else can reach it: no TCP port
        any local program (or page, through the browser) could try, only this user's folder."""
        self.spec = spec
        #: Why this model cannot take `tools`, or None when it can.
        self.no_tools: str | None = None
        self._secret = secrets.token_urlsafe(32)
        self._folder = None if listen else tempfile.mkdtemp(prefix="cove-engine-")
        params = self._params(spec)  # sets `engines` for a BERT embedder (threads.embedder_engines)
        params.hostnames = [listen or os.path.join(str(self._folder), "engine.sock")]
        try:
            self._server = _start(spec, params) if spec.embedding else self._start_chat(spec, params)
        except BaseException:
            self._remove_folder()
            raise
        #: The embedder's other engines (none for any other model), and who drives them.
        self._others = tuple(_start_others(spec, params, self.engines - 1))
        self.engines = 1 + len(self._others)
        self._pool = ThreadPoolExecutor(len(self._others), "cove-embed") if self._others else None
        self._tokenizer: Tokenizer | None = None
        self._tokenizer_lock = threading.Lock()

    #: An in-process engine lives as long as this process; an engine process can die on its own.
    alive = True
    #: The engine's template and what it fills in, read from its /props on first use.
    _guard: RenderGuard | None = None
    #: How many engines the model runs as; an embedder's other engines and the threads that
    #: call them (none: one engine).
    engines = 1
    _others: tuple[Any, ...] = ()
    _pool: ThreadPoolExecutor | None = None

    @property
    def address(self) -> str:
        """The engine's own listener, `unix:///path` (tokenizer, template, and engine/process.py's API)."""
        return str(self._server.listening_address)

    @property
    def secret(self) -> str:
        return self._secret

    @property
    def other_addresses(self) -> list[str]:
        """The listeners of an embedder's other engines (engine/process.py spreads over them)."""
        return [str(server.listening_address) for server in self._others]

    def _params(self, spec: LoadSpec) -> Any:
        params = xllamacpp.CommonParams()
        params.model.path = str(spec.model_path)
        # llama.cpp splits n_ctx across slots; give every slot the full context asked for.
        params.n_ctx = spec.num_ctx * spec.num_parallel
        params.n_parallel = spec.num_parallel
        # Threads: the idle physical cores at load (or COVE_NUM_THREADS), sleeping, not spinning,
        # while they wait unless the cores are free; threads.py says why (a machine doing other things).
        threads = choose_threads(spec.num_threads)
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads.count
        params.cpuparams.poll = params.cpuparams_batch.poll = threads.poll
        params.verbosity = -1
        params.cache_prompt = True
        # The prompt cache (host RAM, 8 GiB by default) held to what the scheduler counted for it.
        params.cache_ram_mib = spec.cache_ram_mib
        # q8_0 halves the KV cache's memory for a little quality: the planner's last lever.
        kv = getattr(xllamacpp.ggml_type, f"GGML_TYPE_{spec.kv_cache_type.upper()}")
        params.cache_type_k = params.cache_type_v = kv
        # The engine opens its own loopback HTTP listener; lock it with a secret only we know.
        params.api_keys = [self._secret]
        if spec.adapter_path:
            adapter = xllamacpp.CommonAdapterLoraInfo(str(spec.adapter_path), 1.0)
            params.lora_adapters = [adapter]
        if spec.embedding:
            params.embedding = True
            # Rank pooling runs a cross-encoder's classification head on [CLS]: one score a pair.
            pooling = "RANK" if spec.rerank else "MEAN"
            params.pooling_type = getattr(xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{pooling}")
            # An embedder reads a whole input in one micro-batch; past the batch size it fails
            # ("increase the physical batch size"), so the batch holds a slot's whole context.
            batch, slots = embedding_layout(spec.num_ctx, spec.num_parallel)
            params.n_batch = params.n_ubatch = batch
            params.n_parallel, params.n_ctx = slots, spec.num_ctx * slots
            if not spec.rerank and _is_bert(spec):
                self.engines, each = embedder_engines(threads, spec.num_threads)
                params.cpuparams.n_threads = params.cpuparams_batch.n_threads = each
        else:
            apply_speculative(params, spec.draft_ngram, spec.draft_path)
        return params

    def _start_chat(self, spec: LoadSpec, params: Any) -> Any:
        """Load with the template that can show tool calls; without it if the engine refuses it."""
        source, chosen, self.no_tools = choose_template(spec)
        if chosen is None:
            return _start(spec, params)
        params.chat_template = chosen
        # llama.cpp parses tool calls (and enforces tool_choice) only with Jinja templates on.
        params.use_jinja = not is_builtin_template_name(chosen)
        if chosen == source:
            return _start(spec, params)
        try:
            return _start(spec, params)
        except EngineError:
            params.chat_template = source
            self.no_tools = f"{spec.name}'s chat template does not load with tool calls added"
            return _start(spec, params)

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        if body.get("tool_choice") == "none":  # tools offered but not to be used: none is needed
            body = {k: v for k, v in body.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")}
        if body.get("tools") and self.no_tools:
            raise BadRequest(f"{self.spec.name} cannot use tools: {self.no_tools}")
        forced = forced_tools(body) if body.get("tools") else None
        request = body if forced is None else forced_request(body, forced)
        self.check_render(request.get("messages"), request.get("tools"), request.get("chat_template_kwargs"))
        if forced is None:
            return self._call("chat", request, on_chunk)
        if on_chunk is not None:
            return self._call("chat", request, ForcedCallStream(on_chunk))
        return as_tool_call_result(self._call("chat", request, None))

    def check_render(self, messages: Any, tools: Any = None, extra: Any = None) -> None:
        """Render the engine's template in cove's bounded sandbox first (render_guard.py): a
        template that runs away on this conversation is a 400 and never reaches the engine."""
        if self._guard is None:
            with self._listener() as listener:  # the first request to reach the engine
                props = listener.props()
            self._guard = RenderGuard.from_props(self.spec.name, props, self.spec.num_ctx)
        self._guard.check(
            messages if isinstance(messages, list) else [],
            tools if isinstance(tools, list) else None,
            extra if isinstance(extra, dict) else None,
        )

    def complete(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        return self._call("complete", body, on_chunk)

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's embeddings body plus cove's `truncate` (default on): inputs longer than a
        slot's context are cut to fit, or refused with a BadRequest when truncate is off."""
        request = {k: v for k, v in body.items() if k != "truncate"}
        inputs = request.get("input")
        inputs = inputs if isinstance(inputs, list) and not _is_token_list(inputs) else [inputs]
        tokenizer = self._tokens()
        fitted = fit_to_context(
            inputs,
            self.spec.num_ctx,
            tokenizer.tokenize,
            tokenizer.specials,
            truncate=body.get("truncate", True) is not False,
            model=self.spec.name,
        )
        request["input"] = fitted.inputs
        result = self._embed_spread(request) if self._others and len(fitted.inputs) > 1 else None
        result = result or self._call("embed", request, None)
        return {**result, "truncated": fitted.truncated}

    def _embed_spread(self, request: dict[str, Any]) -> dict[str, Any]:
        """The inputs in pieces, PIECES_PER_ENGINE per engine, each engine taking the next piece
        when it is done with one (so one the machine slows down takes fewer), embedded at once
        (an engine's call leaves the interpreter's lock), as one answer: indexes and tokens
        added up, in the inputs' order."""
        inputs: list[Any] = request["input"]
        servers: list[Any] = [None, *self._others]  # None: the first engine, as _call has it
        size = -(-len(inputs) // (PIECES_PER_ENGINE * len(servers)))
        pieces = iter(range(0, len(inputs), size))
        lock, failed = threading.Lock(), threading.Event()

        def drive(server: Any) -> list[tuple[int, dict[str, Any]]]:
            done: list[tuple[int, dict[str, Any]]] = []
            while not failed.is_set():
                with lock:
                    start = next(pieces, None)
                if start is None:
                    break
                body = {**request, "input": inputs[start : start + size]}
                try:
                    done.append((start, self._call("embed", body, None, server)))
                except BaseException:
                    failed.set()  # the others take no more pieces: the call has failed
                    raise
            return done

        assert self._pool is not None
        futures = [self._pool.submit(drive, server) for server in servers[1:]]
        answers = sorted([*drive(None), *(a for f in futures for a in f.result())], key=lambda a: a[0])
        data: list[dict[str, Any]] = []
        tokens = 0
        for start, answer in answers:
            data.extend({**d, "index": start + int(d["index"])} for d in answer["data"])
            tokens += int((answer.get("usage") or {}).get("prompt_tokens", 0))
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {**answers[0][1], "data": data, "usage": usage}

    def rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        """The engine's rerank call: `{query, documents, top_n}` → results, best first, and
        `truncated`: how many documents were cut so that the query and each fit a slot's context
        (the engine refuses a pair longer than its batch)."""
        if not self.spec.rerank:
            raise BadRequest(f"{self.spec.name} is not loaded as a reranker")
        query, documents = str(body.get("query", "")), [str(d) for d in body.get("documents") or []]
        with self._listener():  # a dead engine may be met first here: say it stopped, and why
            if self._segment_b() is not None:
                query, fitted, cut = self._as_segment_b(query, documents)
            else:
                fitted, cut = self._fit_pairs(query, documents)
        result = self._call("rerank", {**body, "query": query, "documents": fitted}, None)
        return {**result, "truncated": cut}

    def _segment_b(self) -> int | None:
        """Where the model's segment-B copies start (a cross-encoder cove converted), or None."""
        if not hasattr(self, "_segment_b_start"):
            start = read_gguf(self.spec.model_path).metadata.get(SEGMENT_B_KEY)
            self._segment_b_start = start if isinstance(start, int) and start > 0 else None
        return self._segment_b_start

    def _as_segment_b(self, query: str, documents: list[str]) -> tuple[str, list[str], int]:
        """The query as the rerank template holds it, and each document as its tokens'
        segment-B copies (cut so that the pair fits a slot), and how many were cut."""
        tokenizer = self._tokens()
        query = plain_query(query)
        room = self.spec.num_ctx - 3 - len(tokenizer.tokenize(query, add_special=False))
        if room < 1:
            limit_tokens = self.spec.num_ctx
            raise BadRequest(f"the query is too long for {self.spec.name}: it takes {limit_tokens} tokens")
        sep = tokenizer.specials[-1]  # [CLS] … [SEP] around every text
        fitted, cut = [], 0
        for document in documents:
            tokens = tokenizer.tokenize(document, add_special=False)
            cut += len(tokens) > room
            fitted.append(as_segment_b(tokens[:room], sep))
        return query, fitted, cut

    def _fit_pairs(self, query: str, documents: list[str]) -> tuple[list[str], int]:
        limit = self.spec.num_ctx - SPECIALS_ALLOWANCE
        question = len(query.encode())
        if question + max((len(d.encode()) for d in documents), default=0) <= limit:
            return documents, 0  # a token takes at least a byte: everything fits
        tokenizer = self._tokens()
        room = limit - len(tokenizer.tokenize(query, add_special=False))
        if room < 1:
            limit_tokens = self.spec.num_ctx
            raise BadRequest(f"the query is too long for {self.spec.name}: it takes {limit_tokens} tokens")
        fitted, cut = [], 0
        for document in documents:
            if question + len(document.encode()) <= limit:
                fitted.append(document)
                continue
            tokens = tokenizer.tokenize(document, add_special=False)
            if len(tokens) > room:
                document, cut = tokenizer.detokenize(tokens[:room]), cut + 1
            fitted.append(document)
        return fitted, cut

    def prompt_tokens(self, messages: list[dict[str, Any]], *, continuing: bool) -> list[int]:
        self.check_render(messages)
        with self._listener() as tokenizer:
            tokens = tokenizer.tokenize(tokenizer.render(messages), add_special=False)
        start = tokenizer.specials[:1]  # the begin-of-text token, when the model has one
        if continuing:
            return tokens[1:] if start and tokens[:1] == start else tokens
        return tokens if tokens[:1] == start else start + tokens

    def tokenize(self, text: str) -> list[int]:
        with self._listener() as tokenizer:
            return tokenizer.tokenize(text, add_special=False)

    @contextmanager
    def _listener(self) -> Iterator[Tokenizer]:
        """The engine's own listener (its template, its tokens): it may be where a dead engine is
        met first, which `_listener_failed` reports."""
        try:
            yield self._tokens()
        except EngineError as exc:
            raise self._listener_failed(exc) from exc

    def _listener_failed(self, error: EngineError) -> CoveError:
        """What to raise when the engine's own listener cannot be reached: in-process, the error
        itself; an engine process overrides it to say that its engine stopped, and why."""
        return error

    def _tokens(self) -> Tokenizer:
        with self._tokenizer_lock:
            if self._tokenizer is None:
                self._tokenizer = Tokenizer(self.address, self._secret)
            return self._tokenizer

    def _call(
        self, kind: str, body: dict[str, Any], on_chunk: ChunkCallback | None, server: Any = None
    ) -> dict[str, Any]:
        """One engine request (a kind in HANDLERS) to `server` (None: the first engine);
        engine/process.py sends it over HTTP."""
        handler = getattr(self._server if server is None else server, HANDLERS[kind])
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
        except (
            ValueError,
            RuntimeError,
        ) as exc:  # the engine's own request parsing ("Failed to parse tools")
            raise BadRequest(str(exc)) from exc
        result = result if isinstance(result, dict) else last
        raise_engine_error(result)
        return result

    def close(self) -> None:
        if self._tokenizer is not None:
            self._tokenizer.close()
        if self._pool is not None:
            self._pool.shutdown()
        server, self._server, self._others = self._server, None, ()
        del server
        self._remove_folder()

    def _remove_folder(self) -> None:
        folder, self._folder = self._folder, None
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def engine_client(address: str, secret: str, timeout: httpx.Timeout | float) -> httpx.Client:
    """An HTTP client for the engine's own listener: `host:port`, or `unix:///path` (a socket file,
    which skips TCP, and with it the Nagle delay its small streamed writes would meet)."""
    headers = {"Authorization": f"Bearer {secret}"}
    if address.startswith("unix://"):
        transport = httpx.HTTPTransport(uds=address.removeprefix("unix://"))
        return httpx.Client(transport=transport, base_url="http://engine", headers=headers, timeout=timeout)
    base = address if address.startswith("http") else f"http://{address}"
    return httpx.Client(base_url=base, headers=headers, timeout=timeout)


class Tokenizer:
    """The loaded model's own tokenizer, through the engine's loopback listener (the in-process
    API has no tokenize call). Used only for inputs long enough to maybe not fit."""

    def __init__(self, address: str, secret: str) -> None:
        self._client = engine_client(address, secret, timeout=60)
        try:
            self.specials = self.tokenize("")
        except BaseException:
            self._client.close()  # nobody else holds it: a failed start must not leak its connections
            raise

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Token ids as the engine makes them (for an embedding: special tokens added)."""
        tokens = self._ask("/tokenize", {"content": text, "add_special": add_special}, "tokens")
        return [int(t) for t in tokens]

    def detokenize(self, tokens: list[int]) -> str:
        """Token ids back to text, as the engine reads them."""
        return str(self._ask("/detokenize", {"tokens": tokens}, "content"))

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The model's chat template applied to `messages`, ready for the answer."""
        return str(self._ask("/apply-template", {"messages": messages}, "prompt"))

    def props(self) -> dict[str, Any]:
        """The engine's /props: its chat template, the template's capabilities, BOS and EOS text."""
        props: dict[str, Any] = self._ask("/props", None, None)
        return props

    def _ask(self, path: str, body: dict[str, Any] | None, key: str | None) -> Any:
        try:
            reply = self._client.post(path, json=body) if body is not None else self._client.get(path)
            reply.raise_for_status()
            return reply.json()[key] if key is not None else dict(reply.json())
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"the engine could not answer {path}: {exc}") from exc

    def close(self) -> None:
        self._client.close()


def choose_template(spec: LoadSpec) -> tuple[str | None, str | None, str | None]:
    """(the model's template, the template to load, why tools cannot be used or None)."""
    source = spec.template or read_gguf(spec.model_path).chat_template
    if not source:
        return None, None, f"{spec.name} has no chat template; give its recipe a Jinja TEMPLATE"
    if is_builtin_template_name(source):
        why = f"its template is llama.cpp's built-in {source!r}; give its recipe a Jinja TEMPLATE"
        return source, source, why
    chosen = tool_template(source)
    if chosen is None:
        return source, source, f"{spec.name}'s chat template cannot show tool calls"
    return source, chosen, None


def _start(spec: LoadSpec, params: Any) -> Any:
    try:
        return xllamacpp.Server(params)
    except Exception as exc:  # the engine reports load failures as plain exceptions
        # Under its memory bound a refused allocation or thread says only "Resource temporarily
        # unavailable": name the bound, which is what the person can act on.
        bound = f" within the {spec.memory_limit >> 20} MiB its engine may use" if spec.memory_limit else ""
        raise EngineError(f"the engine could not load {spec.name}{bound}: {exc}") from exc


def _is_bert(spec: LoadSpec) -> bool:
    """A BERT keeps no KV cache: another engine of it holds only its compute buffers, which the
    KV cache the scheduler counts for every embedder (and a BERT never makes) covers."""
    return read_gguf(spec.model_path).metadata.get("general.architecture") == "bert"


def _start_others(spec: LoadSpec, params: Any, count: int) -> list[Any]:
    """`count` more engines of an embedder, each on a socket of its own (a name ending in .sock is
    a socket file), beside the first's: an engine process's parent calls them there. An engine
    that cannot start (memory) leaves the embedder with those that did: fewer engines are
    slower, never wrong."""
    first = str(params.hostnames[0])
    others: list[Any] = []
    for number in range(1, count + 1):
        params.hostnames = [f"{first.removesuffix('.sock')}-{number}.sock"]
        try:
            others.append(_start(spec, params))
        except EngineError:
            break
    params.hostnames = [first]
    return others


def _is_token_list(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


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
