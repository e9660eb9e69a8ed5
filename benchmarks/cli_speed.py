"""Issue 2's figures: `cove run` time to first token, and its tokens/s beside xllamacpp run directly.

    .venv/bin/python benchmarks/cli_speed.py [--model smollm2:135m] [--tokens 128] [--runs 5]

Each path runs in a process of its own (two engines in one process slow each other down), the
same prompt decoded greedily to the same length, the runs interleaved (direct, library, CLI,
direct, ...) so that machine noise falls on all alike. Decode tokens/s is timed from the first
streamed token to the last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from common import PROMPT, direct_server, ensure_model, median, stream_figures, timed_stream

from cove.config import Settings
from cove.library.local import Cove

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
    count = re.search(r"(\d+) tokens(?!/)", stderr)
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


def one(kind: str, model: str, tokens: int) -> None:
    """Measure one path in a process of its own, after a warm-up answer, and print JSON."""
    cove = Cove(replace(Settings.from_env(), num_parallel=1))
    if kind == "library":
        in_process(cove, model, 8)
        figures = in_process(cove, model, tokens)
    else:
        path = ensure_model(cove, model)
        request, recipe, _ = cove.prepare(model)
        direct = direct_server(path, recipe.template, request.spec.num_ctx, 1)
        body = {
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": tokens,
            "temperature": 0,
            "stream": True,
        }
        timed_stream(lambda cb: direct.handle_chat_completions({**body, "max_tokens": 8}, cb))
        figures = timed_stream(lambda cb: direct.handle_chat_completions(dict(body), cb))
    cove.close()
    print(json.dumps(figures))


def measured(kind: str, model: str, tokens: int) -> tuple[float, float, int]:
    command = [sys.executable, __file__, "--one", kind, "--model", model, "--tokens", str(tokens)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    ttft, speed, count = json.loads(result.stdout.strip().splitlines()[-1])
    return ttft, speed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2:135m")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one", choices=["direct", "library"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.model, args.tokens)
    ensure_model(Cove(), args.model)
    lib, raw, cli = [], [], []
    for _ in range(args.runs):
        raw.append(measured("direct", args.model, args.tokens))
        lib.append(measured("library", args.model, args.tokens))
        cli.append(cove_run(args.model, args.tokens))
    report(args, lib, raw, cli)


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
