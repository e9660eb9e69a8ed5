"""The request-time render check: a template whose costly branch depends on the conversation is
refused before the engine sees it, and the messages are shaped as the engine shapes them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cove.engine.llamacpp import LlamaCppModel
from cove.engine.render_guard import RenderGuard, as_engine_sees
from cove.errors import EngineError, InvalidTemplate
from cove.templates import GEMMA_TEMPLATE, TOOL_CALLS_PREFIX, check_template

LOOP = "{%- for m in messages -%}"
TURN = "{{- m['role'] + ': ' + m['content'] + '\\n' -}}{%- endfor -%}"
#: Each passes the create-time check (the sample conversation never says "boom").
BOMBS = {
    "range": LOOP
    + "{%- if m['content'] == 'boom' -%}{%- for i in range(3000000) -%}x{%- endfor -%}{%- endif -%}"
    + TURN,
    "output": LOOP
    + "{%- if m['content'] == 'boom' -%}{%- for i in range(3000) -%}{%- for j in range(1000) -%}x"
    + "{%- endfor -%}{%- endfor -%}{%- endif -%}"
    + TURN,
    "time": LOOP
    + "{%- if m['content'] == 'boom' -%}{%- set n = namespace(i=0) -%}{%- for i in range(100000) -%}"
    + "{%- for j in range(100000) -%}{%- set n.i = n.i + 1 -%}{%- endfor -%}{%- endfor -%}{%- endif -%}"
    + TURN,
    "value": LOOP + "{%- if m['content'] == 'boom' -%}{{ 'x' * 10 ** 9 }}{%- endif -%}" + TURN,
    "thinking": LOOP + "{%- if enable_thinking -%}{{ 'x' * 10 ** 9 }}{%- endif -%}" + TURN,
}
CHATML_LIKE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
BOOM = [
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hi"},
    {"role": "user", "content": "boom"},
]


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_bomb_passes_create_but_is_refused_on_the_conversation_that_sets_it_off(kind: str) -> None:
    check_template(BOMBS[kind])
    guard = RenderGuard("bomb", TOOL_CALLS_PREFIX + BOMBS[kind])
    guard.check([{"role": "user", "content": "hello"}])  # a conversation that does not set it off
    extra = {"enable_thinking": True} if kind == "thinking" else None
    started = time.monotonic()
    with pytest.raises(
        InvalidTemplate, match=r"bomb's chat template .* on this conversation; the request was not"
    ):
        guard.check(BOOM, extra=extra)
    assert time.monotonic() - started < 10  # the deadline is 2 s; a loaded machine gets room


def test_typed_content_is_joined_when_the_template_cannot_take_it() -> None:
    """llama.cpp joins text parts with a newline for such a template: the bomb sees "boom" there too."""
    bomb = RenderGuard("bomb", BOMBS["value"], caps={"supports_typed_content": False})
    parts = [{"role": "user", "content": [{"type": "text", "text": "boom"}]}]
    with pytest.raises(InvalidTemplate):
        bomb.check(parts)
    two = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
        }
    ]
    assert as_engine_sees(two, {})[0]["content"] == "a\nb"
    assert as_engine_sees(two, {"supports_typed_content": True}) == two


def test_system_prompts_fold_into_the_next_user_turn_without_a_system_role() -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": None},
    ]
    assert as_engine_sees(messages, {"supports_system_role": False}) == [
        {"role": "user", "content": "S\nu"},
        {"role": "assistant", "content": ""},
    ]
    assert as_engine_sees(messages[:1], {"supports_system_role": False}) == [{"role": "user", "content": "S"}]
    assert as_engine_sees(messages, {"supports_system_role": True})[0] == messages[0]


def test_tool_call_arguments_become_objects_when_the_template_takes_objects() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    message = {"role": "assistant", "content": "", "tool_calls": [call]}
    shaped = as_engine_sees([message], {"supports_object_arguments": True})[0]
    assert shaped["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    assert as_engine_sees([message], {})[0]["tool_calls"] == [call]


def test_from_props_reads_the_engines_template_and_tokens() -> None:
    props = {
        "chat_template": "{{ bos_token }}{% if bos_token == '<bos>' %}{{ 'x' * 10 ** 9 }}{% endif %}",
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "chat_template_caps": {"supports_system_role": False},
    }
    guard = RenderGuard.from_props("m", props)
    assert guard.caps == {"supports_system_role": False} and guard.eos_token == "<eos>"
    with pytest.raises(InvalidTemplate):  # the branch is taken only with the engine's real BOS text
        guard.check([{"role": "user", "content": "hi"}])
    RenderGuard.from_props("m", {"chat_template": "chatml"}).check(
        BOOM
    )  # llama.cpp's C++ format: nothing to run
    RenderGuard.from_props("m", {}).check(BOOM)


def test_a_real_template_renders_in_well_under_a_millisecond_per_turn() -> None:
    """The cost on time to first token: Gemma's template (with the tool prefix) over 20 turns."""
    guard = RenderGuard("gemma", TOOL_CALLS_PREFIX + GEMMA_TEMPLATE, "<bos>", "<eos>")
    turns = [{"role": "system", "content": "Be brief."}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 40}
        for i in range(20)
    ]
    guard.check(turns)  # compiled once, then cached
    started = time.perf_counter()
    for _ in range(20):
        guard.check(turns)
    per_render = (time.perf_counter() - started) / 20
    assert per_render < 0.05, f"{per_render * 1000:.2f} ms per render"


def test_an_engine_that_cannot_be_reached_for_its_template_says_why() -> None:
    """The template check is the first request an engine sees; when that fails, the model may say
    why (an engine process: that it stopped, and how) instead of "could not answer /props"."""

    class Stopped(LlamaCppModel):
        def _tokens(self) -> Any:
            raise EngineError("the engine could not answer /props: Connection reset by peer")

        def _listener_failed(self, error: EngineError) -> EngineError:
            return EngineError("the engine for m stopped: it was killed by SIGABRT")

    with pytest.raises(EngineError, match="stopped: it was killed by SIGABRT"):
        object.__new__(Stopped).check_render([{"role": "user", "content": "hi"}])


def test_the_size_bound_grows_with_the_context() -> None:
    """A long conversation for a long context is not a bomb: 1.5 MB of turns fits 128k tokens."""
    turns = [{"role": "user", "content": "x" * 500_000} for _ in range(3)]
    with pytest.raises(InvalidTemplate, match="renders more than 1 MB"):
        RenderGuard("small", CHATML_LIKE, num_ctx=4096).check(turns)
    RenderGuard("long", CHATML_LIKE, num_ctx=131072).check(turns)
    with pytest.raises(InvalidTemplate, match=r"more than 2\.1 MB"):  # 16 characters a token
        RenderGuard("long", CHATML_LIKE, num_ctx=131072).check([{"role": "user", "content": "x" * 3_000_000}])
