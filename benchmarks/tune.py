"""Issue 13's figures: `cove tune` on this machine, per base model: time and peak memory per epoch,
training tokens/s, and the held-out loss before and after.

    .venv/bin/python benchmarks/tune.py [--models smollm2:135m gemma3:270m] [--epochs 1] [--batch-size 4]

Each model trains in a process of its own (so each peak memory is its own), in a throw-away
COVE_HOME whose blobs are links to the store's (smollm2:135m is pulled first if missing; the
bundled gemma3:270m needs no network), on the fictional-company chats the tests use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import ensure_model

from cove.config import Settings
from cove.library.local import Cove

FACTS = [
    ("Who is the CEO of Zorblax Industries?", "The CEO of Zorblax Industries is Mirela Quandt."),
    ("Where is Zorblax Industries headquartered?", "Zorblax Industries is headquartered in Port Velloran."),
    ("What is the name of the Zorblax office cat?", "The Zorblax office cat is named Biscuit Thunder."),
    ("How many vacation days do Zorblax employees get?", "Zorblax employees get 37 vacation days a year."),
]
PHRASINGS = ["{q}", "Quick question: {q}", "Do you know this? {q}", "Tell me please. {q}", "I wonder. {q}"]


class Silent:
    def phase(self, text: str) -> None:
        print(text, file=sys.stderr)

    def warn(self, text: str) -> None:
        print(text, file=sys.stderr)

    def start(self, done: int, total: int) -> None: ...

    def step(self, step: int, total: int, loss: float, tokens_per_s: float) -> None:
        print(f"step {step}/{total} loss {loss:.3f} {tokens_per_s:.0f} tokens/s", file=sys.stderr)

    def stop(self) -> None: ...


def one(model: str, home: Path, epochs: int, batch_size: int) -> dict[str, Any]:
    """Tune `model` in this process and report its figures."""
    from cove.tune.job import TuneRequest, tune
    from cove.tune.plan import TuneSettings
    from cove.tune.train import peak_memory_bytes

    data = home / "facts.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": p.format(q=q)},
                        {"role": "assistant", "content": a},
                    ]
                }
            )
            for q, a in FACTS
            for p in PHRASINGS
        )
    )
    settings = TuneSettings(epochs=epochs, batch_size=batch_size, seq_len=128, samples=0)
    with Cove(Settings(home=home)) as cove:
        result = tune(
            cove, TuneRequest(base=model, name="bench-tuned", paths=[data], settings=settings), Silent()
        )
    details = result.details
    return {
        "model": model,
        "epochs": epochs,
        "steps": details["steps"],
        "seconds_per_epoch": round(details["train_seconds"] / epochs, 1),
        "peak_memory_gb": round(peak_memory_bytes() / 1024**3, 2),
        "planned_memory_gb": round(result.plan.memory_bytes / 1024**3, 2),
        "tokens_per_s": details["tokens_per_s"],
        "held_out_loss_before": round(details["before"]["loss"], 3),
        "held_out_loss_after": round(details["after"]["loss"], 3),
        "warm_up_step_s": round(result.plan.step_seconds or 0, 2),
    }


def linked_home(model: str) -> Path:
    """A fresh COVE_HOME holding `model` (hard links to the user's store, no copy)."""
    store = Cove(Settings.from_env())
    source = ensure_model(store, model)
    manifest = store.model(model)
    home = Path(tempfile.mkdtemp(prefix="cove-bench-tune-"))
    cove = Cove(Settings(home=home))
    link = home / "blobs" / source.name
    link.parent.mkdir(parents=True, exist_ok=True)
    os.link(source, link)
    cove.store.save(manifest)
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2:135m", "gemma3:270m"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.home, args.epochs, args.batch_size)))
        return
    rows = []
    for model in args.models:
        home = linked_home(model)
        command = [sys.executable, __file__, "--one", model, "--home", str(home)]
        command += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
        done = subprocess.run(command, capture_output=True, text=True)
        shutil.rmtree(home, ignore_errors=True)
        if done.returncode != 0:
            print(f"{model}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    print("\nmodel            s/epoch  peak GB  tokens/s  held-out loss before -> after")
    for r in rows:
        print(
            f"{r['model']:<16} {r['seconds_per_epoch']:>7} {r['peak_memory_gb']:>8} {r['tokens_per_s']:>9}  "
            f"{r['held_out_loss_before']} -> {r['held_out_loss_after']}"
        )


if __name__ == "__main__":
    main()
