"""The tool loop on the real bundled model: forced to call current_time, cove runs it, the model answers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cove.chat.service import TurnRequest
from cove.config import Settings
from cove.library.local import Cove
from cove.tools import policy
from cove.tools.events import ToolEvent

pytestmark = pytest.mark.model


def test_the_model_calls_current_time_and_answers_from_it(real_home: Path) -> None:
    policy.enable(real_home, "current_time")
    settings = replace(Settings.from_env(), home=real_home, num_parallel=1)
    forced = {"type": "function", "function": {"name": "current_time"}}
    request = TurnRequest(
        "gemma3:270m",
        [{"role": "user", "content": "What is today's date? Use the tool."}],
        options={"temperature": 0, "num_predict": 48, "num_ctx": 2048},
        fields={"tool_choice": forced},
        cove_tools=["current_time"],
        conversation="new",
    )
    with Cove(settings) as cove:
        stream = cove.chat_turn(request)
        events = list(stream)
        ran = [e for e in events if isinstance(e, ToolEvent)]
        assert [(e.kind, e.name) for e in ran] == [("ran", "current_time")], ran
        year = ran[0].message.split("-")[0].split()[-1]
        assert year.isdigit() and len(year) == 4
        text = "".join(e.content for e in events)
        assert text.strip(), "the model said nothing after the tool ran"
        assert not any(e.tool_calls for e in events)
        chat = cove.history.get(str(stream.conversation_id))
        assert [m.role for m in chat.messages] == ["user", "tool", "assistant"]
        assert chat.messages[1].content.startswith("current_time(") and year in chat.messages[1].content
        assert chat.messages[2].content == text
        # The kept tool run is part of the conversation: the next turn sends it, and the model goes on.
        follow = TurnRequest(
            "gemma3:270m",
            [{"role": "user", "content": "And tomorrow?"}],
            options={"temperature": 0, "num_predict": 16},
            conversation=stream.conversation_id,
        )
        turn = cove.conversations.prepare(follow)
        assert any(m["role"] == "tool" for m in turn.body["messages"])
        assert cove.conversations.run(turn).content.strip()
