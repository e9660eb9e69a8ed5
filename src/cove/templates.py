"""Chat templates (Hugging Face style Jinja) compiled and rendered inside a bounded sandbox."""

from __future__ import annotations

import contextvars
import functools
import json
import re
import string
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.filters import do_format, do_indent, make_attrgetter
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_environment

from cove.deadline import run_within
from cove.errors import InvalidTemplate

#: Wall-clock budget for one render; chat templates normally take well under a millisecond.
DEFAULT_TIMEOUT_S = 2.0
#: Largest prompt a template may produce, and largest single value it may build on the way.
MAX_OUTPUT_CHARS = 1_000_000
#: The bound in force for the render running in this thread: a long context's prompt may be larger.
_max_chars: contextvars.ContextVar[int] = contextvars.ContextVar("max_chars", default=MAX_OUTPUT_CHARS)
#: Templates come from model files; the largest real ones are a few tens of kilobytes.
MAX_TEMPLATE_CHARS = 256 * 1024
#: Integers past this many bits only come from `9 ** 9 ** 9`-style attacks.
MAX_INT_BITS = 100_000

GEMMA_STOP = ["<end_of_turn>"]

# Gemma 3 has no system role: the system prompt is folded into the first user turn, as
# Google's own template does, or sent as a user turn of its own when no user turn follows.
GEMMA_TEMPLATE = """\
{%- macro text(content) -%}
{%- if content is string -%}
{{- content | trim -}}
{%- elif content is iterable -%}
{%- for part in content -%}
{%- if part['type'] == 'image' -%}
{{- '<start_of_image>' -}}
{%- elif part['type'] == 'text' -%}
{{- part['text'] | trim -}}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if loop.first and message['role'] == 'system' -%}
{%- set ns.system = text(message['content']) -%}
{%- if loop.last or messages[1]['role'] != 'user' -%}
{{- '<start_of_turn>user\\n' + ns.system + '<end_of_turn>\\n' -}}
{%- set ns.system = '' -%}
{%- endif -%}
{%- else -%}
{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\\n' -}}
{%- if ns.system -%}
{{- ns.system + '\\n\\n' -}}
{%- set ns.system = '' -%}
{%- endif -%}
{{- text(message['content']) + '<end_of_turn>\\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<start_of_turn>model\\n' -}}
{%- endif -%}
"""

# Put in front of a chat template that knows nothing of tools, so that any chat model can call
# them: the tool signatures join the system prompt, an assistant's calls become
# <tool_call>{"name": ..., "arguments": ...}</tool_call> text and tool results become user turns.
# llama.cpp reads the call format off the rendered template and parses (and, when a call is
# required, constrains) the model's output with it. Without tools or tool turns it renders
# exactly what the template alone renders, so plain chat and the prompt cache are unchanged.
TOOL_CALLS_PREFIX = """\
{#- cove: tool calls for a template that has none of its own -#}
{%- set cove = namespace(messages=[], rest=messages, text='') -%}
{%- if tools -%}
{%- set cove.text = 'These functions are available (signatures as JSON Schema):\\n<tools>\\n' -%}
{%- for tool in tools -%}
{%- set cove.text = cove.text + (tool | tojson) + '\\n' -%}
{%- endfor -%}
{%- set cove.text = cove.text + '</tools>\\nTo call a function, reply with its name and arguments as JSON '
  + 'between <tool_call> and </tool_call>, for example:\\n<tool_call>\\n'
  + '{"name": "function_name", "arguments": {"parameter": "value"}}\\n</tool_call>' -%}
{%- if messages and messages[0]['role'] == 'system' and messages[0]['content'] is string -%}
{%- set cove.messages = [{'role': 'system', 'content': messages[0]['content'] + '\\n\\n' + cove.text}] -%}
{%- set cove.rest = messages[1:] -%}
{%- else -%}
{%- set cove.messages = [{'role': 'system', 'content': cove.text}] -%}
{%- endif -%}
{%- endif -%}
{%- for message in cove.rest -%}
{%- if message['role'] == 'assistant' and message['tool_calls'] -%}
{%- set cove.text = message['content'] if message['content'] is string else '' -%}
{%- for call in message['tool_calls'] -%}
{%- set fn = call['function'] if call['function'] is defined else call -%}
{%- set args = fn['arguments'] if fn['arguments'] is string else (fn['arguments'] | tojson) -%}
{%- set cove.text = cove.text + ('\\n' if cove.text else '') + '<tool_call>\\n{"name": "'
  + fn['name'] + '", "arguments": ' + args + '}\\n</tool_call>' -%}
{%- endfor -%}
{%- set cove.messages = cove.messages + [{'role': 'assistant', 'content': cove.text}] -%}
{%- elif message['role'] == 'tool' -%}
{%- set result = message['content'] if message['content'] is string else (message['content'] | tojson) -%}
{%- set cove.messages = cove.messages
  + [{'role': 'user', 'content': '<tool_response>\\n' + result + '\\n</tool_response>'}] -%}
{%- else -%}
{%- set cove.messages = cove.messages + [message] -%}
{%- endif -%}
{%- endfor -%}
{%- set messages = cove.messages -%}
"""

#: A made-up function and a conversation that calls it: what a tool-aware template must show.
_PROBE_TOOL = "cove_probe_lookup"
_PROBE_VALUE = "cove-probe-value-7"
_TOOL_CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "Look it up."},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_probe",
                "type": "function",
                "function": {"name": _PROBE_TOOL, "arguments": '{"key": "' + _PROBE_VALUE + '"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_probe", "content": "found"},
]
_PROBE_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": _PROBE_TOOL,
            "description": "Find a value.",
            "parameters": {"type": "object", "properties": {"key": {"type": "string"}}},
        },
    }
]

_BUILTIN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_SAMPLE_CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "What is 2 + 2?"},
]


class _Timeout(BaseException):
    """Raised in the rendering thread at the deadline; a BaseException so no `except Exception`
    in Jinja eats it."""


class _TooLarge(Exception):
    """A value or output over the size caps; an Exception so constant folding skips it."""


class _TemplateRaised(TemplateError):
    """The template itself called raise_exception()."""


class _RefusedConversation(InvalidTemplate):
    """InvalidTemplate for a raise_exception() call: the template works but refused the input."""


def is_builtin_template_name(value: str) -> bool:
    """True for a bare word naming one of llama.cpp's built-in templates (`chatml`, `llama3`)."""
    return _BUILTIN_NAME.fullmatch(value) is not None


def tool_template(source: str) -> str | None:
    """A template that shows tools and tool calls: `source` when it does so itself, else `source`
    behind TOOL_CALLS_PREFIX; None when neither renders a conversation with a tool call."""
    return _tool_template_cached(source)


@functools.lru_cache(maxsize=64)
def _tool_template_cached(source: str) -> str | None:
    for candidate in (source, TOOL_CALLS_PREFIX + source):
        if _shows_tool_calls(candidate):
            return candidate
    return None


def _shows_tool_calls(source: str) -> bool:
    """Renders the tool signatures, and the call with its arguments, somewhere in the prompt."""
    try:
        offered = render_template(source, _TOOL_CONVERSATION[:1], tools=_PROBE_TOOLS)
        called = render_template(source, _TOOL_CONVERSATION, tools=_PROBE_TOOLS)
    except InvalidTemplate:
        return False
    return _PROBE_TOOL in offered and _PROBE_VALUE in called


def check_template(source: str) -> None:
    """Parse `source` and render it once over a sample conversation, or raise InvalidTemplate."""
    _check_template_cached(source)


@functools.lru_cache(maxsize=64)
def _check_template_cached(source: str) -> None:
    # Stored recipes are re-validated on every load; a template that passed once passes again.
    template = _compile(source)
    variables = _variables(True, "", "", None)
    try:
        _render_bounded(template, _SAMPLE_CONVERSATION, variables, DEFAULT_TIMEOUT_S)
    except _RefusedConversation:
        # Some real templates (Gemma 2, old Mistral) refuse a system message on purpose.
        _render_bounded(template, _SAMPLE_CONVERSATION[1:], variables, DEFAULT_TIMEOUT_S)


def render_template(
    source: str,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    tools: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_chars: int = MAX_OUTPUT_CHARS,
) -> str:
    """Render a chat template over `messages`, within `timeout_s` and `max_chars` (the output,
    and any one value built on the way).

    `extra`: more variables for the template (a request's `chat_template_kwargs`, such as
    `enable_thinking`); they cannot replace the ones above. Compiled templates are cached.
    """
    variables = _variables(add_generation_prompt, bos_token, eos_token, tools)
    if extra:
        variables = {**{str(k): v for k, v in extra.items() if k != "messages"}, **variables}
    template = _compile(source)
    bound = _max_chars.set(max(max_chars, MAX_OUTPUT_CHARS))
    try:
        return _render_bounded(template, messages, variables, timeout_s)
    finally:
        _max_chars.reset(bound)


def _variables(
    add_generation_prompt: bool, bos_token: str, eos_token: str, tools: list[Any] | None
) -> dict[str, Any]:
    return {
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "tools": tools,
    }


def _compile(source: str) -> Template:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise InvalidTemplate(f"chat template is larger than {MAX_TEMPLATE_CHARS // 1024} KB")
    try:
        return _compile_cached(source)
    except TemplateSyntaxError as e:
        hint = ""
        if re.search(r"\{\{-?\s*\.", source):
            hint = " (this looks like an Ollama Go template; cove needs a Jinja chat template)"
        raise InvalidTemplate(
            f"chat template has a syntax error on line {e.lineno}: {_one_line(e.message)}{hint}"
        ) from None
    except (TemplateError, RecursionError, MemoryError) as e:
        raise InvalidTemplate(f"chat template does not compile: {_one_line(e)}") from None


@functools.lru_cache(maxsize=32)
def _compile_cached(source: str) -> Template:
    return _environment().from_string(source)


def _render_bounded(
    template: Template,
    messages: list[dict[str, Any]],
    variables: dict[str, Any],
    timeout_s: float,
) -> str:
    def render() -> str:
        return _collect(template.generate(messages=messages, **variables))

    try:
        return run_within(timeout_s, render, _Timeout)
    except _Timeout:
        raise InvalidTemplate(f"chat template does not finish within {timeout_s:g} s") from None
    except _TooLarge as e:
        raise InvalidTemplate(f"chat template {e}") from None
    except SecurityError as e:
        raise InvalidTemplate(f"chat template reaches for Python internals: {_one_line(e)}") from None
    except _TemplateRaised as e:
        raise _RefusedConversation(f"chat template raised an error: {_one_line(e)}") from None
    except Exception as e:  # anything a hostile template can provoke becomes one line
        raise InvalidTemplate(f"chat template fails: {_one_line(e) or type(e).__name__}") from None


def _collect(chunks: Iterable[str]) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > _max_chars.get():
            raise _TooLarge(f"renders more than {_megabytes()}")
        out.append(chunk)
    return "".join(out)


def _one_line(error: object) -> str:
    return " ".join(str(error).split())[:300]


# --- size guards: the deadline stops loops, these stop single operations that allocate gigabytes


def _check_size(size: int) -> None:
    if size > _max_chars.get():
        raise _TooLarge(f"builds a value larger than {_megabytes()}")


def _megabytes() -> str:
    return f"{_max_chars.get() / 1e6:.2g} MB"


def _rough_len(value: Any) -> int:
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(len(v) for v in value if isinstance(v, str | bytes))
    return 0


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(count, int) and isinstance(seq, str | bytes | list | tuple):
                _check_size(_rough_len(seq) * max(count, 0))
    elif operator == "+":
        _check_size(_rough_len(left) + _rough_len(right))
    elif operator == "**":
        ints = isinstance(left, int) and isinstance(right, int)
        if ints and abs(left) > 1 and right * left.bit_length() > MAX_INT_BITS:
            raise _TooLarge("builds a number too large to handle")
    elif operator == "%" and isinstance(left, str):
        _check_percent_format(left, right)


def _check_ints(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and value > _max_chars.get():
            raise _TooLarge(f"builds a value larger than {_megabytes()}")


def _check_percent_format(fmt: str, args: Any) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        widths = [w for w in match.groups() if w]
        if "*" in widths:
            _check_ints(args if isinstance(args, tuple) else (args,))
        _check_ints(int(w) for w in widths if w != "*")


def _check_brace_format(fmt: str, args: Iterable[Any]) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will raise the same error itself
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            _check_ints(args)  # width comes from an argument: `'{:{}}'.format(x, 10**9)`
        elif spec:
            _check_ints(int(n) for n in re.findall(r"\d+", spec))


def _check_str_method(owner: str, name: str, args: tuple[Any, ...]) -> None:
    if name in ("ljust", "rjust", "center", "zfill") and args:
        _check_ints(args[:1])
    elif name == "expandtabs" and args and isinstance(args[0], int):
        _check_size(len(owner) + owner.count("\t") * args[0])
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1])
    elif name == "join" and args and isinstance(args[0], list | tuple):
        _check_size(_rough_len(args[0]) + len(owner) * len(args[0]))
    elif name in ("format", "format_map"):
        _check_brace_format(owner, args)


def _check_replace(s: str, old: Any, new: Any) -> None:
    if isinstance(old, str) and isinstance(new, str):
        hits = len(s) + 1 if old == "" else s.count(old)
        _check_size(len(s) + hits * len(new))


def _bounded_concat(parts: Iterable[Any]) -> str:
    """Joins template output buffers and `~` operands; replaces str_join and env.concat."""
    strings: list[str] = []
    size = 0
    for part in parts:
        text = part if isinstance(part, str) else str(part)
        size += len(text)
        _check_size(size)
        strings.append(text)
    return "".join(strings)


# --- filters and globals Hugging Face templates expect, with the size guards applied


def _raise_exception(message: str) -> NoReturn:
    raise _TemplateRaised(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Hugging Face's tojson: no HTML escaping, unlike Jinja's own filter.
    if len(str(indent or "")) > 16 or (isinstance(indent, int) and indent > 16):
        raise _TooLarge("asks tojson for an indent larger than 16")
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _center(value: Any, width: int = 80) -> str:
    _check_ints((width,))
    return str(value).center(width)


def _indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(value)
    per_line = width if isinstance(width, int) else len(str(width))
    _check_size(len(text) + (text.count("\n") + 1) * per_line)
    return do_indent(text, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_percent_format(str(value), args or kwargs)
    return do_format(value, *args, **kwargs)


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    _check_replace(text, old, new)
    return text.replace(old, new, -1 if count is None else count)


@pass_environment
def _join(
    environment: ImmutableSandboxedEnvironment,
    value: Iterable[Any],
    d: str = "",
    attribute: str | int | None = None,
) -> str:
    if attribute is not None:
        value = map(make_attrgetter(environment, attribute), value)
    items = [v if isinstance(v, str) else str(v) for v in value]
    _check_size(sum(map(len, items)) + len(d) * len(items))
    return str(d).join(items)


class _GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training; render as is."""

    tags = {"generation"}  # noqa: RUF012 - Jinja's own declaration style

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b` normally compiles to str_join; route it through the size-checked join.
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus size checks on the operations that can allocate gigabytes."""

    code_generator_class = _BoundedCodeGenerator
    concat = staticmethod(_bounded_concat)  # type: ignore[assignment]
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        # The stock sandbox returns an Undefined that prints as "", hiding the attempt.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    # Dunder parameter names as in Jinja's own `call`, so template kwargs cannot collide.
    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            _check_str_method(owner, getattr(target, "__name__", ""), args)
        return super().call(__context, __obj, *args, **kwargs)


@functools.lru_cache(maxsize=1)
def _environment() -> _ChatTemplateEnvironment:
    env = _ChatTemplateEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationTag]
    )
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.filters.update(
        tojson=_tojson,
        center=_center,
        indent=_indent,
        format=_format,
        replace=_replace,
        join=_join,
    )
    return env
