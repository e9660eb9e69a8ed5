"""Issue 14's figures: cove → remote cove against the upstream directly, and two replicas
against one.

In one run on this machine: time to first token and decode tokens/s of a streamed answer from
an upstream `cove serve` asked directly, and through a second `cove serve` whose model is a
remote recipe (FROM openai+http://upstream/v1#MODEL), turn about so the machine's load falls on
both alike (targets: ≥ 0.95× decode, ≤ 15 ms added TTFT at p50). Then aggregate tokens/s of 8
concurrent streams through the front to one replica and to two. On a machine of few cores the
two replicas share the same cores, so this shows the routing's overhead, not more compute; the
front's own CPU time per relayed token gives a paper estimate for N machines.

On a loaded machine the engine's speed swings more between runs than the hop costs, so the run
also prices the hop alone: the same front against an instant loopback upstream in a process of
its own (no engine: it writes its answer as fast as it can), so the added time to first token
(of a one-token answer, and of a 200-token burst the front must relay at once) and the time per
relayed token are cove's own. `--hop-only` runs just that part (no model needed).

    .venv/bin/python benchmarks/remote_engine.py [--runs 12] [--tokens 64] [--streams 8]
        [--hop-runs 60] [--hop-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from common import PROMPT, median, openai_stream, percentile
from server_speed import free_port, wait_until_up

from cove.config import Settings
from cove.library.local import Cove

MODEL = "gemma3:270m"
CLIENT = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=32))
COVE = str(Path(sys.executable).with_name("cove"))


def linked(source: Path, target: Path) -> Path:
    def link(src: str, dst: str) -> None:
        try:
            Path(dst).hardlink_to(src)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)
    return target


def env_for(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    return {**env, "COVE_HOME": str(home), "COVE_HOST": f"127.0.0.1:{port}", "COVE_NUM_PARALLEL": "8"}


def serve(home: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [COVE, "serve"], env=env_for(home, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base + "/", proc)
    return base, proc


def stream(base: str, model: str, tokens: int, prompt: str = PROMPT) -> tuple[float, float, int]:
    return openai_stream(CLIENT, base, model, tokens, prompt)


def aggregate(base: str, model: str, tokens: int, streams: int) -> float:
    """Generated tokens per second, `streams` streamed answers in flight at once (each its own
    conversation, so replicas share them)."""

    def one(i: int) -> int:
        return stream(base, model, tokens, f"{i}. {PROMPT}")[2]

    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        produced = sum(pool.map(one, range(streams)))
    return produced / (time.perf_counter() - started)


def instant_app() -> Any:
    """An OpenAI-compatible upstream with no engine: every answer is `max_tokens` tokens (200
    if not given), written as fast as it can."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "instant", "object": "model"}]})

    async def chat(request: Request) -> Response:
        count = int((await request.json()).get("max_tokens") or 200)

        async def tokens() -> Any:
            for i in range(count):
                piece = {"choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}]}
                yield b"data: " + json.dumps(piece).encode() + b"\n\n"
                await asyncio.sleep(0)
            done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            usage = {
                "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": count, "total_tokens": 5 + count},
            }
            yield b"data: " + json.dumps(done).encode() + b"\n\ndata: " + json.dumps(usage).encode()
            yield b"\n\ndata: [DONE]\n\n"

        return StreamingResponse(tokens(), media_type="text/event-stream")

    return Starlette(
        routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])]
    )


def instant_upstream() -> tuple[str, subprocess.Popen[bytes]]:
    """The instant upstream in a process of its own, as every real upstream is (sharing this
    script's process would let the direct path skip a switch of processes the front pays)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--instant-upstream", str(port)])
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base + "/v1/models", proc)
    return base, proc


def relay_cost(instant: str, front: str, runs: int) -> dict[str, float]:
    """Added TTFT (of a one-token answer, and of a 200-token burst) and time per relayed token
    of the front, against the instant upstream, turn about."""
    figures: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(runs):
        for tokens in (1, 200):
            for label, base in (("direct", instant), ("through", front)):
                started = time.perf_counter()
                ttft, _, count = stream(base, "instant", tokens)
                per_token = (time.perf_counter() - started - ttft) / max(count, 1)
                figures.setdefault((label, tokens), []).append((ttft, per_token))
    out = {}
    for (label, tokens), found in figures.items():
        out[f"{label}_ttft{tokens}_ms"] = percentile([f[0] for f in found], 0.5) * 1000
        if tokens > 1:
            out[f"{label}_per_token_ms"] = median([f[1] for f in found]) * 1000
    return out


def main() -> None:
    if sys.argv[1:2] == ["--instant-upstream"]:
        import uvicorn

        uvicorn.run(instant_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--hop-runs", type=int, default=60)
    parser.add_argument("--hop-only", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cove-remote-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        instant, proc_i = instant_upstream()
        procs.append(proc_i)
        recipes = {"instant": [(instant, "instant")]}
        if not args.hop_only:
            base_home = work / "base"
            Cove(Settings(home=base_home)).model(MODEL)  # the bundled model, imported once
            up_a, proc_a = serve(linked(base_home, work / "a"))
            up_b, proc_b = serve(linked(base_home, work / "b"))
            procs += [proc_a, proc_b]
            recipes |= {"far1": [(up_a, MODEL)], "far2": [(up_a, MODEL), (up_b, MODEL)]}
        front_home = work / "front"
        create(work, front_home, recipes)
        front, proc_f = serve(front_home)
        procs.append(proc_f)
        for _ in range(3):
            stream(front, "instant", 4)  # connections, caches warm
        load_before = os.getloadavg()
        hop = relay_cost(instant, front, args.hop_runs)
        report_hop(args, hop, load_before, os.getloadavg())
        if args.hop_only:
            return
        for base, model in ((up_a, MODEL), (up_b, MODEL), (front, "far1"), (front, "far2")):
            stream(base, model, 4)  # loads, connections, caches warm
        load_before = os.getloadavg()
        figures: dict[str, list[tuple[float, float, int]]] = {"direct": [], "through cove": []}
        for _ in range(args.runs):  # turn about: A, B, A, B, ...
            figures["direct"].append(stream(up_a, MODEL, args.tokens))
            figures["through cove"].append(stream(front, "far1", args.tokens))
        rows = {
            name: {
                "ttft_p50_ms": percentile([f[0] for f in found], 0.5) * 1000,
                "decode": median([f[1] for f in found]),
            }
            for name, found in figures.items()
        }
        # Each "through" run against the direct run just before it: the machine's load drifts
        # over a run of minutes, less between two neighbouring answers.
        pairs = zip(figures["direct"], figures["through cove"], strict=True)
        rows["through cove"]["paired_ratio"] = median([t[1] / d[1] for d, t in pairs])
        front_cpu = psutil.Process(proc_f.pid)
        aggregates: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for label, base, model in (
            ("upstream direct", up_a, MODEL),
            ("one replica", front, "far1"),
            ("two replicas", front, "far2"),
        ):
            before = sum(front_cpu.cpu_times()[:2])
            aggregates[label] = aggregate(base, model, args.tokens, args.streams)
            cpu[label] = sum(front_cpu.cpu_times()[:2]) - before
        report(args, rows, aggregates, cpu, load_before, os.getloadavg())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def create(work: Path, home: Path, recipes: dict[str, list[tuple[str, str]]]) -> None:
    """The front's remote models, one recipe each (`cove create`)."""
    for name, ups in recipes.items():
        recipe = work / f"{name}.recipe"
        recipe.write_text("".join(f"FROM openai+{u}/v1#{m}\n" for u, m in ups))
        made = subprocess.run(
            [COVE, "create", name, "-f", str(recipe)], env=env_for(home, 1), capture_output=True, text=True
        )
        if made.returncode:
            raise SystemExit(made.stderr)


def report_hop(
    args: argparse.Namespace,
    hop: dict[str, float],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    print(f"# the hop alone: cove serve in front of an instant upstream ({args.hop_runs} runs, interleaved)")
    print(f"machine: {psutil.cpu_count(logical=False)} cores; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")  # fmt: skip
    for tokens, what in ((1, "a one-token answer"), (200, "a 200-token burst")):
        direct, through = hop[f"direct_ttft{tokens}_ms"], hop[f"through_ttft{tokens}_ms"]
        print(f"  TTFT p50 of {what:18s} {direct:6.1f} ms direct, {through:6.1f} ms through cove "
              f"({through - direct:+.1f} ms; target <= 15)")  # fmt: skip
    print(f"  per relayed token {hop['direct_per_token_ms']:.3f} ms direct, "
          f"{hop['through_per_token_ms']:.3f} ms through")  # fmt: skip


def report(
    args: argparse.Namespace,
    rows: dict[str, dict[str, float]],
    aggregates: dict[str, float],
    cpu: dict[str, float],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    direct, through = rows["direct"], rows["through cove"]
    print(f"# cove → remote cove ({MODEL}, {args.tokens} tokens, {args.runs} runs each, interleaved)")
    print(f"machine: {psutil.cpu_count(logical=False)} cores; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")  # fmt: skip
    for name, row in rows.items():
        print(f"  {name:14s} TTFT p50 {row['ttft_p50_ms']:7.1f} ms   decode {row['decode']:6.1f} tokens/s")
    ratio = through["decode"] / direct["decode"]
    added = through["ttft_p50_ms"] - direct["ttft_p50_ms"]
    print(f"  decode ratio {ratio:.3f}x of the medians, {through['paired_ratio']:.3f}x the median of each "
          f"pair's (target >= 0.95)   added TTFT p50 {added:+.1f} ms (target <= 15)")  # fmt: skip
    print(f"# aggregate, {args.streams} concurrent streams")
    for label, value in aggregates.items():
        print(f"  {label:16s} {value:7.1f} tokens/s   front CPU {cpu[label]:.2f} s")
    seconds = cpu["two replicas"]
    # Paper estimate: each upstream machine gives what one gives here; the front relays tokens
    # at its own CPU cost per token, measured above.
    one_machine = aggregates["upstream direct"]
    produced = args.streams * args.tokens
    per_token_ms = seconds / produced * 1000 if produced else float("nan")
    front_limit = 1000 / per_token_ms if per_token_ms > 0 else float("inf")
    print(f"# paper estimate for N upstream machines (one front core relays ~{front_limit:,.0f} tokens/s,"
          f" {per_token_ms:.3f} ms CPU per token)")  # fmt: skip
    for n in (1, 2, 4, 8, 16):
        print(f"  N={n:2d}: about {min(n * one_machine, front_limit):8.0f} tokens/s aggregate")


if __name__ == "__main__":
    main()
