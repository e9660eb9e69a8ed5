"""The tool registry's guarantees (schema checks, caps on time, size and encoding) and the built-in tools."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cove.errors import InvalidSetting
from cove.tools import policy
from cove.tools.builtin import TOOLS, evaluate
from cove.tools.registry import Registry, Tool, ToolContext, ToolError, builtin_tools, run_tool

OPEN = {"type": "object", "properties": {}}


def tool(run: Any, **kw: Any) -> Tool:
    return Tool("probe", "a test tool", kw.pop("parameters", OPEN), run, **kw)


def test_a_tool_that_hangs_is_stopped_at_its_time_cap() -> None:
    stopped = threading.Event()

    def hang(_: dict[str, Any], context: ToolContext) -> str:
        context.cancel.wait(30)
        stopped.set()
        return "late"

    started = time.monotonic()
    outcome = run_tool(tool(hang), {}, time_cap_s=0.3)
    assert time.monotonic() - started < 2
    assert (outcome.ok, outcome.text) == (False, "probe took longer than 0.3 s and was stopped")
    assert stopped.wait(2)  # a tool that watches `cancel` is told to stop


def test_a_tool_that_returns_50_mb_is_an_error_not_a_flood() -> None:
    outcome = run_tool(tool(lambda *_: "x" * (50 << 20)), {})
    assert not outcome.ok
    assert outcome.text == "probe returned 52,428,800 bytes, more than the 262,144 a tool may hand the model"
    assert len(outcome.for_model()) < 200


def test_invalid_utf8_and_a_crash_are_clear_errors() -> None:
    assert (
        run_tool(tool(lambda *_: b"ok \xff\xfe"), {}).text
        == "probe returned text that is not UTF-8 (at byte 3)"
    )
    assert run_tool(tool(lambda *_: "half \udcff"), {}).text == "probe returned text that is not valid UTF-8"
    assert run_tool(tool(lambda *_: b"fine"), {}).text == "fine"

    def crash(*_: Any) -> str:
        raise RuntimeError("disk on fire")

    assert run_tool(tool(crash), {}).text == "probe failed: disk on fire"
    assert run_tool(tool(lambda *_: {"a": 1}), {}).text == '{"a": 1}'  # data is handed over as JSON


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ("[1, 2]", "probe: arguments must be object, not list"),
        ('{"n": "3"}', "probe: arguments.n must be integer, not str"),
        ('{"n": true}', "probe: arguments.n must be integer, not bool"),
        ("{}", "probe: arguments needs 'n'"),
        ('{"n": 1, "extra": 2}', "probe: arguments has 'extra', which is not one of ['mode', 'n']"),
        ('{"n": 1, "mode": "loud"}', "probe: arguments.mode must be one of ['quiet', 'plain']"),
        ("{'n': 1}", "the arguments for probe are not JSON"),
    ],
)
def test_arguments_are_checked_against_the_schema(arguments: str, error: str) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "mode": {"enum": ["quiet", "plain"]}},
        "required": ["n"],
        "additionalProperties": False,
    }
    ran: list[Any] = []
    outcome = run_tool(tool(lambda a, _: ran.append(a) or "ran", parameters=schema), arguments)
    assert not outcome.ok and outcome.text.startswith(error)
    assert ran == []


def test_a_tool_name_the_model_could_not_call_back_is_refused() -> None:
    with pytest.raises(ValueError, match="1-64 letters"):
        Tool("has space", "x", OPEN, lambda *_: "")


def test_the_registry_names_the_known_tools_when_one_is_unknown() -> None:
    registry = Registry(builtin_tools())
    assert registry.names()[:2] == ["calculator", "current_time"]
    with pytest.raises(ToolError, match="no tool named 'nope' \\(known: calculator, current_time"):
        registry.get("nope")


@pytest.mark.parametrize(
    ("expression", "value"),
    [("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2 ** 10", 1024), ("2^8", 256), ("7 // 2", 3), ("-3 % 5", 2)],
)
def test_the_calculator_does_arithmetic(expression: str, value: int) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("__import__('os').system('true')", "not Call"),
        ("open('/etc/passwd')", "not Call"),
        ("x + 1", "not Name"),
        ("(1).__class__", "not Attribute"),
        ("[1, 2]", "not List"),
        ("lambda: 1", "not Lambda"),
        ("9 ** 9 ** 9", "exponent beyond 1000"),
        ("(10 ** 999) * (10 ** 999)", "more than 1000 digits"),
        ("1 / 0", "division by zero"),
        ("10.0 ** 400", "too large"),
        ("(-1) ** 0.5", "not a real number"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 501, "longer than 500"),
    ],
)
def test_the_calculator_refuses_everything_else(expression: str, error: str) -> None:
    with pytest.raises(ToolError, match=error.replace("(", "\\(")):
        evaluate(expression)


def test_current_time_knows_the_day_and_zones() -> None:
    current_time = next(t for t in TOOLS if t.name == "current_time")
    here = run_tool(current_time, {})
    paris = run_tool(current_time, {"timezone": "Europe/Paris"})
    bad = run_tool(current_time, {"timezone": "Mars/Base"})
    assert here.ok and time.strftime("%Y-") in here.text
    assert paris.ok and ("CET" in paris.text or "CEST" in paris.text)
    assert bad.text == "current_time: unknown time zone 'Mars/Base'; use an IANA name such as Europe/Paris"


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("https://example.org/page", "a host name such as example.org, not a URL"),
        ("example.org/wiki", "a host name such as example.org, not a URL"),
        ("ex*ample.org", "'*' alone (any host) or '*.example.org'"),
        ("*example.org", "'*' alone (any host) or '*.example.org'"),
        ("   ", "an empty host"),
    ],
)
def test_an_allow_list_entry_that_is_no_host_is_refused_and_says_what_to_give(
    cove_home: Path, host: str, words: str
) -> None:
    with pytest.raises(InvalidSetting, match=re.escape(words)):
        policy.enable(cove_home, "fetch_url", (host,))
    assert policy.load(cove_home).state("fetch_url") == policy.ToolState()


def test_the_policy_file_keeps_switches_and_allow_lists(cove_home: Path) -> None:
    assert policy.load(cove_home).enabled_names() == []
    policy.enable(cove_home, "fetch_url", ("Example.org", "*.wiki.org"))
    policy.enable(cove_home, "fetch_url", ("example.org",))
    assert policy.load(cove_home).state("fetch_url") == policy.ToolState(True, ("example.org", "*.wiki.org"))
    policy.disable(cove_home, "fetch_url")
    assert policy.load(cove_home).state("fetch_url") == policy.ToolState(False, ("example.org", "*.wiki.org"))
    (cove_home / "tools.json").write_text("{broken")
    with pytest.raises(InvalidSetting, match=r"tools\.json is not readable JSON"):
        policy.load(cove_home)
