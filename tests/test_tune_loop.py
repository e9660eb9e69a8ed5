"""The training loop on a tiny random llama: an interrupted run resumes to the same weights, and its
adapter names every adapted weight. No stored model; needs the `tune` extra."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from cove.tune import train as trainer  # noqa: E402
from cove.tune.adapter_gguf import BaseShape, tensor_name  # noqa: E402
from cove.tune.checkpoint import Checkpoints  # noqa: E402
from cove.tune.plan import TuneSettings  # noqa: E402

SETTINGS = TuneSettings(rank=2, alpha=4, lr=5e-3, steps=6, batch_size=2, checkpoint_every=2, seed=3)


class Quiet:
    """A reporter that can stop the run after a given step, as Ctrl-C would."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.steps: list[int] = []
        self.warnings: list[str] = []

    def phase(self, text: str) -> None: ...

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def start(self, done: int, total: int) -> None:
        self.started_at = done

    def step(self, step: int, total: int, loss: float, tokens_per_s: float) -> None:
        self.steps.append(step)
        if step == self.stop_after:
            raise KeyboardInterrupt

    def stop(self) -> None: ...


def tiny_run(folder: Path) -> trainer.Run:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = trainer.add_lora(transformers.LlamaForCausalLM(config), SETTINGS)
    rng = random.Random(1)
    encoded = []
    for _ in range(7):
        ids = [rng.randrange(1, 64) for _ in range(rng.randrange(5, 12))]
        encoded.append(trainer.Encoded(ids=ids, labels=list(ids)))

    class Tokenizer:
        pad_token_id = 0

    return trainer.Run(
        model=model,
        tokenizer=Tokenizer(),
        train=encoded[:5],
        held=encoded[5:],
        held_examples=[],
        settings=SETTINGS,
        steps=SETTINGS.steps or 0,
        checkpoints=Checkpoints(folder, "run"),
        before=trainer.Measure(loss=4.0, perplexity=54.6),
    )


def weights(run: trainer.Run) -> dict[str, Any]:
    return {p.module: (p.a.copy(), p.b.copy()) for p in trainer.lora_pairs(run.model)}


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = tiny_run(tmp_path / "whole")
    assert trainer.train(whole, Quiet(), None) == 0
    expected = weights(whole)

    interrupted = tiny_run(tmp_path / "split")
    with pytest.raises(KeyboardInterrupt):
        trainer.train(interrupted, Quiet(stop_after=3), None)
    state = interrupted.checkpoints.load(restart=False)
    assert state is not None and state["step"] == 3  # saved on the way out, not only every 2 steps
    assert trainer.restored_before(state) == trainer.Measure(loss=4.0, perplexity=54.6)

    resumed = tiny_run(tmp_path / "split")
    resumed.before = trainer.restored_before(state)
    reporter = Quiet()
    assert trainer.train(resumed, reporter, state) == 3
    assert reporter.started_at == 3 and reporter.steps == [4, 5, 6]
    assert len(resumed.losses) == 6
    for module, (a, b) in weights(resumed).items():
        assert torch.allclose(torch.tensor(a), torch.tensor(expected[module][0]), atol=1e-6), module
        assert torch.allclose(torch.tensor(b), torch.tensor(expected[module][1]), atol=1e-6), module


def test_training_lowers_the_loss_and_names_every_adapted_weight(tmp_path: Path) -> None:
    run = tiny_run(tmp_path)
    before = trainer.held_out_loss(run.model, run.train, 0, 4)
    trainer.train(run, Quiet(), None)
    assert trainer.held_out_loss(run.model, run.train, 0, 4) < before
    pairs = list(trainer.lora_pairs(run.model))
    shape = BaseShape(architecture="llama", block_count=2, head_count=4, head_count_kv=2)
    assert sorted(tensor_name(shape, p.module) for p in pairs) == [
        "blk.0.attn_q.weight",
        "blk.0.attn_v.weight",
        "blk.1.attn_q.weight",
        "blk.1.attn_v.weight",
    ]
    assert {p.a.shape for p in pairs} == {(2, 32)}
    assert {p.b.shape for p in pairs} == {(32, 2), (16, 2)}  # v has 2 kv heads of 8


def test_disk_full_during_training_warns_and_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cove.errors import DiskFull

    run = tiny_run(tmp_path)
    calls = []

    def full(state: dict[str, Any]) -> None:
        calls.append(state["step"])
        raise DiskFull("disk full while writing checkpoint.pt: free some space and try again")

    monkeypatch.setattr(run.checkpoints, "save", full)
    reporter = Quiet()
    trainer.train(run, reporter, None)
    assert calls == [0, 2, 4] and len(run.losses) == 6
    assert "the checkpoint at step 2 was not saved (the previous one is kept)" in reporter.warnings[1]


def test_a_target_module_the_model_lacks_is_named(tmp_path: Path) -> None:
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    settings = TuneSettings(target_modules=("q_proj", "qkv"))
    with pytest.raises(trainer.CannotTrain, match=r"no module named qkv in this model; it has: .*q_proj"):
        trainer.add_lora(transformers.LlamaForCausalLM(config), settings)
