"""CI's GGUF fuzz run: 100,000 atheris executions of the validator, bounded in time, in which only
InvalidModelFile may come out (tests/fuzz/fuzz_gguf.py; `make test-fast` leaves it out)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is in the test extra: pip install -e '.[test]'")
pytestmark = pytest.mark.fuzz

HARNESS = Path(__file__).parent / "fuzz" / "fuzz_gguf.py"
RUNS = 100_000
MAX_SECONDS = 90


def stat(output: str, name: str) -> int:
    found = re.search(rf"stat::{name}:\s+(\d+)", output)
    assert found, f"libFuzzer printed no {name}:\n{output[-3000:]}"
    return int(found.group(1))


def test_gguf_validator_survives_100k_fuzzed_files(tmp_path: Path) -> None:
    seeds, corpus = tmp_path / "seeds", tmp_path / "corpus"
    corpus.mkdir()
    written = subprocess.run(
        [sys.executable, str(HARNESS), "--seeds", str(seeds)], capture_output=True, text=True, check=True
    )
    assert "bundled-header" in written.stdout  # the real model's header is among the seeds
    seed = int(os.environ.get("COVE_FUZZ_SEED") or random.randrange(1, 2**31))
    command = [sys.executable, str(HARNESS), str(corpus), str(seeds)]
    command += [f"-runs={RUNS}", f"-max_total_time={MAX_SECONDS}", f"-seed={seed}"]
    # One input over 5 s, or over 2 GB, is a failure too: the check must stay bounded.
    command += ["-print_final_stats=1", f"-artifact_prefix={tmp_path}/", "-rss_limit_mb=2048", "-timeout=5"]
    # Forked by a small shell, not exec'd from here: Linux carries a process's peak RSS across
    # exec, so a harness started straight from this pytest process (GBs after the torch tests)
    # would report pytest's peak as its own and trip -rss_limit_mb at once.
    forked = ["sh", "-c", '"$@"; exit $?', "sh", *command]
    done = subprocess.run(forked, capture_output=True, text=True, timeout=MAX_SECONDS + 120, check=False)
    output = done.stdout + done.stderr
    crashes = sorted(p.name for p in tmp_path.glob("crash-*")) + sorted(
        p.name for p in tmp_path.glob("oom-*")
    )
    again = f"reproduce with COVE_FUZZ_SEED={seed}"
    assert done.returncode == 0 and not crashes, f"{crashes} ({again}):\n{output[-4000:]}"
    runs, per_second = stat(output, "number_of_executed_units"), stat(output, "average_exec_per_sec")
    print(f"GGUF fuzz: {runs} executions, {per_second}/s, seed {seed}")
    assert runs >= RUNS, f"only {runs} executions in {MAX_SECONDS} s ({per_second}/s; {again})"
