"""`cove bench`: its measurements over a scripted engine, and the command on the real bundled model."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cove.cli.bench import measure
from cove.cli.main import cli
from cove.engine.base import ChunkCallback, LoadSpec
from cove.engine.bench import BenchPlan, earlier_runs, prompt_of, record, run_bench
from cove.library.local import Cove


class ScriptedModel:
    """Reads prompts at 1,000 tokens/s and writes 100 tokens/s per stream (sleeping, so parallel
    streams overlap), reporting llama.cpp-shaped timings; records the bodies it was sent."""

    alive = True

    def __init__(self, spec: LoadSpec | None = None) -> None:
        self.spec = spec
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.closed = False

    def tokenize(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def complete(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        with self.lock:
            self.bodies.append(body)
        prompt = body["prompt"] if isinstance(body["prompt"], list) else [0]
        time.sleep(len(prompt) / 1000)
        for _ in range(body["max_tokens"]):
            # Long enough a token that thread start-up on a loaded machine stays small beside it.
            time.sleep(0.01)
            if on_chunk:
                on_chunk({"choices": [{"text": "x"}]})
        return {
            "timings": {
                "prompt_n": len(prompt),
                "prompt_per_second": 1000.0,
                "predicted_n": body["max_tokens"],
                "predicted_per_second": 100.0,
            }
        }

    def close(self) -> None:
        self.closed = True


def test_prompts_are_the_asked_number_of_tokens() -> None:
    model = ScriptedModel()
    assert len(prompt_of(model, 300)) == 300  # type: ignore[arg-type]
    assert prompt_of(model, 0) == []  # type: ignore[arg-type]


def test_the_plan_gives_llama_bench_rows_from_the_engine_timings() -> None:
    model = ScriptedModel()
    plan = BenchPlan(prompts=(64, 200), generate=8, depths=(0, 100), streams=(1, 4), repetitions=2)
    rows = run_bench(model, plan)  # type: ignore[arg-type]
    assert [r.test for r in rows] == ["pp64", "pp200", "tg8", "tg8 @ d100", "tg8 x1", "tg8 x4"]
    assert rows[0].tokens_per_second == 1000.0 and len(rows[0].runs) == 2
    assert rows[2].tokens_per_second == 100.0
    # The time to the first token grows with the prompt read first.
    assert rows[3].ttft_ms is not None and rows[2].ttft_ms is not None and rows[3].ttft_ms > rows[2].ttft_ms
    # Four streams at once write more tokens a second in all than one (they overlap; ideal is 4x).
    assert rows[5].tokens_per_second > 1.5 * rows[4].tokens_per_second
    # Generation tests write every token: the model's end of text must not cut a test short.
    assert all(b["ignore_eos"] and b["temperature"] == 0 and b["stream"] for b in model.bodies)
    depth_prompts = [b["prompt"] for b in model.bodies if b["max_tokens"] == 8]
    assert any(isinstance(p, list) and len(p) == 100 for p in depth_prompts)


def test_measure_loads_with_room_for_the_plan_and_closes(fake_cove: Cove) -> None:
    made: list[ScriptedModel] = []

    def factory(spec: LoadSpec) -> ScriptedModel:
        made.append(ScriptedModel(spec))
        return made[-1]

    plan = BenchPlan(prompts=(32,), generate=4, depths=(600,), streams=(1, 8), repetitions=1)
    entry = measure(fake_cove, "tiny", plan, factory)  # type: ignore[arg-type]
    spec = made[0].spec
    assert spec is not None and spec.num_parallel == 8 and spec.num_ctx >= 604
    assert made[0].closed
    assert entry["model"] == "tiny:latest" and [r["test"] for r in entry["rows"]][-1] == "tg4 x8"


def test_runs_are_kept_one_a_line_and_read_back_by_model(tmp_path: Path) -> None:
    record(tmp_path, {"model": "a:latest", "rows": []})
    (tmp_path / "bench.jsonl").open("a").write("not json\n")
    record(tmp_path, {"model": "b:latest", "rows": []})
    record(tmp_path, {"model": "a:latest", "rows": [1]})
    assert [r["rows"] for r in earlier_runs(tmp_path, "a:latest")] == [[], [1]]


def test_bad_lists_are_refused(cove_home: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "tiny", "--prompts", "12,x"])
    assert result.exit_code == 2 and "comma-separated list of whole numbers" in result.output


@pytest.mark.model
def test_bench_the_bundled_model(real_home: Path) -> None:
    args = ["bench", "gemma3:270m", "-p", "32", "-n", "8", "-d", "0,64", "-s", "1,2", "-r", "1", "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output)
    tests = {r["test"]: r for r in entry["rows"]}
    assert list(tests) == ["pp32", "tg8", "tg8 @ d64", "tg8 x1", "tg8 x2"]
    assert all(r["tokens_per_second"] > 0 for r in entry["rows"])
    assert tests["tg8"]["ttft_ms"] > 0
    assert entry["machine"]["logical_cores"] >= 1
    kept = earlier_runs(real_home, "gemma3:270m")
    assert len(kept) == 1 and kept[0]["rows"] == entry["rows"]
    table = CliRunner().invoke(cli, args[:-1], catch_exceptions=False)
    assert "tg8 @ d64" in table.output and "1 earlier run(s)" in table.output
