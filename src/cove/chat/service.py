"""The one conversation service: a chat turn from any door (CLI, /api, /v1, the web page) happens here.

A turn is: the conversation's stored settings merged with what this request asks (model name
canonicalised, parameters, num_ctx, system prompt, persona), the request's new messages stored,
the title set, the context fitted (older turns summarised when they no longer fit), one engine
call, and the answer recorded with its figures. A request without a conversation is stateless:
nothing is stored, but the same persona and model rules apply.

Retrieval from the user's documents is a step of `prepare` (see `cove.chat.retrieval`): for a
turn with `collections`, the search runs before anything is stored (an unknown collection
stores nothing), room is reserved for the sources when the context is fitted, and the sources
go before the question (the instruction to cite them into the leading system message); their
citations travel on the turn, to the doors and into the history beside the answer. In strict
mode with nothing relevant found, `run` answers itself and the engine is not called.

The tool loop wraps the engine call in `run`: when the turn offers cove's tools (`cove_tools`
on the API; the enabled ones from a door that can ask the person, as the CLI and the web chat
do), `run` hands the call to `ToolLoop` (see `cove.chat.tool_loop`), which runs the model's tool
calls and calls it again. A door that asks gets a consent event before each call; on the API,
naming a tool that the user's policy has switched on is the consent.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..engine.events import Assembler, ChatAnswer, ChatChunk, Choice
from ..engine.options import checked_options
from ..engine.streaming import EventCallback, stream_events
from ..errors import BadRequest, Cancelled, CoveError
from ..history import Conversation, History, chosen
from ..history import citations as kept_citations
from ..history.chosen import Chosen
from ..history.records import ROLES
from ..store.models import Manifest
from ..tools import knowledge_search
from ..tools.catalog import ToolCatalog
from ..tools.consent import ConsentBroker
from ..tools.policy import ToolPolicy
from ..tools.policy import load as load_policy
from ..tools.registry import Registry, ToolError
from . import retrieval
from .context import ContextNotice, ModelTokens, budget, estimate_tokens, fit_context
from .retrieval import Citation, Retrieval
from .tool_loop import ToolLoop, ToolRun, history_line

if TYPE_CHECKING:
    from ..library.local import Cove

#: Where a conversation was started, as `cove history` and `cove stats` show it.
SOURCES = ("cli", "api", "web", "import")
TITLE_CHARS = 60


@dataclass
class TurnRequest:
    """What a caller asks for; every door builds one of these."""

    model: str
    #: The messages this request brings (OpenAI-shaped). With a stored conversation, only new ones.
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: Ollama-style options (temperature, num_ctx, num_predict, ...).
    options: dict[str, Any] = field(default_factory=dict)
    #: Other engine request fields: tools, tool_choice, response_format, logprobs, prompt, ...
    fields: dict[str, Any] = field(default_factory=dict)
    #: None keeps nothing; "new" starts a conversation; anything else names one (a unique prefix).
    conversation: str | None = None
    persona: str | None = None
    source: str = "api"
    keep_alive: float | None = None
    #: A raw completion of `fields["prompt"]`, with no chat template.
    completion: bool = False
    #: Ollama's `think`: True (or a level) asks a thinking model to reason first; False tells it not to.
    think: bool | str | None = None
    #: Ollama's /api/generate `context`: earlier tokens to continue ([] starts one); None: not asked.
    context: list[int] | None = None
    #: cove's own tools this turn may call; None: the enabled ones when the door can ask, else none.
    cove_tools: list[str] | None = None
    #: The door shows the person each tool call and sends back yes or no (the terminal, the web
    #: chat; on HTTP the `X-Cove-Consent: ask` header). Otherwise naming a tool is the consent.
    asks_consent: bool = False
    #: The user's document collections to answer from (retrieval with citations); [] for none.
    #: Named, they are kept with the conversation; None: the ones the conversation chose last.
    collections: list[str] | None = None
    #: Answer only from the collections, and say so when they do not hold the answer; None:
    #: as the conversation chose with its collections.
    strict: bool | None = None


@dataclass
class Turn:
    """A prepared turn: what the engine gets, and where its answer is kept."""

    model: str
    body: dict[str, Any]
    options: dict[str, Any]
    keep_alive: float | None = None
    completion: bool = False
    conversation_id: str | None = None
    notice: ContextNotice | None = None
    context: list[int] | None = None
    #: cove's tools offered to the model, whether each call asks the person first, and for "always".
    tools: list[str] = field(default_factory=list)
    ask_consent: bool = False
    consent_scope: str = ""
    #: Filled by the tool loop as it runs: what ran (the answer's `cove_tools_used`).
    tools_used: list[ToolRun] = field(default_factory=list)
    #: The collections this turn answered from ([] when it did not search any).
    collections: list[str] = field(default_factory=list)
    #: The sources given to the model, numbered as it cites them ([n]).
    citations: list[Citation] = field(default_factory=list)
    #: cove's own answer, given without calling the model (strict mode, nothing relevant found).
    reply: str | None = None

    def citations_json(self) -> list[dict[str, Any]] | None:
        """The `citations` field of the doors' answers: None when the turn searched nothing."""
        return [c.to_dict() for c in self.citations] if self.collections else None

    def tools_used_names(self) -> list[str]:
        """The tools that ran this turn, in order (refused and malformed calls are not counted)."""
        return [run.name for run in self.tools_used if run.ran]


class TurnStream:
    """The events of one turn as they come; `conversation_id` and `notice` are known at once."""

    def __init__(
        self,
        conversation_id: str | None,
        notice: str | None,
        events: Iterator[ChatChunk],
        cancel: threading.Event | None = None,
        citations: list[Citation] | None = None,
    ) -> None:
        self.conversation_id = conversation_id
        #: Said to the person when older turns were summarised to make room.
        self.notice = notice
        #: The sources the answer may cite as [n]; a remote stream fills it from its last line.
        self.citations: list[Citation] = citations if citations is not None else []
        self._events = events
        #: Set on close, so a turn waiting on something other than the engine (a consent) stops too.
        self._cancel = cancel

    def __iter__(self) -> Iterator[ChatChunk]:
        return self._events

    def close(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        close = getattr(self._events, "close", None)
        if close:
            close()


class ChatService:
    """Owns chat turns end to end for one library instance; safe to call from many threads."""

    def __init__(self, cove: Cove) -> None:
        self.cove = cove
        #: Tool calls waiting for the person's yes or no (the web dialog, the terminal prompt).
        self.consents = ConsentBroker()
        self.tool_catalog = ToolCatalog(cove.settings)
        #: The knowledge base turns search; None: the library's own (`cove.knowledge`).
        self.knowledge_base: retrieval.Knowledge | None = None
        knowledge_search.attach(cove.settings.home, self)  # the tool searches this library's

    def tool_registry(self) -> Registry:
        """Every tool this cove knows: the built-in ones and those of its MCP servers."""
        return self.tool_catalog.registry()

    def tool_policy(self) -> ToolPolicy:
        return load_policy(self.cove.settings.home)

    @property
    def history(self) -> History:
        return self.cove.history

    def stream(self, request: TurnRequest) -> TurnStream:
        """Prepare a turn and stream its answer; closing the stream stops it (what came is kept)."""
        turn = self.prepare(request)
        notice = str(turn.notice) if turn.notice else None
        cancel = threading.Event()
        events = stream_events(lambda relay: self.run(turn, relay, cancel))
        return TurnStream(turn.conversation_id, notice, events, cancel, list(turn.citations))

    @property
    def knowledge(self) -> retrieval.Knowledge:
        """The library's knowledge base (or `knowledge_base` when set), for turns that answer
        from the user's documents."""
        kb = self.knowledge_base or getattr(self.cove, "knowledge", None)
        if kb is None:
            raise BadRequest("this cove has no knowledge base: collections cannot be searched here")
        return kb  # type: ignore[no-any-return]

    def prepare(self, request: TurnRequest) -> Turn:
        """Everything before the engine call (blocking: reads and writes the history)."""
        if request.source not in SOURCES:
            raise BadRequest(f"source must be one of {', '.join(SOURCES)}, not {request.source!r}")
        manifest = self.cove.model(request.model)
        model = manifest.name  # canonical: `tiny` is kept as `tiny:latest`
        options = checked_options(request.options)
        messages = [_with_role(m) for m in request.messages]
        fields = {**request.fields, **_thinking(manifest, request.think)}
        if request.completion:
            if request.conversation:
                raise BadRequest("a raw completion cannot be kept in a conversation; use chat")
            if request.cove_tools:
                raise BadRequest("cove_tools need a chat; a raw completion cannot call tools")
            if request.collections:
                raise BadRequest("collections need a chat; a raw completion cannot cite documents")
            return Turn(model, fields, options, request.keep_alive, completion=True)
        request, keep_chosen = self._documents_chosen(request)
        tools = self._offered_tools(request)  # checked before the first write
        found = self._retrieve(request, messages)  # so is every collection named
        if request.conversation is None:
            body = {**fields, "messages": self._with_persona(messages, request.persona)}
            turn = Turn(model, body, options, request.keep_alive, context=request.context)
            if found is not None:
                num_ctx = self.cove.prepare(model, options)[0].spec.num_ctx
                self._add_sources(turn, found, budget(num_ctx, options))
        elif request.context is not None:
            raise BadRequest("context and a stored conversation are two memories; send one of them")
        else:
            turn = self._stored(request, model, options, messages, fields, found, keep_chosen)
        if tools:
            if turn.context is not None:
                raise BadRequest("cove_tools need a chat; a generate context cannot call tools")
            turn.tools = tools
            turn.ask_consent = request.asks_consent
            turn.consent_scope = turn.conversation_id or secrets.token_hex(8)
        return turn

    def _documents_chosen(self, request: TurnRequest) -> tuple[TurnRequest, bool]:
        """The request with the collections and strictness this turn answers from, and whether
        they are a new choice to keep with its conversation.

        A turn that names collections chooses them for its conversation ([] chooses none); one
        that names none goes on with what the conversation chose (its `strict`, when sent, for
        this turn only). A request without a stored conversation keeps nothing."""
        stored = Chosen()
        if request.conversation not in (None, "new"):
            stored = chosen.of(self.history, str(request.conversation))
        if request.collections is None:
            strict = stored.strict if request.strict is None else request.strict
            names = stored.collections
            return replace(request, collections=names, strict=bool(strict) and bool(names)), False
        names = list(dict.fromkeys(request.collections))
        wanted = Chosen(names, bool(request.strict) and bool(names))
        keep = request.conversation is not None and wanted != stored
        return replace(request, collections=wanted.collections, strict=wanted.strict), keep

    def _retrieve(self, request: TurnRequest, messages: list[dict[str, Any]]) -> Retrieval | None:
        """Search the request's collections for its question (and the recent user turns)."""
        if not request.collections:
            return None
        if request.context is not None:
            raise BadRequest("collections need a chat; a generate context cannot cite documents")
        asked = [_text_of(m.get("content")) for m in messages if m["role"] == "user"]
        stored: list[str] = []
        if request.conversation and request.conversation != "new":
            shown = self.history.get(str(request.conversation)).messages
            stored = [m.content for m in shown if m.role == "user" and m.in_context]
        if not asked and not messages:  # answering the stored question again: it is the question
            asked, stored = stored[-1:], stored[:-1]
        if not asked or not asked[-1].strip():
            raise BadRequest("collections need a question: the last user message is empty or missing")
        earlier = stored + asked[:-1]
        strict = bool(request.strict)
        return retrieval.retrieve(self.knowledge, request.collections, asked[-1], earlier, strict)

    def _add_sources(self, turn: Turn, found: Retrieval, room: int) -> None:
        """Put what was found into the turn's messages, within the room left."""
        turn.collections = found.collections
        turn.reply = found.refusal()
        if turn.reply is not None:
            return
        messages = turn.body["messages"]
        counter = ModelTokens(self.cove, turn.model, turn.options)  # counted already: remembered
        sources = retrieval.fitted(self.knowledge, found, room - estimate_tokens(messages, counter), counter)
        turn.body = {**turn.body, "messages": retrieval.with_sources(messages, sources)}
        turn.citations = sources.citations

    def _offered_tools(self, request: TurnRequest) -> list[str]:
        """The cove tools a turn offers; one named that is unknown or switched off is an error."""
        policy = self.tool_policy()
        if request.cove_tools is None:
            if not request.asks_consent or not policy.enabled_names():
                return []
            known = set(self.tool_registry().names())
            return [name for name in policy.enabled_names() if name in known]
        names = list(dict.fromkeys(str(n) for n in request.cove_tools))
        if not names:
            return []
        registry = self.tool_registry()
        for name in names:
            registry.get(name)  # unknown: ToolError naming the known ones
            if not policy.enabled(name):
                raise ToolError.switched_off(name)
        return names

    def run(
        self,
        turn: Turn,
        on_event: EventCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ChatAnswer:
        """The engine call, and the answer kept (blocking). What streamed before a failure is kept too."""
        arrived = Assembler()
        asked_to_stop = False

        def relay(event: ChatChunk) -> bool:
            nonlocal asked_to_stop
            arrived.add(event)
            asked_to_stop = bool(on_event(event)) if on_event else False
            return asked_to_stop

        streaming = on_event is not None
        if turn.reply is not None:
            return self._own_answer(turn, relay if streaming else None)
        try:
            if turn.tools:
                loop = ToolLoop(self, turn, self.tool_registry(), relay if streaming else None, cancel)
                answer = loop.run()
            else:
                answer = self.cove.run_chat(
                    turn.model,
                    turn.body,
                    options=turn.options,
                    keep_alive=turn.keep_alive,
                    on_event=relay if streaming else None,
                    completion=turn.completion,
                    cancel=cancel,
                    context=turn.context,
                )
        except BaseException as exc:
            if turn.conversation_id and (arrived.text or turn.tools_used):
                self._record(turn, arrived.answer(), cut_off=cut_off_reason(exc))
            raise
        if turn.conversation_id:
            # Stopped by whoever read the stream (the person, a client that left): what came is kept.
            stopped = asked_to_stop and answer.finish_reason not in ("stop", "length", "tool_calls")
            self._record(turn, answer, cut_off=cut_off_reason(Cancelled()) if stopped else None)
        return answer

    def _own_answer(self, turn: Turn, relay: EventCallback | None) -> ChatAnswer:
        """cove's own words as the answer (no engine call), kept like any answer."""
        text = turn.reply or ""
        if relay is not None:
            relay(ChatChunk(content=text))
            relay(ChatChunk(finish_reason="stop"))
        answer = ChatAnswer(content=text, finish_reason="stop", choices=[Choice(0, text, "stop")])
        if turn.conversation_id:
            self._record(turn, answer)
        return answer

    # -- stored conversations -------------------------------------------------------------------

    def _stored(
        self,
        request: TurnRequest,
        model: str,
        options: dict[str, Any],
        messages: list[dict[str, Any]],
        fields: dict[str, Any],
        found: Retrieval | None = None,
        keep_chosen: bool = False,
    ) -> Turn:
        unknown = sorted({str(m["role"]) for m in messages if m["role"] not in ROLES})
        if unknown:  # checked before the first write: a refused request stores nothing
            raise BadRequest(
                f"a stored conversation keeps only {', '.join(ROLES)} messages, not {unknown[0]!r}"
            )
        chat = self._settled(request, model, options, messages)
        if not messages and (not chat.messages or chat.messages[-1].role not in ("user", "tool")):
            raise BadRequest(
                "nothing to answer again: the conversation does not end with a question "
                "(branch before an answer first, or send a message)"
            )
        if keep_chosen:  # after the checks: a refused turn changes nothing
            kept = Chosen(list(request.collections or []), bool(request.strict))
            chosen.choose(self.history, chat.id, kept)
        for message in messages:
            text = _text_of(message.get("content"))
            if message["role"] == "system":
                continue
            self.history.add_message(chat.id, message["role"], text)
            if not chat.title and message["role"] == "user" and text.strip():
                self.history.rename(chat.id, text.strip().splitlines()[0][:TITLE_CHARS])
                chat = self.history.get(chat.id)
        effective = {**chat.parameters, **options}
        if chat.num_ctx:
            effective["num_ctx"] = chat.num_ctx  # the model loads with the context we budget for
        num_ctx = self.cove.prepare(model, effective)[0].spec.num_ctx
        policy = self.cove.settings.context_policy
        room = budget(num_ctx, effective)
        # Room for the sources is kept before older turns are summarised, up to half the budget.
        counter = ModelTokens(self.cove, model, effective)  # the model's own tokenizer
        reserve = min(found.wanted_tokens(counter), room // 2) if found and not found.refusal() else 0
        fitted, notice = fit_context(
            self.cove, self.history, chat.id, num_ctx, effective, policy, reserve, counter
        )
        body = {**fields, "messages": fitted}
        turn = Turn(model, body, effective, request.keep_alive, conversation_id=chat.id, notice=notice)
        if found is not None:
            self._add_sources(turn, found, room)
        return turn

    def _settled(
        self, request: TurnRequest, model: str, options: dict[str, Any], messages: list[dict[str, Any]]
    ) -> Conversation:
        """The conversation with this request's settings stored, so the next turn keeps them."""
        systems = [_text_of(m.get("content")) for m in messages if m["role"] == "system"]
        system = systems[-1] if systems else None
        parameters = {k: v for k, v in options.items() if k != "num_ctx"}
        num_ctx = options.get("num_ctx")
        if request.conversation == "new":
            return self.history.start(
                model,
                persona=request.persona,
                system=system,
                parameters=parameters,
                num_ctx=num_ctx,
                source=request.source,
            )
        chat = self.history.get(str(request.conversation))
        if system is None and request.persona:
            system = self.history.persona(request.persona).system
        changes: dict[str, Any] = {}
        if model != chat.model:
            changes["model"] = model
        if system is not None and system != chat.system:
            changes["system"] = system
        if parameters and {**chat.parameters, **parameters} != chat.parameters:
            changes["parameters"] = {**chat.parameters, **parameters}
        if num_ctx and num_ctx != chat.num_ctx:
            changes["num_ctx"] = num_ctx
        return self.history.update_settings(chat.id, **changes) if changes else chat

    def _with_persona(self, messages: list[dict[str, Any]], persona: str | None) -> list[dict[str, Any]]:
        """A saved persona's system prompt comes first, unless the request has its own."""
        if not persona or any(m["role"] == "system" for m in messages):
            return messages
        return [{"role": "system", "content": self.history.persona(persona).system}, *messages]

    def _record(self, turn: Turn, answer: ChatAnswer, cut_off: str | None = None) -> None:
        """Keep the answer with its figures, so `cove stats` can show them later; an answer that
        stopped before its end is kept marked with why (`cut_off`), never as if it were whole."""
        assert turn.conversation_id is not None
        for run in turn.tools_used:  # what the tools said is part of the conversation
            self.history.add_message(turn.conversation_id, "tool", history_line(run))
        ttft = answer.time_to_first_token_s
        kept = self.history.add_message(
            turn.conversation_id,
            "assistant",
            answer.content,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            ttft_ms=ttft * 1000 if ttft is not None else None,
            tokens_per_s=answer.tokens_per_s,
            model=turn.model,
            cut_off=cut_off,
        )
        if turn.citations:
            kept_citations.keep(self.history, kept.id, [c.to_dict() for c in turn.citations])


def cut_off_reason(exc: BaseException) -> str:
    """Why an answer stopped early, in a few words a person reads beside what was kept."""
    if isinstance(exc, KeyboardInterrupt):
        return "stopped with Ctrl-C"
    if isinstance(exc, Cancelled):
        return "stopped before the end: the client left or asked to stop"
    if isinstance(exc, CoveError):
        return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return f"cove failed while answering ({type(exc).__name__})"


def can_think(manifest: Manifest) -> bool:
    """A model thinks when its chat template has a place for reasoning (Qwen3, DeepSeek-R1, ...)."""
    template = manifest.recipe_obj().template or manifest.info.get("chat_template") or ""
    return any(mark in template for mark in ("<think>", "enable_thinking", "reasoning_content"))


def _thinking(manifest: Manifest, think: bool | str | None) -> dict[str, Any]:
    """Engine fields for Ollama's `think`; asking a model that cannot think is an error, as in Ollama."""
    if think is None or think is False or think == "":
        return (
            {"chat_template_kwargs": {"enable_thinking": False}}
            if think is False and can_think(manifest)
            else {}
        )
    if not can_think(manifest):
        raise BadRequest(f"{manifest.name} does not support thinking")
    return {"chat_template_kwargs": {"enable_thinking": True}}


def _with_role(message: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's newer "developer" message is the system prompt by another name."""
    role = str(message.get("role") or "user")
    return {**message, "role": "system" if role == "developer" else role}


def _text_of(content: Any) -> str:
    """A message's text, whether sent as a string or as OpenAI's list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""
