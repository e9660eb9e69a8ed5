"""Issue 2's figures: `cove run` time to first token, and its tokens/s beside xllamacpp run directly.

    .venv/bin/python benchmarks/cli_speed.py [--model smollm2:135m] [--tokens 128] [--runs 5]

Both sides decode the same prompt greedily to the same length in one process each, interleaved
(cove, direct, cove, direct, ...) so that machine noise falls on both alike.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from common import PROMPT, direct_server, ensure_model, median, stream_figures, timed_stream

from cove.client import Cove

COVE = str(Path(sys.executable).with_name("cove"))


def cove_run(model: str, tokens: int) -> tuple[float, float, int]:
    """`cove run MODEL PROMPT` as a user runs it: wall time to first byte, and bytes' pace."""
    recipe = f"FROM {model}\nPARAMETER num_predict {tokens}\nPARAMETER temperature 0\n"
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/bench.recipe").write_text(recipe)
    subprocess.run(
        [COVE, "--local", "create", "bench-run", "-f", ".bench/bench.recipe"], check=True, capture_output=True
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [COVE, "--local", "run", "bench-run", PROMPT, "--verbose"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        bufsize=0,
    )
    assert proc.stdout is not None
    stamps: list[float] = []
    while chunk := proc.stdout.read(1):
        if not chunk.isspace():
            stamps.append(time.perf_counter())
    stderr = proc.communicate()[1].decode()
    count = re.search(r"(\d+) tokens\b", stderr)
    ttft = stamps[0] - started if stamps else float("nan")
    produced = int(count.group(1)) if count else 0
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return ttft, (produced - 1) / span, produced


def in_process(cove: Cove, model: str, tokens: int) -> tuple[float, float, int]:
    """cove's library path (what `cove run` calls), timed per streamed chunk."""
    options = {"num_predict": tokens, "temperature": 0}
    started = time.perf_counter()
    stamps = []
    for chunk in cove.stream_chat(model, [{"role": "user", "content": PROMPT}], options=options):
        if chunk.content:
            stamps.append(time.perf_counter())
    return stream_figures(started, stamps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2:135m")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cove = Cove()
    path = ensure_model(cove, args.model)
    request, recipe, _ = cove.prepare(args.model)
    direct = direct_server(path, recipe.template, request.spec.num_ctx, 1)
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": args.tokens,
        "temperature": 0,
        "stream": True,
    }
    lib, raw, cli = [], [], []
    for _ in range(args.runs):
        lib.append(in_process(cove, args.model, args.tokens))
        raw.append(timed_stream(lambda cb: direct.handle_chat_completions(dict(body), cb)))
        cli.append(cove_run(args.model, args.tokens))
    report(args, lib, raw, cli)
    cove.close()


def report(args: argparse.Namespace, lib: list, raw: list, cli: list) -> None:
    lib_speed, raw_speed = median([r[1] for r in lib]), median([r[1] for r in raw])
    cli_speed = median([r[1] for r in cli])
    print(f"model {args.model}, {args.tokens} tokens, {args.runs} runs each, median")
    print("| path | time to first token | decode tokens/s | ratio to xllamacpp |")
    print("|---|---|---|---|")
    print(
        f"| xllamacpp direct, in-process | {median([r[0] for r in raw]) * 1000:.0f} ms | "
        f"{raw_speed:.1f} | 1.00 |"
    )
    print(
        f"| cove library (stream_chat) | {median([r[0] for r in lib]) * 1000:.0f} ms | "
        f"{lib_speed:.1f} | {lib_speed / raw_speed:.3f} |"
    )
    print(
        f"| `cove run` (new process, model in store) | {median([r[0] for r in cli]) * 1000:.0f} ms"
        f" | {cli_speed:.1f} | {cli_speed / raw_speed:.3f} |"
    )


if __name__ == "__main__":
    main()
