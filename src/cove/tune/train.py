"""The training loop: the base dequantised from its GGUF, a LoRA on it (peft), measured before and after.

Everything here needs the `tune` extra (torch, transformers, peft). Nothing reaches the
network: the Hugging Face libraries are switched to offline before they are imported, and
the model and tokenizer load from the stored GGUF only.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import resource
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .adapter_gguf import LoraPair
from .checkpoint import Checkpoints
from .data import Example
from .errors import CannotTrain, TuneExtraMissing
from .plan import TuneSettings

IGNORED = -100  # the label torch's cross-entropy skips
EXTRA_PACKAGES = ("torch", "transformers", "peft")
INSTALL_HINT = (
    "cove tune needs the tune extra: pip install 'cove[tune]'. Install torch's CPU build first "
    "(pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu, or here, from the "
    "local wheel: pip install torch==2.13.0); the default build pulls in GBs of GPU libraries"
)


def require_extra() -> None:
    """Say exactly what to install when torch, transformers or peft are missing."""
    missing = [name for name in EXTRA_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise TuneExtraMissing(f"{', '.join(missing)} not installed. {INSTALL_HINT}")


def go_offline() -> None:
    """Before transformers is imported: no hub look-ups, no telemetry; training data stays here."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ[key] = "1"
    # The libraries' own progress bars and deprecation notes would break through cove's bar.
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class Reporter(Protocol):
    """Where the run tells a person what it is doing (the CLI draws a progress bar)."""

    def phase(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def start(self, done: int, total: int) -> None: ...

    def step(self, step: int, total: int, loss: float, tokens_per_s: float) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORED)


@dataclass
class Measure:
    """Held-out loss (mean over the trained tokens) and perplexity, with sample answers."""

    loss: float
    perplexity: float
    samples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "perplexity": self.perplexity, "samples": self.samples}


# -- loading ----------------------------------------------------------------------------------


def trainable_architectures() -> list[str]:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return sorted(set(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"})


def check_architecture(architecture: str) -> None:
    go_offline()
    known = trainable_architectures()
    if architecture not in known:
        raise CannotTrain(
            f"transformers cannot load {architecture!r} models from GGUF, so cove cannot train them; "
            f"it can: {', '.join(known)}"
        )


def load_base(gguf_path: Path, folder: Path, template: str | None) -> tuple[Any, Any]:
    """The model (float32, dequantised) and tokenizer from the stored GGUF, offline."""
    go_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "base.gguf"  # transformers wants a folder and a file name in it
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=link.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=link.name, dtype=torch.float32, local_files_only=True
    )
    if template and "{" in template:
        tokenizer.chat_template = template  # what the engine renders with (the recipe's wins)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def add_lora(model: Any, settings: TuneSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [m for m in settings.target_modules if m not in present]
    if unknown:
        linear = sorted(n for n in present if n.endswith("_proj") or n in ("fc1", "fc2", "dense"))
        raise CannotTrain(f"no module named {', '.join(unknown)} in this model; it has: {', '.join(linear)}")
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,  # type: ignore[arg-type]  # peft takes a float too
        target_modules=list(settings.target_modules),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft reads a property transformers has deprecated
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


# -- tokens -----------------------------------------------------------------------------------


def encode(tokenizer: Any, example: Example, seq_len: int) -> Encoded:
    """Token ids and labels: a chat learns only its assistant turns; a document every token."""
    if not example.is_chat:
        ids = tokenizer(example.text, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = [*ids, tokenizer.eos_token_id]
        return _cut(Encoded(ids=ids, labels=list(ids)), seq_len)
    if not tokenizer.chat_template:
        raise CannotTrain("the base model has no chat template to train chats with; give it documents")
    messages = example.chat()
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = _answer_spans(tokenizer, messages, full)
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORED
        for token, (begin, _) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return _cut(Encoded(ids=ids, labels=labels), seq_len)


def _answer_spans(tokenizer: Any, messages: list[dict[str, str]], full: str) -> list[tuple[int, int]]:
    """Where each assistant turn (its end-of-turn mark included) sits in the rendered chat."""
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if full.startswith(through) and through.startswith(before):
            spans.append((len(before), len(through)))
    if not spans:  # a template that renders turns differently alone: learn the whole chat
        spans.append((0, len(full)))
    return spans


def _cut(encoded: Encoded, seq_len: int) -> Encoded:
    if len(encoded.ids) <= seq_len:
        return encoded
    return Encoded(ids=encoded.ids[:seq_len], labels=encoded.labels[:seq_len], truncated=True)


def batches(encoded: list[Encoded], size: int) -> list[list[Encoded]]:
    return [encoded[i : i + size] for i in range(0, len(encoded), size)]


def batch_for_step(encoded: list[Encoded], size: int, seed: int, step: int) -> list[Encoded]:
    """The batch of a step, from the step number alone, so a resumed run sees the same batches."""
    per_epoch = max(1, math.ceil(len(encoded) / size))
    epoch, index = divmod(step, per_epoch)
    order = list(range(len(encoded)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    chosen = order[index * size : (index + 1) * size]
    return [encoded[i] for i in chosen]


def tensors(batch: list[Encoded], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e.ids) for e in batch)
    ids = [e.ids + [pad_id] * (width - len(e.ids)) for e in batch]
    labels = [e.labels + [IGNORED] * (width - len(e.labels)) for e in batch]
    mask = [[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in batch]
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


# -- measuring --------------------------------------------------------------------------------


def held_out_loss(model: Any, encoded: list[Encoded], pad_id: int, size: int) -> float:
    """Mean cross-entropy per trained token over the held-out examples."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches(encoded, size):
            inputs = tensors(batch, pad_id)
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            shifted = logits[:, :-1].reshape(-1, logits.shape[-1])
            targets = inputs["labels"][:, 1:].reshape(-1)
            loss = torch.nn.functional.cross_entropy(shifted, targets, ignore_index=IGNORED, reduction="sum")
            total += float(loss)
            count += int((targets != IGNORED).sum())
    return total / max(1, count)


def sample_answers(model: Any, tokenizer: Any, examples: list[Example], limit: int) -> list[dict[str, str]]:
    """Greedy answers to the first held-out questions (or continuations of document pieces)."""
    import torch

    model.eval()
    found = []
    for example in examples[:limit]:
        prompt, expected = _prompt_of(tokenizer, example)
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=40,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        question = example.messages[-2][1] if example.is_chat and len(example.messages) > 1 else prompt
        found.append({"prompt": question[-200:], "expected": expected[:200], "answer": answer})
    return found


def _prompt_of(tokenizer: Any, example: Example) -> tuple[str, str]:
    if example.is_chat and tokenizer.chat_template:
        messages = example.chat()
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompt = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
        return prompt, messages[last]["content"]
    words = example.text.split()
    return " ".join(words[:12]), " ".join(words[12:40])


def measure(
    model: Any, tokenizer: Any, held: list[Example], encoded: list[Encoded], settings: TuneSettings
) -> Measure:
    loss = held_out_loss(model, encoded, tokenizer.pad_token_id, settings.batch_size)
    samples = sample_answers(model, tokenizer, held, settings.samples)
    return Measure(loss=loss, perplexity=math.exp(min(loss, 50.0)), samples=samples)


def peak_memory_bytes() -> int:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def warm_up(model: Any, batch: list[Encoded], pad_id: int, rounds: int = 2) -> float:
    """Seconds of one forward and backward pass on a real batch (the first round is not counted)."""
    inputs = tensors(batch, pad_id)
    model.train()
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        model(**inputs).loss.backward()
        timings.append(time.perf_counter() - started)
    model.zero_grad(set_to_none=True)
    return min(timings[1:] or timings)


# -- training ---------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything the loop needs; `train` fills `before`, `after` and the figures."""

    model: Any
    tokenizer: Any
    train: list[Encoded]
    held: list[Encoded]
    held_examples: list[Example]
    settings: TuneSettings
    steps: int
    checkpoints: Checkpoints
    before: Measure | None = None
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0


def train(run: Run, reporter: Reporter, resume: dict[str, Any] | None) -> int:
    """Train to `run.steps`, saving checkpoints; returns the step it started from (0 when fresh)."""
    import torch

    torch.manual_seed(run.settings.seed)
    optimizer = torch.optim.AdamW([p for p in run.model.parameters() if p.requires_grad], lr=run.settings.lr)
    start = _restore(run, optimizer, resume) if resume else 0
    if not resume:  # the base's figures are kept from the start: a resumed run does not measure again
        save(run, optimizer, 0, reporter)
    pad_id = run.tokenizer.pad_token_id
    reporter.start(start, run.steps)
    step = start
    try:
        for step in range(start, run.steps):
            loss, tokens, seconds = _one_step(run, optimizer, pad_id, step)
            run.losses.append(loss)
            run.seconds += seconds
            run.tokens += tokens
            reporter.step(step + 1, run.steps, loss, tokens / max(seconds, 1e-9))
            if (step + 1) % run.settings.checkpoint_every == 0 and step + 1 < run.steps:
                save(run, optimizer, step + 1, reporter)
    except KeyboardInterrupt:
        reporter.stop()
        save(run, optimizer, len(run.losses), reporter)
        raise
    reporter.stop()
    return start


def _one_step(run: Run, optimizer: Any, pad_id: int, step: int) -> tuple[float, int, float]:
    started = time.perf_counter()
    batch = batch_for_step(run.train, run.settings.batch_size, run.settings.seed, step)
    run.model.train()
    for group in optimizer.param_groups:  # linear decay to a tenth: from the step alone, resumable
        group["lr"] = run.settings.lr * (1 - 0.9 * step / max(1, run.steps))
    loss = run.model(**tensors(batch, pad_id)).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach()), sum(len(e.ids) for e in batch), time.perf_counter() - started


def save(run: Run, optimizer: Any, step: int, reporter: Reporter) -> None:
    """A checkpoint at `step`; a full disk keeps the previous one and training goes on."""
    from peft import get_peft_model_state_dict

    from ..errors import DiskFull

    state = {
        "step": step,
        "lora": get_peft_model_state_dict(run.model, save_embedding_layers=False),
        "optimizer": optimizer.state_dict(),
        "before": run.before.to_dict() if run.before else None,
        "losses": list(run.losses),
        "seconds": run.seconds,
        "tokens": run.tokens,
    }
    try:
        run.checkpoints.save(state)
    except DiskFull as exc:
        reporter.warn(f"{exc}; the checkpoint at step {step} was not saved (the previous one is kept)")


def _restore(run: Run, optimizer: Any, state: dict[str, Any]) -> int:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(run.model, state["lora"])
    if state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    run.losses = list(state.get("losses") or [])
    run.seconds = float(state.get("seconds") or 0.0)
    run.tokens = int(state.get("tokens") or 0)
    return int(state["step"])


def restored_before(state: dict[str, Any] | None) -> Measure | None:
    before = (state or {}).get("before")
    if not before:
        return None
    return Measure(loss=before["loss"], perplexity=before["perplexity"], samples=before.get("samples", []))


def lora_pairs(model: Any) -> Iterator[LoraPair]:
    """The trained matrices, named by their HF module (peft's wrapper prefix taken off)."""
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or "default" not in lora_a:
            continue
        a = lora_a["default"].weight.detach().float().numpy()
        b = module.lora_B["default"].weight.detach().float().numpy()
        yield LoraPair(module=name.removeprefix("base_model.model."), a=a, b=b)
