"""The client of a running `cove serve`: the CLI's commands go through it, so models stay loaded."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from ..chat.retrieval import Citation
from ..chat.service import TurnRequest, TurnStream
from ..config import Settings
from ..engine.events import ChatChunk, LoadedInfo, ToolCallDelta, Usage
from ..engine.reranking import Reranked, ranked_of
from ..errors import ERROR_TYPE_HEADER, BadRequest, Busy, CoveError, DoesNotFit, ModelNotFound
from ..history import errors as _history_errors  # noqa: F401  (their names, for error_type)
from ..knowledge import errors as _knowledge_errors  # noqa: F401
from ..net import gate
from ..net.policy import REMOTE_ENGINE, is_loopback_host
from ..recipe import parse_recipe
from ..store.huggingface import parse_hf_ref
from ..store.models import Manifest
from ..store.names import parse_name
from ..store.progress import ProgressCallback, PullProgress, ignore_progress
from ..tools.events import ToolEvent, tool_event

#: cove's own headers on /api/chat (see server/conversations.py): the stored conversation, the context notice,
#: and which door the turn came through.
CONVERSATION_HEADER = "x-cove-conversation"
CONTEXT_HEADER = "x-cove-context"
SOURCE_HEADER = "x-cove-source"
#: A client that can answer consent questions (the terminal, the web chat) sends `ask`.
CONSENT_HEADER = "X-Cove-Consent"

ERRORS: dict[int, type[CoveError]] = {400: BadRequest, 404: ModelNotFound, 503: Busy, 507: DoesNotFit}


def find_server(settings: Settings) -> RemoteCove | None:
    """A server answering at COVE_HOST, or None; asked quickly so a missing one costs nothing."""
    remote = RemoteCove(settings)
    try:
        response = remote.http.get("/api/version", timeout=0.5)
    except (httpx.HTTPError, gate.EgressRefused):  # offline: another machine's server is not asked
        remote.close()
        return None
    if response.status_code != 200 or "version" not in response.text:
        remote.close()
        return None
    return remote


class RemoteCove:
    """The `Backend` over a server's Ollama-compatible API (plus cove's conversation fields)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        headers = {"authorization": f"Bearer {settings.api_keys[0]}"} if settings.api_keys else {}
        base_url = f"http://{host}:{settings.port}"
        if is_loopback_host(settings.host):
            self.http = httpx.Client(base_url=base_url, headers=headers, timeout=None)
        else:  # another machine: the gate judges each request and the ledger counts its bytes
            egress = gate.for_settings(settings)
            self.http = gate.client(
                REMOTE_ENGINE, gate=egress, base_url=base_url, headers=headers, timeout=None
            )

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        response = self.http.post(path, json=body)
        raise_for(response)
        return response

    def _lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self.http.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                response.read()
                raise_for(response)
            for line in response.iter_lines():
                if line.strip():
                    data = json.loads(line)
                    if "error" in data:
                        raise CoveError(data["error"])
                    yield data

    def models(self) -> list[Manifest]:
        response = self.http.get("/api/tags")
        raise_for(response)
        return [_manifest(m) for m in response.json()["models"]]

    def model(self, name: str) -> Manifest:
        shown = self._post("/api/show", {"model": name}).json()
        details = shown.get("details") or {}
        info = {"architecture": details.get("family"), "quantization": details.get("quantization_level")}
        recipe = parse_recipe(shown["modelfile"]).to_dict() if shown.get("modelfile") else {}
        canonical = str(parse_name(name))
        return Manifest(name=canonical, digest="", size=0, source="server", info=info, recipe=recipe)

    def chat_turn(self, request: TurnRequest) -> TurnStream:
        """The server runs the turn (and owns the history and the context); we read its stream."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "options": request.options,
            "stream": True,
        }
        if request.completion or request.context is not None:
            raise BadRequest("raw completions and generate contexts go to /api/generate, not a chat turn")
        if request.fields.get("tools"):
            body["tools"] = request.fields["tools"]
        if request.think is not None:
            body["think"] = request.think
        if request.conversation:
            body["conversation_id"] = request.conversation
        if request.persona:
            body["persona"] = request.persona
        if request.keep_alive is not None:
            body["keep_alive"] = request.keep_alive
        if request.cove_tools is not None:
            body["cove_tools"] = request.cove_tools
        if request.collections is not None:  # None: the conversation's own (see ChatService)
            body["collections"] = request.collections
        if request.strict is not None:
            body["cove_strict"] = request.strict
        headers = {SOURCE_HEADER: request.source}
        if request.asks_consent:
            headers[CONSENT_HEADER] = "ask"
        sent = self.http.build_request("POST", "/api/chat", json=body, headers=headers)
        response = self.http.send(sent, stream=True)
        if response.status_code >= 400:
            response.read()
            response.close()
            raise_for(response)
        conversation = response.headers.get(CONVERSATION_HEADER)
        notice = response.headers.get(CONTEXT_HEADER)
        cited: list[Citation] = []  # filled from the stream's last line
        return TurnStream(conversation, notice, _events(response, cited), citations=cited)

    def stream_chat(
        self, model: str, messages: list[dict[str, Any]], *, options: dict[str, Any] | None = None
    ) -> Iterator[ChatChunk]:
        stream = self.chat_turn(TurnRequest(model, messages, options or {}))
        try:
            yield from stream
        finally:
            stream.close()

    def pull(self, ref: str, progress: ProgressCallback = ignore_progress) -> Manifest:
        for data in self._lines("/api/pull", {"model": ref, "stream": True}):
            progress(
                PullProgress(
                    data.get("status", ""), data.get("digest"), data.get("total"), data.get("completed")
                )
            )
        wanted = parse_name(catalog_name(ref))
        return next((m for m in self.models() if m.name == str(wanted)), _manifest({"name": str(wanted)}))

    def remove(self, name: str) -> Manifest:
        response = self.http.request("DELETE", "/api/delete", json={"model": name})
        raise_for(response)
        return _manifest({"name": name})

    def copy(self, source: str, destination: str) -> Manifest:
        self._post("/api/copy", {"source": source, "destination": destination})
        return _manifest({"name": destination})

    def create(self, name: str, recipe_text: str, folder: Any = None) -> Manifest:
        for _ in self._lines("/api/create", {"model": name, "modelfile": recipe_text}):
            pass
        return _manifest({"name": name})

    def loaded(self) -> list[LoadedInfo]:
        response = self.http.get("/api/ps")
        raise_for(response)
        return [
            LoadedInfo(
                name=m["name"],
                digest=m.get("digest", ""),
                size=m.get("size", 0),
                num_ctx=m.get("context_length", 0),
                num_parallel=int(m.get("num_parallel") or 0),
                active=int(m.get("active") or 0),
                expires_in_s=_seconds_until(m.get("expires_at")),
                runs_on=tuple(str(h) for h in m.get("cove_runs_on") or ()),
            )
            for m in response.json()["models"]
        ]

    def rerank(self, model: str, query: str, documents: list[str], *, top_n: int | None = None) -> Reranked:
        """The server's /v1/rerank: each document scored for `query`, best first."""
        body: dict[str, Any] = {"model": model, "query": query, "documents": documents}
        if top_n is not None:
            body["top_n"] = top_n
        data = self._post("/v1/rerank", body).json()
        usage = data.get("usage") or {}
        return Reranked(ranked_of(data, len(documents)), int(usage.get("prompt_tokens") or 0))

    def stop(self, name: str) -> bool:
        loaded = {m.name for m in self.loaded()}
        self._post("/api/generate", {"model": name, "keep_alive": 0})
        return any(n == name or n.split(":")[0] == name for n in loaded)

    def close(self) -> None:
        self.http.close()


def _events(
    response: httpx.Response, cited: list[Citation] | None = None
) -> Generator[ChatChunk | ToolEvent, None, None]:
    """Ollama's NDJSON chat stream as cove's typed events; closing it closes the connection."""
    started = time.perf_counter()
    first: float | None = None
    try:
        for line in response.iter_lines():
            if not line.strip():
                continue
            data = json.loads(line)
            if "error" in data:
                raise CoveError(f"server: {data['error']}")
            if "cove_tool" in data:  # a tool step of the server's tool loop, or its consent question
                step = tool_event(data["cove_tool"])
                if step is not None:
                    yield step
                continue
            message = data.get("message") or {}
            text = message.get("content") or ""
            calls = [
                ToolCallDelta(i, None, (c.get("function") or {}).get("name", ""), _arguments(c))
                for i, c in enumerate(message.get("tool_calls") or [])
            ]
            if (text or calls) and first is None:
                first = time.perf_counter() - started
            if text or calls:
                yield ChatChunk(content=text, tool_calls=calls)
            if data.get("done"):
                if cited is not None and isinstance(data.get("citations"), list):
                    cited.extend(Citation.from_dict(c) for c in data["citations"] if isinstance(c, dict))
                yield ChatChunk(
                    done=True,
                    finish_reason=data.get("done_reason") or None,
                    usage=_usage(data),
                    time_to_first_token_s=first,
                )
    finally:
        response.close()


def _arguments(call: dict[str, Any]) -> str:
    arguments = (call.get("function") or {}).get("arguments", {})
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _usage(data: dict[str, Any]) -> Usage:
    """Ollama's figures (nanoseconds) in cove's units."""
    eval_s = data.get("eval_duration", 0) / 1e9
    return Usage(
        prompt_tokens=int(data.get("prompt_eval_count") or 0),
        completion_tokens=int(data.get("eval_count") or 0),
        prompt_ms=data.get("prompt_eval_duration", 0) / 1e6,
        predicted_ms=eval_s * 1000,
        tokens_per_s=data.get("eval_count", 0) / eval_s if eval_s else None,
        load_s=data.get("load_duration", 0) / 1e9,
    )


def catalog_name(ref: str) -> str:
    """The store name a pull of `ref` ends up under (an hf.co ref is renamed by quant)."""
    hf = parse_hf_ref(ref)
    return hf.store_name if hf else ref


FOREVER_S = 50 * 365 * 86400


def _seconds_until(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    left = (when - datetime.now(UTC)).total_seconds()
    # A model kept forever (or busy) is reported a century ahead, as Ollama does: no expiry.
    return None if left > FOREVER_S else left


def _manifest(data: dict[str, Any]) -> Manifest:
    return Manifest(
        name=data.get("name", ""),
        digest=data.get("digest", ""),
        size=data.get("size", 0),
        source="server",
        # What the server says the model is for (its /api/tags `kind`), for `cove list`.
        info={"kind": data["kind"]} if isinstance(data.get("kind"), str) else {},
        modified=data.get("modified_at", ""),
    )


def raise_for(response: httpx.Response, errors: dict[int, type[CoveError]] = ERRORS) -> None:
    """A server's error answer as the typed error it names (its X-Cove-Error header), or else the
    one its status stands for in `errors`, with the server's message."""
    if response.status_code < 400:
        return
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text
    if isinstance(message, dict):
        message = message.get("message", str(message))
    named = error_type(response.headers.get(ERROR_TYPE_HEADER, ""), response.status_code)
    raise (named or errors.get(response.status_code, CoveError))(f"server: {message}")


def error_type(name: str, status: int) -> type[CoveError] | None:
    """The error class a server named: one of cove's, with that name and status, and only one
    (a name two modules share, or a status that disagrees, falls back to the status)."""
    if not name:
        return None
    found = [cls for cls in _error_classes() if cls.__name__ == name and cls.status == status]
    return found[0] if len(found) == 1 else None


def _error_classes() -> list[type[CoveError]]:
    seen: list[type[CoveError]] = []
    todo: list[type[CoveError]] = [CoveError]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen
