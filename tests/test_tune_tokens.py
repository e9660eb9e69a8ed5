"""What a chat and a document become as tokens and labels: only the assistant's turns are learnt, and
anything past the sequence length is cut (and counted). A character-level tokenizer, no model."""

from __future__ import annotations

from typing import Any

import pytest

from cove.tune.data import Example
from cove.tune.train import IGNORED, CannotTrain, batch_for_step, encode


class CharTokenizer:
    """One token per character; the template wraps each turn as `<role>text|`."""

    eos_token_id = 0
    chat_template = "<role>text|"

    def apply_chat_template(
        self, messages: list[dict[str, str]], tokenize: bool = False, add_generation_prompt: bool = False
    ) -> str:
        text = "".join(f"<{m['role'][0]}>{m['content']}|" for m in messages)
        return text + ("<a>" if add_generation_prompt else "")

    def __call__(
        self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False
    ) -> Any:
        out: dict[str, Any] = {"input_ids": [ord(c) for c in text]}
        if return_offsets_mapping:
            out["offset_mapping"] = [(i, i + 1) for i in range(len(text))]
        return out


def learnt(encoded: Any) -> str:
    return "".join(chr(t) for t in encoded.labels if t != IGNORED)


def test_a_chat_learns_only_the_assistants_turns_and_their_end() -> None:
    chat = Example(
        origin="x",
        messages=(("system", "S"), ("user", "hi"), ("assistant", "yo"), ("user", "q"), ("assistant", "ok")),
    )
    encoded = encode(CharTokenizer(), chat, seq_len=100)
    assert "".join(chr(t) for t in encoded.ids) == "<s>S|<u>hi|<a>yo|<u>q|<a>ok|"
    assert learnt(encoded) == "yo|ok|"
    assert not encoded.truncated


def test_a_chat_longer_than_the_sequence_is_cut_and_marked() -> None:
    chat = Example(origin="x", messages=(("user", "a" * 50), ("assistant", "b" * 50)))
    encoded = encode(CharTokenizer(), chat, seq_len=60)
    assert len(encoded.ids) == len(encoded.labels) == 60 and encoded.truncated
    assert learnt(encoded) == "b" * (60 - len("<u>" + "a" * 50 + "|<a>"))


def test_a_document_learns_every_token_and_ends_with_end_of_text() -> None:
    encoded = encode(CharTokenizer(), Example(origin="d", text="abc"), seq_len=10)
    assert encoded.ids == [97, 98, 99, 0] and encoded.labels == encoded.ids


def test_chats_need_a_chat_template() -> None:
    tokenizer = CharTokenizer()
    tokenizer.chat_template = ""
    with pytest.raises(CannotTrain, match="no chat template"):
        encode(tokenizer, Example(origin="x", messages=(("user", "a"), ("assistant", "b"))), seq_len=10)


def test_each_epoch_sees_every_example_once_in_a_seeded_order() -> None:
    items = [encode(CharTokenizer(), Example(origin=str(i), text=str(i)), 10) for i in range(5)]
    epoch = [batch_for_step(items, 2, seed=1, step=s) for s in range(3)]
    seen = sorted(chr(e.ids[0]) for batch in epoch for e in batch)
    assert seen == ["0", "1", "2", "3", "4"] and [len(b) for b in epoch] == [2, 2, 1]
    assert [batch_for_step(items, 2, seed=1, step=s) for s in range(3)] == epoch  # the same on resume
    assert [batch_for_step(items, 2, seed=1, step=s) for s in range(3, 6)] != epoch  # a new order each epoch
