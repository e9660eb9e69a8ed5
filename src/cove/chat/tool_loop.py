"""The tool loop of a chat turn: offer cove's tools, run the calls the model makes, call it again.

Each step is one engine call with the turn's messages so far. When the model answers with calls
to cove's tools, each call is checked (a known tool, arguments that match its schema), asked for
(consent, when the turn must ask), run under its caps, and its result (or its error) goes back as
a tool message; then the engine is called again. Tools the client defined itself pass through:
a step that calls one ends the loop, and the client gets that call as it was made. After
MAX_STEPS steps of tool calls the model is asked once more with no tools to answer from what it
has, and the answer says the limit was reached.

Streaming: each step's text streams as it comes; the calls to cove's tools are not shown as
calls (the client did not define them) but as one `ToolEvent` per run.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..engine.events import ChatAnswer, ChatChunk, ToolCall, Usage
from ..engine.streaming import EventCallback
from ..tools.events import Kind, ToolEvent
from ..tools.registry import Registry, Tool, ToolContext, ToolError, ToolOutcome, parse_arguments, run_tool

if TYPE_CHECKING:
    from .service import ChatService, Turn

MAX_STEPS = 5
LIMIT_NOTE = f"cove stopped running tools after {MAX_STEPS} steps: the model kept calling them"


@dataclass
class ToolRun:
    """One call the loop handled, for the answer's `cove_tools_used` and the history."""

    name: str
    arguments: Any
    ok: bool
    ran: bool
    message: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "ok": self.ok, "ran": self.ran}


@dataclass
class _Step:
    answer: ChatAnswer
    stopped: bool
    mine: list[ToolCall] = field(default_factory=list)
    theirs: list[ToolCall] = field(default_factory=list)


class ToolLoop:
    """One turn's steps; `run` returns the final answer with the figures of every step."""

    def __init__(
        self,
        service: ChatService,
        turn: Turn,
        registry: Registry,
        on_event: EventCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.service = service
        self.turn = turn
        self.registry = registry
        self.on_event = on_event
        self.cancel = cancel or threading.Event()
        client_tools = turn.body.get("tools") or []
        self.client_names = {_tool_name(t) for t in client_tools} - {None}
        self.client_tools = list(client_tools)
        # A tool gone since the turn was prepared (its MCP server re-listed) is simply not offered.
        found = [registry.find(n) for n in turn.tools if n not in self.client_names]
        self.offered = [tool for tool in found if tool is not None]

    def run(self) -> ChatAnswer:
        messages = list(self.turn.body["messages"])
        texts: list[str] = []
        usages: list[Usage] = []
        step: _Step | None = None
        for number in range(MAX_STEPS + 1):
            if step is not None and self.cancel.is_set():
                break  # stopped while a tool ran: no further engine call
            last = number == MAX_STEPS
            step = self._step(self._body(messages, number, with_mine=not last))
            texts.append(step.answer.content)
            usages.append(step.answer.usage)
            if last or step.stopped or step.theirs or not step.mine or self.cancel.is_set():
                break  # (a call in the last step, to a tool no longer offered, is not run)
            messages.append(_assistant(step.answer.content, step.mine))
            for call in step.mine:
                outcome = self._handle(call)
                messages.append(_tool_message(call, outcome))
        assert step is not None
        if number == MAX_STEPS and not step.stopped and not self.cancel.is_set():
            texts.append(("\n\n" if "".join(texts).strip() else "") + f"({LIMIT_NOTE})")
            self._emit(ToolEvent(kind="limit", message=LIMIT_NOTE))
            if self.on_event:
                self.on_event(ChatChunk(content=texts[-1]))
        return self._final(step, "".join(texts), usages)

    # -- one engine call ------------------------------------------------------------------------

    def _body(self, messages: list[dict[str, Any]], number: int, with_mine: bool) -> dict[str, Any]:
        body = {k: v for k, v in self.turn.body.items() if k not in ("messages", "tools", "tool_choice")}
        tools = [*self.client_tools, *([t.schema() for t in self.offered] if with_mine else [])]
        if tools:
            body["tools"] = tools
            # A forced call (tool_choice) is for the first step; later steps may answer in text.
            if number == 0 and "tool_choice" in self.turn.body:
                body["tool_choice"] = self.turn.body["tool_choice"]
        return {**body, "messages": messages}

    def _step(self, body: dict[str, Any]) -> _Step:
        hidden: set[int] = set()
        shown: set[int] = set()
        stopped = False

        def relay(event: ChatChunk) -> bool:
            nonlocal stopped
            pieces = []
            for piece in event.tool_calls:
                if piece.index not in hidden | shown:
                    (shown if piece.name in self.client_names else hidden).add(piece.index)
                if piece.index in shown:
                    pieces.append(piece)
            finish = event.finish_reason
            if finish == "tool_calls" and hidden and not shown:
                finish = None  # not the end of the answer: cove runs the calls and goes on
            visible = replace(event, tool_calls=pieces, finish_reason=finish)
            if not (visible.content or visible.reasoning or visible.tool_calls or visible.logprobs or finish):
                return self.cancel.is_set()
            assert self.on_event is not None
            stopped = bool(self.on_event(visible)) or stopped
            return stopped

        cove = self.service.cove
        answer = cove.run_chat(
            self.turn.model,
            body,
            options=self.turn.options,
            keep_alive=self.turn.keep_alive,
            on_event=relay if self.on_event is not None else None,
            cancel=self.cancel,
        )
        theirs = [c for c in answer.tool_calls if c.name in self.client_names]
        mine = [c for c in answer.tool_calls if c.name not in self.client_names]
        return _Step(answer, stopped or answer.finish_reason == "cancelled", mine, theirs)

    # -- one tool call --------------------------------------------------------------------------

    def _handle(self, call: ToolCall) -> ToolOutcome:
        arguments = call.parsed_arguments()
        tool = self.registry.find(call.name)
        offered = {t.name for t in self.offered}
        if tool is None or tool.name not in offered:
            names = ", ".join(sorted(offered)) or "none"
            unknown = ToolOutcome(call.name, False, _unknown(call.name, names))
            return self._done(call, arguments, unknown, False)
        try:
            parse_arguments(tool, call.arguments)
        except ToolError as exc:
            return self._done(call, arguments, ToolOutcome(tool.name, False, str(exc)), False)
        rules = self.service.tool_policy()
        if not rules.enabled(tool.name):  # switched off while the turn ran
            off = ToolOutcome(tool.name, False, f"{tool.name} was switched off; answer without it")
            return self._done(call, arguments, off, False)
        if not self._consented(tool, call, arguments):
            refusal = f"the user did not allow {tool.name} to run this time; answer without it"
            self._emit(ToolEvent(kind="refused", name=tool.name, arguments=arguments, call_id=call.id))
            return self._done(call, arguments, ToolOutcome(tool.name, False, refusal), False, event=False)
        context = ToolContext(settings=self.service.cove.settings)
        cap = self.service.cove.settings.tool_timeout_s
        outcome = run_tool(tool, call.arguments, context, time_cap_s=cap)
        return self._done(call, arguments, outcome, True)

    def _consented(self, tool: Tool, call: ToolCall, arguments: Any) -> bool:
        if not self.turn.ask_consent:
            return True  # the request named the tool, and the policy allows it: that is the consent
        if self.on_event is None:
            return False  # nobody is watching this turn who could be asked
        broker = self.service.consents
        consent_id = broker.open(self.turn.consent_scope, tool.name)
        if consent_id is None:
            return True  # "always" for this tool in this conversation
        ask = ToolEvent(kind="consent", name=tool.name, arguments=arguments, call_id=call.id)
        self._emit(replace(ask, consent_id=consent_id))
        answer = broker.wait(consent_id, self.service.cove.settings.tool_consent_s, self.cancel)
        return answer in ("yes", "always")

    def _done(
        self, call: ToolCall, arguments: Any, outcome: ToolOutcome, ran: bool, event: bool = True
    ) -> ToolOutcome:
        run = ToolRun(call.name, arguments, outcome.ok, ran, outcome.text, outcome.seconds)
        self.turn.tools_used.append(run)
        if event:
            kind: Kind = "ran" if outcome.ok else "error"
            self._emit(
                ToolEvent(
                    kind=kind,
                    name=call.name,
                    arguments=arguments,
                    call_id=call.id,
                    message=outcome.text,
                    seconds=outcome.seconds,
                )
            )
        return outcome

    def _emit(self, event: ToolEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _final(self, step: _Step, text: str, usages: list[Usage]) -> ChatAnswer:
        answer = step.answer
        usage = replace(
            answer.usage,
            prompt_tokens=sum(u.prompt_tokens for u in usages),
            completion_tokens=sum(u.completion_tokens for u in usages),
        )
        choices = [replace(answer.choices[0], content=text, tool_calls=step.theirs), *answer.choices[1:]]
        return replace(answer, content=text, usage=usage, tool_calls=step.theirs, choices=choices)


def _assistant(text: str, calls: list[ToolCall]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
            for c in calls
        ],
    }


def _tool_message(call: ToolCall, outcome: ToolOutcome) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": outcome.for_model()}


def _unknown(name: str, names: str) -> str:
    return f"there is no tool named {name!r} here; the tools are: {names}"


def _tool_name(tool: Any) -> str | None:
    function = tool.get("function") if isinstance(tool, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def history_line(run: ToolRun) -> str:
    """How a tool run is kept in the conversation's history (a `tool` message)."""
    arguments = json.dumps(run.arguments, ensure_ascii=False)
    status = "" if run.ok else ("refused: " if not run.ran else "error: ")
    return f"{run.name}({arguments}) → {status}{run.message}"
