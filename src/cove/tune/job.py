"""One `cove tune` run from start to stored model: data, plan, measure, train, measure, adapter, recipe.

The steps the person sees, in order: what the data holds (and what was left out), the plan
(memory, time from a measured warm-up, or the refusal), the base's held-out figures, the
progress of training, the tuned figures, and the new model's name. A checkpoint folder in
COVE_HOME/tune/<name> lets the same command resume; it goes once the model is stored.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..store.gguf import GGUFInfo
from ..store.models import Manifest
from ..store.names import parse_name
from . import data as training_data
from .adapter_gguf import BaseShape, write_adapter
from .checkpoint import Checkpoints, fingerprint
from .errors import BadTrainingData, TuneError
from .plan import ModelShape, Plan, TuneSettings, check_fits, describe, make_plan, memory_needed

KNOWLEDGE_HINT = (
    "to answer questions from these documents (with citations, and kept up to date), "
    "`cove kb` may suit better than fine-tuning"
)


@dataclass
class TuneRequest:
    base: str
    name: str
    paths: list[Path] = field(default_factory=list)
    from_history: str | None = None
    settings: TuneSettings = field(default_factory=TuneSettings)
    dry_run: bool = False
    restart: bool = False
    max_hours: float | None = 24.0


@dataclass
class TuneResult:
    name: str
    plan: Plan
    details: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None
    resumed_from: int = 0


def work_folder(home: Path, name: str) -> Path:
    """Where a run keeps its checkpoint: one folder per model name, made safe for any file system."""
    return home / "tune" / str(parse_name(name)).replace("/", "_").replace(":", "-")


def read_data(cove: Any, request: TuneRequest) -> training_data.TrainingData:
    data = training_data.read_paths(request.paths, piece_chars=request.settings.seq_len * 3)
    if request.from_history:
        data.add("history", training_data.history_chats(cove.history, request.from_history))
    if not data.examples and not data.problems:
        raise BadTrainingData("no training data: give --data files or --from-history")
    return data


def check_name(cove: Any, name: str) -> str:
    target = str(parse_name(name))
    if cove.store.has(target):
        raise TuneError(
            f"a model named '{target}' exists already: choose another --name, or `cove rm {target}`"
        )
    return target


def base_model(cove: Any, name: str) -> tuple[Manifest, GGUFInfo]:
    base = cove.model(name)
    if base.adapter_digest:
        raise TuneError(f"'{base.name}' is itself fine-tuned; tune its base model instead")
    if base.is_embedding:
        raise TuneError(f"'{base.name}' is an embedding model; cove tune trains chat and text models")
    return base, cove.store.gguf(base)


def shape_of(info: GGUFInfo) -> ModelShape:
    meta = info.metadata
    arch = info.architecture or ""
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = meta.get(f"{arch}.vocab_size") or getattr(tokens, "length", None) or 50_000
    return ModelShape(
        parameters=info.parameter_count,
        layers=int(meta.get(f"{arch}.block_count") or 1),
        width=int(meta.get(f"{arch}.embedding_length") or 1),
        vocab=int(vocab),
    )


def base_shape(info: GGUFInfo) -> BaseShape:
    meta = info.metadata
    arch = info.architecture or ""
    heads = int(meta.get(f"{arch}.attention.head_count") or 1)
    return BaseShape(
        architecture=arch,
        block_count=int(meta.get(f"{arch}.block_count") or 1),
        head_count=heads,
        head_count_kv=int(meta.get(f"{arch}.attention.head_count_kv") or heads),
    )


def tune(cove: Any, request: TuneRequest, reporter: Any) -> TuneResult:
    """The whole run; raises KeyboardInterrupt after saving a checkpoint when interrupted."""
    from . import train as trainer

    settings = request.settings
    name = check_name(cove, request.name)
    base, info = base_model(cove, request.base)
    data = read_data(cove, request)
    for problem in data.shown_problems():
        reporter.warn(f"left out: {problem}")
    train_examples, held_examples = training_data.split(data.examples, settings.holdout, settings.seed)
    shape = shape_of(info)
    first = make_plan(shape, settings, len(train_examples), len(held_examples), 0, settings.seq_len, _free())
    check_fits(first, settings, None)  # before anything loads: the worst case of the sequence length

    trainer.require_extra()
    trainer.check_architecture(info.architecture or "unknown")
    folder = work_folder(cove.settings.home, name)
    reporter.phase(f"loading {base.name} from its GGUF")
    model, tokenizer = trainer.load_base(cove.store.model_path(base), folder, base.recipe_obj().template)
    train_enc = [trainer.encode(tokenizer, e, settings.seq_len) for e in train_examples]
    held_enc = [trainer.encode(tokenizer, e, settings.seq_len) for e in held_examples]
    truncated = sum(e.truncated for e in train_enc + held_enc)
    if truncated:
        reporter.warn(f"{truncated} examples longer than --seq-len {settings.seq_len} were cut to fit")
    model = trainer.add_lora(model, settings)

    plan = _measured_plan(trainer, model, tokenizer, shape, settings, train_enc, held_enc)
    check_fits(plan, settings, request.max_hours)
    details = _details(base, data, settings, len(train_enc), len(held_enc), truncated)
    result = TuneResult(name=name, plan=plan, details=details)
    if data.documents and _knowledge_base_exists():
        plan.notes.append(KNOWLEDGE_HINT)
    for line in describe(plan):  # before the run starts: what it will cost
        reporter.phase(line)
    if request.dry_run:
        return result

    checkpoints = Checkpoints(folder, fingerprint(base.digest, settings.to_dict(), data.examples))
    resume = checkpoints.load(request.restart)
    run = trainer.Run(
        model=model,
        tokenizer=tokenizer,
        train=train_enc,
        held=held_enc,
        held_examples=held_examples,
        settings=settings,
        steps=plan.steps,
        checkpoints=checkpoints,
        before=trainer.restored_before(resume),
    )
    if resume:
        reporter.phase(f"resuming at step {resume['step']} of {plan.steps}")
    if run.before is None:
        reporter.phase("measuring the base model on the held-out examples")
        run.before = trainer.measure(model, tokenizer, held_examples, held_enc, settings)
    result.resumed_from = trainer.train(run, reporter, resume)
    reporter.phase("measuring the tuned model on the held-out examples")
    after = trainer.measure(model, tokenizer, held_examples, held_enc, settings)
    details.update(_figures(run, after))
    result.manifest = _store(cove, name, base, info, model, settings, details, folder)
    checkpoints.finished()
    return result


def _free() -> int:
    return int(psutil.virtual_memory().available)


def _knowledge_base_exists() -> bool:
    import importlib.util

    return (
        importlib.util.find_spec("cove.cli.kb") is not None
        or importlib.util.find_spec("cove.knowledge.index") is not None
    )


def _measured_plan(
    trainer: Any,
    model: Any,
    tokenizer: Any,
    shape: ModelShape,
    settings: TuneSettings,
    train_enc: list[Any],
    held_enc: list[Any],
) -> Plan:
    """The plan with the real token counts, a warm-up's step time and the peak memory it reached."""
    longest = max(len(e.ids) for e in train_enc)
    plan = make_plan(
        shape,
        settings,
        len(train_enc),
        len(held_enc),
        sum(len(e.ids) for e in train_enc),
        longest,
        _free(),
    )
    widest = sorted(train_enc, key=lambda e: len(e.ids))[-settings.batch_size :]
    plan.step_seconds = trainer.warm_up(model, widest, tokenizer.pad_token_id)
    # The formula for a full batch of the longest sequence, or what the warm-up really reached.
    plan.memory_bytes = max(memory_needed(shape, settings, longest), trainer.peak_memory_bytes())
    return plan


def _details(
    base: Manifest,
    data: training_data.TrainingData,
    settings: TuneSettings,
    train: int,
    held: int,
    truncated: int,
) -> dict[str, Any]:
    return {
        "base": base.name,
        "data": {**data.summary(), "train": train, "held_out": held, "truncated": truncated},
        "settings": settings.to_dict(),
    }


def _figures(run: Any, after: Any) -> dict[str, Any]:
    return {
        "before": run.before.to_dict(),
        "after": after.to_dict(),
        "steps": len(run.losses),
        "final_train_loss": run.losses[-1] if run.losses else None,
        "train_seconds": round(run.seconds, 1),
        "tokens_per_s": round(run.tokens / run.seconds, 1) if run.seconds else None,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _store(
    cove: Any,
    name: str,
    base: Manifest,
    info: GGUFInfo,
    model: Any,
    settings: TuneSettings,
    details: dict[str, Any],
    folder: Path,
) -> Manifest:
    from .train import lora_pairs

    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        path = Path(scratch) / "adapter.gguf"
        write_adapter(path, base_shape(info), settings.alpha, list(lora_pairs(model)), details)
        manifest: Manifest = cove.create_tuned(name, base.name, path, details)
    return manifest
