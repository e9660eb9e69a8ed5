"""Chat templates: sandboxing of hostile templates, time and size bounds, real-world rendering."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from cove.errors import InvalidTemplate
from cove.templates import (
    GEMMA_STOP,
    GEMMA_TEMPLATE,
    check_template,
    is_builtin_template_name,
    render_template,
)

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "What is 2 + 2?"},
]

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ self.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ messages.append(1) }}",
        "{{ messages[0].update({'role': 'x'}) }}",
        "{{ '{0.__class__}'.format(1) }}",
    ],
)
def test_injection_reaches_for_internals(payload: str) -> None:
    with pytest.raises(InvalidTemplate, match="reaches for Python internals"):
        check_template(payload)


def test_undefined_config_is_an_error() -> None:
    with pytest.raises(InvalidTemplate, match="'config' is undefined"):
        check_template("{{ config.items() }}")


def test_popen_payload_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = [
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
        f"{{{{ lipsum.__globals__['os'].system('touch {marker}') }}}}",
        f"{{{{ namespace.__init__.__globals__.os.popen('touch {marker}') }}}}",
    ]
    for payload in payloads:
        with pytest.raises(InvalidTemplate):
            check_template(payload)
        with pytest.raises(InvalidTemplate):
            render_template(payload, CONVERSATION)
    assert not marker.exists()


def test_render_does_not_mutate_messages() -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidTemplate):
        render_template("{{ messages.append(1) }}{% set _ = messages.pop() %}", messages)
    assert messages == [{"role": "user", "content": "hi"}]


def test_nested_loop_is_stopped_by_the_deadline() -> None:
    loop = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(InvalidTemplate, match="does not finish within 2 s"):
        check_template(loop)
    assert time.monotonic() - started < 5


def test_deadline_is_configurable_and_leaves_the_trace_function_alone() -> None:
    def previous(*_: object) -> None:
        return None

    loop = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
    old = sys.gettrace()
    sys.settrace(previous)
    try:
        started = time.monotonic()
        with pytest.raises(InvalidTemplate, match=r"within 0\.2 s"):
            render_template(loop, [], timeout_s=0.2)
        assert time.monotonic() - started < 2
        assert sys.gettrace() is previous
    finally:
        sys.settrace(old)


def test_huge_output_is_capped() -> None:
    with pytest.raises(InvalidTemplate, match="renders more than 1 MB"):
        check_template("{% for i in range(99999) %}{{ 'x' * 100 }}{% endfor %}")


@pytest.mark.parametrize(
    "payload",
    [
        "{{ 'x' * 1000000000 }}",
        "{{ ['x' * 1000] * 100000 }}",
        "{{ 'a'.ljust(999999999) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '%999999999s' % 'a' }}",
        "{{ 'a'|center(999999999) }}",
        "{{ ('x' * 1000)|replace('', 'y' * 1000) }}",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    ],
)
def test_single_operations_cannot_build_huge_values(payload: str) -> None:
    with pytest.raises(InvalidTemplate, match="larger than 1 MB"):
        check_template(payload)


def test_huge_power_is_refused() -> None:
    with pytest.raises(InvalidTemplate, match="number too large"):
        check_template("{{ 9 ** (9 ** 9) }}")


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(InvalidTemplate, match="syntax error on line 2"):
        check_template("{% for m in messages %}\n{{ m.content }\n{% endfor %}")


def test_go_template_gets_a_hint() -> None:
    with pytest.raises(InvalidTemplate, match="Ollama Go template"):
        check_template("{{ .System }}{{ .Prompt }}")


def test_raise_exception_is_reported() -> None:
    with pytest.raises(InvalidTemplate, match="raised an error: roles must alternate"):
        render_template("{{ raise_exception('roles must alternate') }}", CONVERSATION)


def test_template_refusing_system_role_still_checks() -> None:
    # Gemma 2's template refuses system messages; that is a design choice, not a broken template.
    template = (
        "{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    check_template(template)


def test_chatml_renders_expected_text() -> None:
    expected = (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    check_template(CHATML)
    assert render_template(CHATML, CONVERSATION) == expected
    no_prompt = render_template(CHATML, CONVERSATION, add_generation_prompt=False)
    assert no_prompt == expected.removesuffix("<|im_start|>assistant\n")


def test_gemma_template_renders_turns() -> None:
    expected = (
        "<bos><start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2 + 2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    check_template(GEMMA_TEMPLATE)
    assert render_template(GEMMA_TEMPLATE, CONVERSATION, bos_token="<bos>") == expected
    assert GEMMA_STOP == ["<end_of_turn>"]


def test_gemma_template_without_system_and_with_parts() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": " Hi "}]}]
    text = render_template(GEMMA_TEMPLATE, messages, bos_token="<bos>")
    assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_hugging_face_helpers() -> None:
    template = (
        "{% generation %}{{ tools | tojson }}{% endgeneration %}"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{{ m['content'] | tojson }}{% endfor %}{{ strftime_now('%Y')[:2] }}{{ eos_token }}"
    )
    tools = [{"name": "f"}]
    text = render_template(template, [{"role": "user", "content": "é<"}, {}], tools=tools, eos_token="</s>")
    assert text == '[{"name": "f"}]"é<"20</s>'


@pytest.mark.parametrize("name", ["chatml", "gemma", "llama3", "phi3", "mistral-v7", "deepseek3"])
def test_builtin_names(name: str) -> None:
    assert is_builtin_template_name(name)


@pytest.mark.parametrize("value", ["", "ChatML", "{{ x }}", "chat ml", "-chatml", "a" * 65])
def test_not_builtin_names(value: str) -> None:
    assert not is_builtin_template_name(value)


def test_check_renders_with_generation_prompt() -> None:
    template = "{% if not add_generation_prompt %}{{ raise_exception('no prompt') }}{% endif %}"
    check_template(template + "{{ messages[0]['content'] }}")
