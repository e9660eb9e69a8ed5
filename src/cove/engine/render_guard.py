"""Every chat request's template render, tried first in cove's bounded sandbox.

A template passes its create-time check on a sample conversation, but its costly branch can
depend on the conversation (`{% if m.content == 'boom' %}{% for i in range(3000000) %}…`);
llama.cpp's C++ renderer has no time or size bound and spent 44 s of CPU and 1.8 GB on one
such request. So before a request reaches the engine, the template the engine loaded is
rendered here over the messages as the engine will see them, within the sandbox's deadline and
size caps. A render that fails here never reaches the engine: it is a 400 that says why.

The engine hands the template its messages reshaped to what the template can take (its
"capabilities", which it reports on /props); `as_engine_sees` does the same, so that a branch
the engine would take is taken here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidTemplate
from ..templates import is_builtin_template_name, render_template

#: Request-time deadline for one render; real chat templates take well under 10 ms.
RENDER_TIMEOUT_S = 2.0
#: A prompt that fills the context takes at most about this many characters a token (the bound
#: on a render's size grows with the context, from the sandbox's 1 MB).
CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class RenderGuard:
    """The template one loaded engine renders with, and what it fills in around the messages."""

    name: str
    template: str | None
    bos_token: str = ""
    eos_token: str = ""
    caps: dict[str, bool] = field(default_factory=dict)
    num_ctx: int = 0

    @classmethod
    def from_props(cls, name: str, props: dict[str, Any], num_ctx: int = 0) -> RenderGuard:
        """From the engine's /props: its template (with cove's tool prefix, when loaded with it)."""
        template = props.get("chat_template")
        caps = props.get("chat_template_caps")
        return cls(
            name=name,
            template=template if isinstance(template, str) and template else None,
            bos_token=str(props.get("bos_token") or ""),
            eos_token=str(props.get("eos_token") or ""),
            caps={str(k): bool(v) for k, v in caps.items()} if isinstance(caps, dict) else {},
            num_ctx=num_ctx,
        )

    def check(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Raise InvalidTemplate (a 400) when the render fails, runs past the deadline, or grows too large."""
        if not self.template or is_builtin_template_name(self.template):
            return  # llama.cpp's built-in C++ formats run no template code
        try:
            render_template(
                self.template,
                as_engine_sees(messages, self.caps),
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                tools=tools or None,
                extra=extra,
                timeout_s=RENDER_TIMEOUT_S,
                max_chars=CHARS_PER_TOKEN * self.num_ctx,
            )
        except InvalidTemplate as exc:
            said = str(exc).rstrip(".")
            raise InvalidTemplate(
                f"{self.name}'s {said} on this conversation; the request was not sent to the engine"
            ) from None


def as_engine_sees(messages: list[dict[str, Any]], caps: dict[str, bool]) -> list[dict[str, Any]]:
    """The messages as llama.cpp hands them to the template: text parts joined by a newline when
    the template cannot take typed content, system prompts folded into the next user turn when
    it has no system role, and tool-call arguments as objects when it takes objects."""
    shaped = [_shaped(m, caps) for m in messages if isinstance(m, dict)]
    if caps.get("supports_system_role", True):
        return shaped
    return _fold_system(shaped)


def _shaped(message: dict[str, Any], caps: dict[str, bool]) -> dict[str, Any]:
    out = dict(message)
    content = out.get("content")
    if content is None:
        out["content"] = ""
    elif isinstance(content, list) and not caps.get("supports_typed_content", False):
        texts = [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
        out["content"] = "\n".join(texts)
    calls = out.get("tool_calls")
    if isinstance(calls, list) and caps.get("supports_object_arguments", False):
        out["tool_calls"] = [_object_arguments(c) for c in calls]
    return out


def _object_arguments(call: Any) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return call
    try:
        arguments = json.loads(function["arguments"])
    except ValueError:
        return call
    return {**call, "function": {**function, "arguments": arguments}}


def _fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A system prompt joins the next user turn ("system\\nuser"), as llama.cpp does for such templates."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for message in messages:
        if message.get("role") == "system":
            pending.append(str(message.get("content") or ""))
            continue
        if pending and message.get("role") == "user" and isinstance(message.get("content"), str):
            message = {**message, "content": "\n".join([*pending, message["content"]])}
            pending = []
        out.append(message)
    if pending:
        out.append({"role": "user", "content": "\n".join(pending)})
    return out
