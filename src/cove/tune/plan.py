"""What a fine-tuning run will cost here (memory, time), and the refusal when this machine cannot do it.

Memory is counted before anything loads, from the GGUF's shape: the base dequantised to
float32 (what transformers trains on), the LoRA weights with their gradients and Adam state,
and the activations of one batch (the logits over the vocabulary dominate for small models).
Time comes from a short warm-up: the seconds of a measured step times the steps to run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import TooBigForMachine

#: The Python, torch and tokenizer overhead of a training process, measured here (~0.6 GB).
OVERHEAD_BYTES = 700 * 1024**2
#: Of the memory free now, the share a run may plan to use (the rest keeps the machine usable).
USABLE_SHARE = 0.85
#: Bytes each activation element of a layer costs in forward and backward (float32, kept for the backward).
LAYER_BYTES_PER_TOKEN_PER_WIDTH = 4 * 18


@dataclass
class TuneSettings:
    """The run's knobs; the defaults train a small model on a few hundred examples in minutes."""

    rank: int = 8
    alpha: float = 16.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lr: float = 1e-3
    epochs: int = 3
    steps: int | None = None  # set: exactly this many steps, whatever the epochs
    seq_len: int = 512
    batch_size: int = 8
    seed: int = 0
    holdout: float = 0.1
    checkpoint_every: int = 10  # steps
    samples: int = 2  # held-out chats answered before and after

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


@dataclass(frozen=True)
class ModelShape:
    """The base model's size, as its GGUF says."""

    parameters: int
    layers: int
    width: int  # embedding length
    vocab: int


@dataclass
class Plan:
    """What the run will do and cost."""

    steps: int
    train_examples: int
    held_out: int
    train_tokens: int  # per epoch
    memory_bytes: int
    available_bytes: int
    step_seconds: float | None = None  # measured in the warm-up
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        return None if self.step_seconds is None else self.step_seconds * self.steps

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds}


def total_steps(settings: TuneSettings, train_examples: int) -> int:
    if settings.steps is not None:
        return settings.steps
    return settings.epochs * math.ceil(train_examples / settings.batch_size)


def lora_parameters(shape: ModelShape, settings: TuneSettings) -> int:
    """About how many weights the adapter has: rank x (in + out) per target, taken as width-square."""
    return shape.layers * len(settings.target_modules) * settings.rank * 2 * shape.width


def memory_needed(shape: ModelShape, settings: TuneSettings, tokens_per_sequence: int) -> int:
    """Peak bytes of a training step, before any warm-up has measured it."""
    weights = shape.parameters * 4
    adapter = lora_parameters(shape, settings) * 4 * 4  # weight, gradient, two Adam moments
    tokens = settings.batch_size * min(tokens_per_sequence, settings.seq_len)
    layers = tokens * shape.layers * shape.width * LAYER_BYTES_PER_TOKEN_PER_WIDTH
    logits = tokens * shape.vocab * 4 * 3  # logits, their softmax and its gradient
    return OVERHEAD_BYTES + weights + adapter + layers + logits


def make_plan(
    shape: ModelShape,
    settings: TuneSettings,
    train_examples: int,
    held_out: int,
    train_tokens: int,
    longest: int,
    available_bytes: int,
) -> Plan:
    return Plan(
        steps=total_steps(settings, train_examples),
        train_examples=train_examples,
        held_out=held_out,
        train_tokens=train_tokens,
        memory_bytes=memory_needed(shape, settings, longest),
        available_bytes=available_bytes,
    )


def check_fits(plan: Plan, settings: TuneSettings, max_hours: float | None) -> None:
    """Refuse a run this machine cannot do, saying what would fit instead."""
    usable = int(plan.available_bytes * USABLE_SHARE)
    if plan.memory_bytes > usable:
        raise TooBigForMachine(
            f"this run needs about {_gb(plan.memory_bytes)} of memory and {_gb(usable)} is free to use: "
            f"{_smaller(settings)}"
        )
    seconds = plan.seconds
    if max_hours is not None and seconds is not None and seconds > max_hours * 3600:
        fewer = max(1, int(plan.steps * max_hours * 3600 / seconds))
        raise TooBigForMachine(
            f"this run would take about {human_time(seconds)} here (limit --max-hours {max_hours:g}): "
            f"try --steps {fewer}, a shorter --seq-len, less data, or a smaller base model"
        )


def _smaller(settings: TuneSettings) -> str:
    ideas = []
    if settings.batch_size > 1:
        ideas.append(f"--batch-size {max(1, settings.batch_size // 2)}")
    if settings.seq_len > 128:
        ideas.append(f"--seq-len {settings.seq_len // 2}")
    ideas.append("a smaller base model (smollm2:135m trains in about 1.5 GB)")
    return "try " + ", ".join(ideas)


def _gb(size: int) -> str:
    return f"{size / 1024**3:.1f} GB"


def human_time(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe(plan: Plan) -> list[str]:
    """The plan in lines a person reads before the run starts."""
    lines = [
        f"data: {plan.train_examples} examples to train on ({plan.train_tokens} tokens an epoch), "
        f"{plan.held_out} held out",
        f"steps: {plan.steps}",
        f"memory: about {_gb(plan.memory_bytes)} needed, {_gb(plan.available_bytes)} free",
    ]
    if plan.seconds is not None:
        lines.append(f"time: about {human_time(plan.seconds)} ({plan.step_seconds:.2f} s a step, measured)")
    return lines + plan.notes
