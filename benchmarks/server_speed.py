"""Issue 3's figures: `cove serve` against the engine in-process, and llama-cpp-python's server.

    .venv/bin/python benchmarks/server_speed.py [--model gemma3:270m] [--tokens 128] [--runs 7]
        [--no-peer]

Single stream: decode tokens/s and time to first token through /v1/chat/completions streaming,
beside the same request handed straight to xllamacpp in this process, turn about: `cove serve`
twice, with each model in its own engine process (its default) and with the engine in its own
process (COVE_ENGINE=in-process), which prices the isolation. Then aggregate tokens/s at 1, 2, 4
and 8 concurrent streams for each. llama-cpp-python (the peer a Python user would pick)
is installed into .bench/llama-cpp-python on first use; it compiles for several minutes.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from common import (
    PROMPT,
    direct_server,
    ensure_model,
    median,
    openai_stream,
    percentile,
    timed_stream,
)

from cove.library.local import Cove

PEER_VENV = Path(".bench/llama-cpp-python")
LEVELS = (1, 2, 4, 8)
#: The two ways cove serve can run a model (COVE_ENGINE): its default, and the engine in its own process.
COVE_SERVERS = {
    "cove serve /v1 (engine processes)": "process",
    "cove serve /v1 (engine in-process)": "in-process",
}
# One client kept open, as the openai SDK keeps one: a new httpx client per request would add its
# own set-up (an SSL context, a connection) to every time to first token measured here.
CLIENT = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=16))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not come up")


def http_stream(base: str, model: str, tokens: int) -> tuple[float, float, int]:
    return openai_stream(CLIENT, base, model, tokens)


def http_once(base: str, model: str, tokens: int, i: int) -> int:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"{i}. {PROMPT}"}],
        "max_tokens": tokens,
        "temperature": 0,
    }
    response = CLIENT.post(f"{base}/v1/chat/completions", json=body)
    return int(response.json()["usage"]["completion_tokens"])


def direct_once(server: Any, tokens: int, i: int) -> int:
    body = {
        "messages": [{"role": "user", "content": f"{i}. {PROMPT}"}],
        "max_tokens": tokens,
        "temperature": 0,
    }
    return int(server.handle_chat_completions(body)["usage"]["completion_tokens"])


def aggregate(run_one: Any, level: int) -> float:
    """Total generated tokens per second with `level` requests in flight at once."""
    started = time.perf_counter()
    with ThreadPoolExecutor(level) as pool:
        produced = sum(pool.map(run_one, range(level)))
    return produced / (time.perf_counter() - started)


def singles(streams: dict[str, Any], runs: int) -> list[dict[str, Any]]:
    """Each stream `runs` times, turn about (A, B, C, A, B, C, ...), so load on this shared
    machine falls on all of them alike."""
    figures: dict[str, list[tuple[float, float, int]]] = {name: [] for name in streams}
    for _ in range(runs):
        for name, stream in streams.items():
            figures[name].append(stream())
    return [
        {
            "name": name,
            "ttft_p50": percentile([f[0] for f in found], 0.5),
            "speed": median([f[1] for f in found]),
        }
        for name, found in figures.items()
    ]


def start_cove(model: str, engine: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, "COVE_HOST": f"127.0.0.1:{port}", "COVE_NUM_PARALLEL": "8", "COVE_ENGINE": engine}
    cove = str(Path(sys.executable).with_name("cove"))
    proc = subprocess.Popen([cove, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base + "/", proc)
    httpx.post(f"{base}/api/generate", json={"model": model, "keep_alive": -1}, timeout=300)
    return base, proc


def start_peer(path: Path) -> tuple[str, subprocess.Popen[bytes]]:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print("installing llama-cpp-python[server] (compiles, several minutes)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin/pip"), "install", "-q", "llama-cpp-python[server]"], check=True)
    port = free_port()
    command = [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(path),
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--chat_format",
        "gemma",
        "--n_threads",
        str(os.cpu_count() or 2),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base + "/v1/models", proc)
    return base, proc


def measure_cove(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The engine in this process and `cove serve`, measured turn about on the same model."""
    cove = Cove()
    path = ensure_model(cove, args.model)
    request, recipe, _ = cove.prepare(args.model)
    cove.close()
    direct = direct_server(path, recipe.template, request.spec.num_ctx, 8)
    # cove serve's default (each model in its own engine process) and the engine in its process.
    servers = {name: start_cove(args.model, engine) for name, engine in COVE_SERVERS.items()}
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": args.tokens,
        "temperature": 0,
        "stream": True,
    }
    streams: dict[str, Any] = {
        "xllamacpp in-process": lambda: timed_stream(
            lambda cb: direct.handle_chat_completions(dict(body), cb)
        )
    }
    for name, (base, _) in servers.items():
        streams[name] = partial(http_stream, base, args.model, args.tokens)
    try:
        rows = singles(streams, args.runs)
        for level in LEVELS:
            rows[0][f"agg{level}"] = aggregate(lambda i: direct_once(direct, args.tokens, i), level)
            for row, (base, _) in zip(rows[1:], servers.values(), strict=True):
                row[f"agg{level}"] = aggregate(
                    lambda i, b=base: http_once(b, args.model, args.tokens, i), level
                )
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.wait()
    return rows


def measure_peer(args: argparse.Namespace) -> dict[str, Any]:
    path = ensure_model(Cove(), args.model)
    base, peer = start_peer(path)
    try:
        (row,) = singles(
            {"llama-cpp-python server": lambda: http_stream(base, args.model, args.tokens)}, args.runs
        )
        for level in LEVELS:
            row[f"agg{level}"] = aggregate(lambda i: http_once(base, args.model, args.tokens, i), level)
    finally:
        peer.terminate()
        peer.wait()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma3:270m")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    rows = measure_cove(args)
    if not args.no_peer:
        rows.append(measure_peer(args))
    report(rows, args)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    base = rows[0]
    print(
        f"model {args.model}, {args.tokens} tokens per answer, {args.runs} single-stream runs, "
        f"{os.cpu_count()} cores"
    )
    print("| server | TTFT p50 | decode tok/s | vs engine | agg 1 | agg 2 | agg 4 | agg 8 | 8 vs 1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['ttft_p50'] * 1000:.1f} ms | {r['speed']:.1f} | "
            f"{r['speed'] / base['speed']:.3f} | "
            + " | ".join(f"{r[f'agg{n}']:.1f}" for n in LEVELS)
            + f" | {r['agg8'] / r['agg1']:.2f}x |"
        )
    print()
    for row in rows[1:]:
        added = (row["ttft_p50"] - base["ttft_p50"]) * 1000
        print(f"{row['name']} adds {added:.1f} ms to time to first token at p50")


if __name__ == "__main__":
    main()
