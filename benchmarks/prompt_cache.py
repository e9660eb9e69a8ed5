"""The prompt cache across turns: time to first token as a stored conversation grows (issue 12).

    .venv/bin/python benchmarks/prompt_cache.py [--model gemma3:270m] [--turns 10] [--words 230]
        [--num-ctx 4096] [--engine process|in-process] [--json]

Starts a real `cove serve` on a private port (the store in COVE_HOME, default engine processes)
and holds one conversation through /v1/chat/completions with `conversation_id`: each turn sends
only its new user message (a different paragraph, about 300 tokens) and the server adds the
stored turns before it, so by turn 10 the prompt is about 3,500 tokens. Streamed, so the time to
the first token is the client's own clock; `cached_tokens` is what the engine says it reused.
When the cache is reused, turn 10 reads only its new message and its time to first token stays
near turn 1's (the target: at most 1.2x); when something before it changes each turn (a system
prompt, a summary), the engine reads the whole conversation again and it grows with the turns.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from common import ensure_model
from server_speed import free_port, wait_until_up

from cove.config import Settings
from cove.library.local import Cove

TOPICS = (
    "lighthouses", "bees", "glaciers", "bridges", "violins", "tides", "libraries", "volcanoes",
    "trains", "orchards", "comets", "deserts",
)  # fmt: skip


def paragraph(topic: str, words: int) -> str:
    """A turn's message: a different subject each turn, about `words` words long."""
    sentence = (
        f"Here are some notes about {topic} that I wrote down while reading an old book, "
        f"and I would like you to keep them in mind for later questions about {topic}. "
    )
    text = ""
    while len(text.split()) < words:
        text += sentence
    return text + f"In one short sentence: what is the most surprising thing about {topic}?"


def turn(client: httpx.Client, base: str, body: dict[str, Any]) -> tuple[float, dict[str, Any], str | None]:
    """(seconds to the first content, the final usage, the conversation id) of one streamed turn."""
    started = time.perf_counter()
    first: float | None = None
    usage: dict[str, Any] = {}
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        conversation = reply.headers.get("x-cove-conversation")
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(
                (c.get("delta") or {}).get("content") for c in chunk.get("choices") or []
            ):
                first = time.perf_counter() - started
            usage = chunk.get("usage") or usage
    return first if first is not None else float("nan"), usage, conversation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3:270m")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--words", type=int, default=230)
    parser.add_argument("--num-ctx", type=int, default=4096)
    parser.add_argument("--answer-tokens", type=int, default=24)
    parser.add_argument("--engine", default="process", choices=("process", "in-process"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    ensure_model(Cove(settings), args.model)
    port = free_port()
    env = {**os.environ, "COVE_HOST": f"127.0.0.1:{port}", "COVE_ENGINE": args.engine}
    cove = Path(sys.executable).with_name("cove")
    # The server's log goes to a file: a pipe nobody reads would fill and stall it.
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / "cove-prompt-cache.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([str(cove), "serve"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        wait_until_up(f"{base}/api/version", server)
        with httpx.Client(timeout=600) as client:
            # Load the model first (a plain request, no conversation): turn 1 must not pay the load.
            warm = {"model": args.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
            client.post(
                f"{base}/v1/chat/completions", json={**warm, "num_ctx": args.num_ctx}
            ).raise_for_status()
            conversation = "new"
            for number in range(1, args.turns + 1):
                body = {
                    "model": args.model,
                    "conversation_id": conversation,
                    "messages": [
                        {"role": "user", "content": paragraph(TOPICS[(number - 1) % 12], args.words)}
                    ],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "max_tokens": args.answer_tokens,
                    "temperature": 0,
                    "num_ctx": args.num_ctx,
                }
                ttft, usage, given = turn(client, base, body)
                conversation = given or conversation
                cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                rows.append(
                    {
                        "turn": number,
                        "ttft_s": round(ttft, 3),
                        "prompt_tokens": usage.get("prompt_tokens"),
                        "cached_tokens": cached,
                        "load_avg": round(os.getloadavg()[0], 2),
                    }
                )
                if not args.json:
                    print(rows[-1], flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    ratio = rows[-1]["ttft_s"] / rows[0]["ttft_s"] if rows and rows[0]["ttft_s"] else float("nan")
    if args.json:
        print(
            json.dumps({"num_ctx": args.num_ctx, "turns": rows, "last_over_first": round(ratio, 2)}, indent=2)
        )
    else:
        print(f"turn {rows[-1]['turn']} time to first token = {ratio:.2f}x turn 1's (target <= 1.2x)")


if __name__ == "__main__":
    main()
