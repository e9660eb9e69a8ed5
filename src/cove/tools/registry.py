"""The tools cove can run for a model: each one's name, description, argument schema, network need and run.

A tool is a `Tool`: what the model is told (name, description, JSON schema of its arguments),
whether it reaches the network (and so goes through the egress gate with an allow-list), and a
`run` function taking the checked arguments and a `ToolContext`, returning text. `run_tool` is
the one way a tool is run (the chat's tool loop and `cove tools run` both use it): it checks the
arguments against the schema and holds every run to a time cap and a size cap, so a tool that
hangs, floods, answers bytes that are not UTF-8 or crashes ends in a `ToolOutcome` error the
model can read, never in a crash of the chat.

Modules that add tools expose `TOOL: Tool` (or `TOOLS: list[Tool]`); `builtin_tools()` collects
them. Whether a tool may run at all is the user's policy (`cove.tools.policy`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest

if TYPE_CHECKING:
    from ..config import Settings

#: A tool's name as OpenAI and llama.cpp accept it.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: How long one run may take, and how much text it may hand the model.
TIME_CAP_S = 30.0
SIZE_CAP_BYTES = 256 * 1024
#: The modules whose `TOOL`/`TOOLS` are cove's built-in tools (a missing one is skipped).
BUILTIN_MODULES = ("builtin", "web_search", "fetch_url", "knowledge_search")


class ToolError(BadRequest):
    """A tool that cannot run as asked (unknown, off, bad arguments); the message says what to do."""

    @classmethod
    def switched_off(cls, name: str) -> ToolError:
        return cls(f"the tool {name!r} is switched off; `cove tools enable {name}` switches it on")


@dataclass(frozen=True)
class ToolContext:
    """What a run may use: the settings, and a flag to stop by.

    Which hosts it may reach is the egress gate's to say, on each connection (`Tool.feature`).
    """

    settings: Settings | None = None
    #: Set when the run is no longer wanted (the chat was stopped, the time cap passed).
    cancel: threading.Event = field(default_factory=threading.Event)


Runner = Callable[[dict[str, Any], ToolContext], str]


@dataclass(frozen=True)
class Tool:
    """One tool as the model sees it, and how cove runs it."""

    name: str
    description: str
    #: JSON schema of the arguments: an object with `properties` (and `required`).
    parameters: dict[str, Any]
    run: Runner
    #: Whether it opens connections (then it needs the gate and an allow-list of hosts).
    network: bool = False
    #: Where it comes from: "built-in", or "mcp:SERVER" for a tool of an MCP server.
    source: str = "built-in"
    time_cap_s: float = TIME_CAP_S

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"a tool name is 1-64 letters, digits, _ or -, not {self.name!r}")

    @property
    def feature(self) -> str:
        """The egress gate's feature for its connections: "tool:NAME", or "mcp:SERVER"."""
        return self.source if self.source.startswith("mcp:") else f"tool:{self.name}"

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry sent to the model."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolOutcome:
    """How a run ended: its text for the model, or an error said in one line."""

    name: str
    ok: bool
    text: str
    seconds: float = 0.0

    def for_model(self) -> str:
        """The tool message's content: the result, or the error marked as one."""
        return self.text if self.ok else f"error: {self.text}"


class Registry:
    """The tools known to this process, by name (built-in ones and those of MCP servers)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._lock = threading.Lock()
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        with self._lock:
            self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        with self._lock:
            tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self.names()) or "none"
            raise ToolError(f"there is no tool named {name!r} (known: {known}); `cove tools` lists them")
        return tool

    def find(self, name: str) -> Tool | None:
        with self._lock:
            return self._tools.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._tools)

    def all(self) -> list[Tool]:
        with self._lock:
            return [self._tools[n] for n in sorted(self._tools)]


def builtin_tools() -> list[Tool]:
    """Every built-in tool: the `TOOL`/`TOOLS` of each module in BUILTIN_MODULES that exists."""
    found: list[Tool] = []
    for module_name in BUILTIN_MODULES:
        try:
            module = import_module(f"{__package__}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module_name}":
                raise  # the module is there but needs something missing: say so, do not hide it
            continue
        found.extend(getattr(module, "TOOLS", []))
        if getattr(module, "TOOL", None) is not None:
            found.append(module.TOOL)
    return found


def parse_arguments(tool: Tool, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
    """The call's arguments as data, checked against the tool's schema; ToolError says what is wrong."""
    if arguments is None or arguments == "":
        value: Any = {}
    elif isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ToolError(f"the arguments for {tool.name} are not JSON ({exc.msg} at {exc.pos})") from None
    else:
        value = arguments
    problem = schema_problem(value, tool.parameters, "arguments")
    if problem:
        raise ToolError(f"{tool.name}: {problem}")
    assert isinstance(value, dict)
    return value


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_problem(value: Any, schema: dict[str, Any], where: str) -> str | None:
    """What keeps `value` from matching the JSON-schema subset tools use, or None when it matches."""
    wanted = schema.get("type")
    if wanted is not None:
        kinds = wanted if isinstance(wanted, list) else [wanted]
        if not any(_TYPES.get(k, lambda _: True)(value) for k in kinds):
            return f"{where} must be {' or '.join(map(str, kinds))}, not {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {schema['enum']}"
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                return f"{where} needs {name!r}"
        for name, item in value.items():
            if name in properties:
                problem = schema_problem(item, properties[name], f"{where}.{name}")
                if problem:
                    return problem
            elif schema.get("additionalProperties") is False:
                return f"{where} has {name!r}, which is not one of {sorted(properties)}"
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problem = schema_problem(item, schema["items"], f"{where}[{i}]")
            if problem:
                return problem
    return None


def run_tool(
    tool: Tool,
    arguments: str | dict[str, Any] | None,
    context: ToolContext | None = None,
    *,
    time_cap_s: float | None = None,
    size_cap: int = SIZE_CAP_BYTES,
) -> ToolOutcome:
    """Run one call under the caps; every failure is an outcome with a clear error, never a raise."""
    import time

    context = context or ToolContext()
    cap = tool.time_cap_s if time_cap_s is None else time_cap_s
    started = time.perf_counter()
    try:
        checked = parse_arguments(tool, arguments)
    except ToolError as exc:
        return ToolOutcome(tool.name, False, str(exc))
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = tool.run(checked, context)
        except BaseException as exc:  # reported to the model; the chat goes on
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"cove-tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(cap)
    seconds = time.perf_counter() - started
    if worker.is_alive():
        context.cancel.set()  # a tool that watches it stops; one that does not is left behind
        message = f"{tool.name} took longer than {cap:g} s and was stopped"
        return ToolOutcome(tool.name, False, message, seconds)
    if "error" in box:
        failure = box["error"]
        if isinstance(failure, ToolError):  # the tool's own words for a call it cannot answer
            return ToolOutcome(tool.name, False, f"{tool.name}: {failure}", seconds)
        detail = str(failure) or type(failure).__name__
        return ToolOutcome(tool.name, False, f"{tool.name} failed: {detail}", seconds)
    return _checked_output(tool, box.get("value"), size_cap, seconds)


def _checked_output(tool: Tool, value: Any, size_cap: int, seconds: float) -> ToolOutcome:
    if isinstance(value, bytes | bytearray):
        if len(value) > size_cap:
            return _too_big(tool, len(value), size_cap, seconds)
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"{tool.name} returned text that is not UTF-8 (at byte {exc.start})"
            return ToolOutcome(tool.name, False, message, seconds)
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, default=str)
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if size > size_cap:
        return _too_big(tool, size, size_cap, seconds)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return ToolOutcome(tool.name, False, f"{tool.name} returned text that is not valid UTF-8", seconds)
    return ToolOutcome(tool.name, True, value, seconds)


def _too_big(tool: Tool, size: int, cap: int, seconds: float) -> ToolOutcome:
    return ToolOutcome(
        tool.name,
        False,
        f"{tool.name} returned {size:,} bytes, more than the {cap:,} a tool may hand the model",
        seconds,
    )
