"""Load-and-fault soak: a real `cove serve` under mixed traffic while faults are injected (issue #9).

    .venv/bin/python benchmarks/soak.py [--minutes 3] [--workers 6] [--model gemma3:270m]
        [--kill-every 20] [--seed 1]

Starts `cove serve` with each model in its own engine process (COVE_ENGINE=process) in a fresh
home holding the bundled model, and adds two hostile models over the API: a copy of the GGUF with
`context_length = 0` (uploaded through /api/blobs and /api/create; its engine aborts on the first
request) and a template bomb (a TEMPLATE whose costly branch the word "boom" sets off). Then for
`--minutes`, `--workers` clients run, each picking at random: streamed and whole chats on both
APIs, stored conversations, embeddings, clients that leave mid-answer, requests to the hostile
models, and bad bodies; meanwhile a random engine process is killed with SIGKILL every
`--kill-every` seconds. At the end it reports requests served, faults injected, errors by kind,
and anything lost: a request that got neither an answer nor a clear error, a hang, the server
dying, or a stored conversation missing turns that were answered.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from server_speed import free_port, wait_until_up

from cove.config import Settings
from cove.library.local import Cove
from cove.templates import GEMMA_TEMPLATE

#: A client that waits longer than this for an answer counts it as a hang.
HANG_S = 120.0
BOMB = (
    "{%- for m in messages -%}{%- if m['content'] == 'boom' -%}"
    "{%- for i in range(3000000) -%}{{ 'x' }}{%- endfor -%}{%- endif -%}{%- endfor -%}\n" + GEMMA_TEMPLATE
)
BAD_BODIES: list[bytes] = [
    b"{",
    b"[]",
    b'{"model": 7}',
    b'{"model": "gemma3:270m", "messages": "hi"}',
    b'{"model": "gemma3:270m", "messages": [{"role": "user", "content": "x"}], "options": {"top_k": 1e400}}',
    b'{"model": "gemma3:270m", "messages": [], "keep_alive": "nanm"}',
    b'{"model": "gemma3:270m", "messages": [{"role": "user", "content": "x"}], "tools": [{"role": "user"}]}',
    b'{"model": "gemma3:270m", "prompt": ' + b"9" * 5000 + b"}",
    b'{"model": "../../etc/passwd", "messages": []}',
    b"\xff\xfe not json",
]


@dataclass
class Tally:
    """What happened, shared by every client thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, ok|error|lost)
    unexpected: list[str] = field(default_factory=list)  # clear errors that are cove's own faults
    errors: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    answered_turns: dict[str, int] = field(default_factory=dict)  # conversation id -> answered turns

    def record(self, action: str, outcome: str, detail: str = "") -> None:
        with self.lock:
            self.outcomes[(action, outcome)] += 1
            if outcome == "error":
                self.errors[f"{action}: {detail}"[:220]] += 1
                if "internal error" in detail:  # an exception cove did not map: a bug, if not a loss
                    self.unexpected.append(f"{action}: {detail}"[:300])
            elif outcome == "lost":
                self.lost.append(f"{action}: {detail}"[:300])

    def fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] += 1


class Lost(Exception):
    """A request that got neither an answer nor a clear error."""


def clear_error(response: httpx.Response) -> str:
    """The error's message when the server said what went wrong in JSON, else raise Lost."""
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str) or not message.strip():
        raise Lost(f"{response.status_code} without a clear error: {response.text[:120]!r}")
    return f"{response.status_code} {_kind(message)}"


def _kind(message: str) -> str:
    """The message without what changes from one request to the next (numbers, long details)."""
    words = re.sub(r"\d+(\.\d+)?", "N", message).split()
    return " ".join(words[:24])


# -- the actions a client picks from ----------------------------------------------------------


def chat_body(model: str, text: str, tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "options": {"num_predict": tokens, "temperature": 0.7},
        **extra,
    }


def openai_body(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 12, "messages": [{"role": "user", "content": text}]}


def ollama_stream(http: httpx.Client, body: dict[str, Any], leave_after: int | None = None) -> str:
    """One streamed /api/chat; "ok" at its done line, the error it ended with, or Lost."""
    with http.stream("POST", "/api/chat", json=body) as response:
        if response.status_code != 200:
            response.read()
            return clear_error(response)
        seen = 0
        for line in response.iter_lines():
            if not line.strip():
                continue
            part = json.loads(line)
            if "error" in part:
                return f"stream {_kind(str(part['error']))}"
            if part.get("done"):
                return "ok"
            seen += 1
            if leave_after is not None and seen >= leave_after:
                return "left"  # closing the stream here is the client hanging up
    raise Lost("a stream ended with neither its done line nor an error")


def openai_stream(http: httpx.Client, model: str, text: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            return clear_error(response)
        for line in response.iter_lines():
            if line == "data: [DONE]":
                return "ok"
            if line.startswith("data: ") and '"error"' in line[:20]:
                return f"stream {_kind(str(json.loads(line[6:])['error']))}"
    raise Lost("an OpenAI stream ended without [DONE] or an error")


def whole(http: httpx.Client, path: str, body: dict[str, Any]) -> str:
    response = http.post(path, json=body)
    return "ok" if response.status_code == 200 else clear_error(response)


def conversation_turn(http: httpx.Client, tally: Tally, model: str, rng: random.Random) -> str:
    with tally.lock:
        known = list(tally.answered_turns)
    cid = rng.choice(known) if known and rng.random() < 0.6 else "new"
    body = chat_body(
        model, f"tell me about the number {rng.randint(1, 999)}", 12, stream=False, conversation_id=cid
    )
    response = http.post("/api/chat", json=body)
    if response.status_code != 200:
        return clear_error(response)
    cid = response.headers.get("x-cove-conversation", cid)
    with tally.lock:
        tally.answered_turns[cid] = tally.answered_turns.get(cid, 0) + 1
    return "ok"


def leave_whole(url: str, model: str) -> str:
    """A whole answer the client gives up on after half a second."""
    body = chat_body(model, "write a long story about the sea", 300, stream=False)
    try:
        httpx.post(f"{url}/api/chat", json=body, timeout=0.5)
    except httpx.TimeoutException:
        return "left"
    return "ok"


def leave_embedding(url: str, model: str) -> str:
    inputs = [f"line {i} of a long document" for i in range(2000)]
    try:
        httpx.post(f"{url}/api/embed", json={"model": model, "input": inputs}, timeout=0.7)
    except httpx.TimeoutException:
        return "left"
    return "ok"


def bad_body(http: httpx.Client, rng: random.Random) -> str:
    path = rng.choice(["/api/chat", "/api/generate", "/v1/chat/completions", "/api/embed", "/api/create"])
    response = http.post(path, content=rng.choice(BAD_BODIES), headers={"Content-Type": "application/json"})
    if response.status_code >= 500:
        raise Lost(f"a bad body to {path} answered {response.status_code}: {response.text[:120]!r}")
    return "ok" if response.status_code < 300 else f"refused {response.status_code}"


def actions(url: str, http: httpx.Client, tally: Tally, model: str, rng: random.Random) -> dict[str, Any]:
    """Each action's weight and call; a call returns "ok", "left", or an error's kind."""
    text = lambda: f"say something about {rng.choice(['cats', 'rain', 'tea', 'maps', 'bees'])}"  # noqa: E731
    return {
        "stream /api/chat": (5, lambda: ollama_stream(http, chat_body(model, text(), 16))),
        "stream /v1": (3, lambda: openai_stream(http, model, text())),
        "whole /v1": (3, lambda: whole(http, "/v1/chat/completions", openai_body(model, text()))),
        "conversation": (3, lambda: conversation_turn(http, tally, model, rng)),
        "embed": (
            3,
            lambda: whole(http, "/api/embed", {"model": model, "input": [text()] * rng.randint(1, 20)}),
        ),
        "leave stream": (
            2,
            lambda: ollama_stream(http, chat_body(model, "write a long poem", 300), leave_after=2),
        ),
        "leave whole": (1, lambda: leave_whole(url, model)),
        "leave embed": (1, lambda: leave_embedding(url, model)),
        "hostile model": (
            1,
            lambda: whole(http, "/api/chat", chat_body("no-context", "hi", 4, stream=False)),
        ),
        "template bomb": (
            1,
            lambda: whole(http, "/api/chat", {**chat_body("bomb", "boom", 4), "stream": False}),
        ),
        "bad body": (2, lambda: bad_body(http, rng)),
    }


FAULTS = {"leave stream", "leave whole", "leave embed", "hostile model", "template bomb", "bad body"}


def client(url: str, model: str, tally: Tally, until: float, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=httpx.Timeout(HANG_S, connect=10)) as http:
        menu = actions(url, http, tally, model, rng)
        names = list(menu)
        weights = [menu[n][0] for n in names]
        while time.monotonic() < until:
            name = rng.choices(names, weights)[0]
            run_one(name, menu[name][1], tally)


def run_one(name: str, call: Callable[[], str], tally: Tally) -> None:
    if name in FAULTS:
        tally.fault(name)
    try:
        result = call()
    except Lost as exc:
        tally.record(name, "lost", str(exc))
        return
    except httpx.TimeoutException:
        tally.record(name, "lost", f"no answer within {HANG_S:g} s (a hang)")
        return
    except httpx.HTTPError as exc:
        tally.record(name, "lost", f"{type(exc).__name__}: {exc}")
        return
    tally.record(name, "ok" if result in ("ok", "left") or result.startswith("refused") else "error", result)


# -- the server, the hostile models, and the killer -------------------------------------------


def start_server(home: Path) -> tuple[str, subprocess.Popen[bytes], Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    env.update(
        COVE_HOME=str(home), COVE_HOST=f"127.0.0.1:{port}", COVE_ENGINE="process", COVE_NUM_PARALLEL="4"
    )
    log = home / "serve.log"
    cove = str(Path(sys.executable).with_name("cove"))
    with log.open("wb") as out:
        proc = subprocess.Popen([cove, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/", proc)
    return url, proc, log


def patched_gguf(source: Path, key: str, value: int) -> bytes:
    """The model's bytes with one uint32 metadata value changed: valid, but llama.cpp asserts on it."""
    data = bytearray(source.read_bytes())
    name = key.encode()
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    assert struct.unpack("<I", data[at : at + 4])[0] == 4, f"{key} is not a uint32"
    data[at + 4 : at + 8] = struct.pack("<I", value)
    return bytes(data)


def add_hostile_models(url: str, source: Path, arch: str, model: str) -> None:
    """`no-context` (its engine aborts on the first request) and `bomb` (a template bomb)."""
    blob = patched_gguf(source, f"{arch}.context_length", 0)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with httpx.Client(base_url=url, timeout=600) as http:
        http.post(f"/api/blobs/{digest}", content=blob).raise_for_status()
        made = http.post(
            "/api/create", json={"model": "no-context", "files": {"m.gguf": digest}, "stream": False}
        )
        assert made.status_code == 200, made.text
        bomb = http.post(
            "/api/create", json={"model": "bomb", "from": model, "template": BOMB, "stream": False}
        )
        assert bomb.status_code == 200, bomb.text


def engine_children(server: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in server.children(recursive=True):
        try:
            if "cove.engine.child" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def killer(server: psutil.Process, tally: Tally, until: float, every_s: float, rng: random.Random) -> None:
    while time.monotonic() + every_s < until:
        time.sleep(every_s * rng.uniform(0.5, 1.5))
        children = engine_children(server)
        if children:
            victim = rng.choice(children)
            try:
                victim.send_signal(signal.SIGKILL)
                tally.fault("kill -9 of an engine process")
            except psutil.Error:
                continue


# -- the end: what was lost -------------------------------------------------------------------


def check_history(url: str, tally: Tally) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        for cid, answered in tally.answered_turns.items():
            response = http.get(f"/api/cove/conversations/{cid}")
            if response.status_code != 200:
                tally.record("history", "lost", f"conversation {cid} answered {response.status_code}")
                continue
            kept = [m for m in response.json()["messages"] if m.get("role") == "assistant"]
            if len(kept) < answered:
                tally.record("history", "lost", f"conversation {cid}: {answered} answers, {len(kept)} stored")
            else:
                tally.record("history", "ok")


def report(tally: Tally, minutes: float, alive: bool, rss: float, log: Path) -> None:
    served = sum(n for (_, outcome), n in tally.outcomes.items() if outcome == "ok")
    print(f"\nsoak: {minutes:g} min, server {'alive' if alive else 'DEAD'} at the end, RSS {rss:.0f} MB")
    print(
        f"requests answered as expected: {served}, with a clear error: {sum(tally.errors.values())}, "
        f"lost: {len(tally.lost)}"
    )
    print("\nby action (ok / clear error / lost):")
    for action in sorted({a for a, _ in tally.outcomes}):
        counts = [tally.outcomes[(action, o)] for o in ("ok", "error", "lost")]
        print(f"  {action:<18} {counts[0]:>6} {counts[1]:>6} {counts[2]:>6}")
    print("\nfaults injected:")
    for kind, n in sorted(tally.faults.items()):
        print(f"  {kind:<30} {n:>6}")
    print("\nerrors by kind:")
    for kind, n in tally.errors.most_common(20):
        print(f"  {n:>5}  {kind}")
    print("\nunexpected (500 internal error):" + ("" if tally.unexpected else " none"))
    for item in tally.unexpected[:10]:
        print(f"  {item}")
    print("\nlost:" + ("" if tally.lost else " nothing"))
    for item in tally.lost[:20]:
        print(f"  {item}")
    if not alive:
        print("\nserver log tail:\n" + log.read_text(errors="replace")[-3000:])
    kept = Path(tempfile.gettempdir()) / f"cove-soak-{os.getpid()}.log"
    shutil.copyfile(log, kept)
    print(f"\nthe server's log: {kept}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--model", default="gemma3:270m")
    parser.add_argument("--kill-every", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cove-soak-"))
    try:
        run(args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace, home: Path) -> None:
    with Cove(Settings(home=home)) as cove:  # the bundled model imports here, with no network
        manifest = cove.model(args.model)
        source, arch = cove.store.model_path(manifest), str(manifest.info.get("architecture") or "gemma3")
    url, proc, log = start_server(home)
    server = psutil.Process(proc.pid)
    tally = Tally()
    try:
        add_hostile_models(url, source, arch, args.model)
        httpx.post(f"{url}/api/chat", json=chat_body(args.model, "hi", 1, stream=False), timeout=300)
        print(
            f"soak: {args.minutes:g} min, {args.workers} clients, "
            f"a kill -9 every ~{args.kill_every:g} s, on {url}"
        )
        until = time.monotonic() + args.minutes * 60
        rng = random.Random(args.seed)
        threads = [
            threading.Thread(target=client, args=(url, args.model, tally, until, args.seed + i))
            for i in range(args.workers)
        ]
        threads.append(threading.Thread(target=killer, args=(server, tally, until, args.kill_every, rng)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.minutes * 60 + HANG_S + 60)
            if thread.is_alive():
                tally.record("client", "lost", "a client thread never came back (a hang)")
        alive = proc.poll() is None and httpx.get(f"{url}/api/version", timeout=10).status_code == 200
        check_history(url, tally)
        rss = server.memory_info().rss / 1e6 if alive else 0.0
        report(tally, args.minutes, alive, rss, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print("cove serve did not stop within 20 s of SIGTERM; killed")
            proc.kill()


if __name__ == "__main__":
    main()
