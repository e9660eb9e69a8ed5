"""An embedder's engine layout (batch tokens and slots) and batches that are whole rounds of
slots, so thousands of chunks keep every slot busy."""

from __future__ import annotations

from typing import Any

import pytest

from cove.engine.embedding import embed_in_batches, embedding_layout


@pytest.mark.parametrize(
    ("num_ctx", "planned", "expected"),
    [
        (512, 8, (512, 8)),  # all-minilm: a step holds one whole input, and no more
        (256, 4, (512, 4)),  # never less than llama.cpp's own batch
        (2048, 8, (2048, 8)),  # a long-context embedder: the batch grows to hold a whole input
        (8192, 1, (8192, 1)),
    ],
)
def test_embedding_layout(num_ctx: int, planned: int, expected: tuple[int, int]) -> None:
    assert embedding_layout(num_ctx, planned) == expected


class Recorder:
    """An engine's embed call that remembers batch sizes and takes `per_input` seconds each."""

    def __init__(self, per_input: float, clock: list[float]) -> None:
        self.sizes: list[int] = []
        self.per_input = per_input
        self.clock = clock

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.sizes.append(len(body["input"]))
        self.clock[0] += self.per_input * len(body["input"])
        return {"data": [{"index": i, "embedding": [1.0]} for i in range(len(body["input"]))]}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """embed_in_batches times its calls by perf_counter: make that the recorder's own time."""
    now = [0.0]
    monkeypatch.setattr("cove.engine.embedding.time.perf_counter", lambda: now[0])
    return now


def test_a_slow_model_still_fills_every_slot_in_each_call(clock: list[float]) -> None:
    engine = Recorder(per_input=0.2, clock=clock)  # 8 inputs take 1.6 s: over the target
    result = embed_in_batches(engine, [f"t{i}" for i in range(40)], min_batch=4)
    # Without the floor the batch would fall to one input (0.25 s), leaving three slots idle.
    assert all(size % 4 == 0 for size in engine.sizes[:-1]) and min(engine.sizes) >= 4
    assert sum(engine.sizes) == 40 and [d["index"] for d in result["data"]] == list(range(40))


def test_thousands_of_quick_inputs_take_few_calls_in_whole_rounds(clock: list[float]) -> None:
    engine = Recorder(per_input=0.0005, clock=clock)
    embed_in_batches(engine, ["chunk"] * 5000, min_batch=3)
    assert all(size % 3 == 0 for size in engine.sizes[:-1])
    assert max(engine.sizes) >= 250 and len(engine.sizes) < 30  # grows to the cap, not 8 at a time
