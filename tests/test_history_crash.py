"""Tests that the history survives kill -9 mid-write and two processes writing at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import apsw

from cove.history import History, db_path
from cove.history.migrations import STEPS

SRC = str(Path(__file__).resolve().parents[1] / "src")

WRITE_FOREVER = """
import sys
from cove.history import History
history = History(sys.argv[1])
while True:
    message = history.add_message(sys.argv[2], "user", "a message worth keeping " * 20)
    print(message.id, flush=True)
"""

# Both writers wait for the "go" file, so they open (or write) at the same moment.
WRITE_N = """
import sys, time
from pathlib import Path
from cove.history import History
path, chat, count, name, go = sys.argv[1:]
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.001)
history = History(path)
chat = chat or history.start("m", title=name).id
for i in range(int(count)):
    history.add_message(chat, "user", f"{name} {i}")
print("done", flush=True)
"""


def python(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def together(path: Path, chat: str, count: int) -> None:
    """Run two writers at once, each adding `count` messages to `chat` (or to its own new one)."""
    go = path.with_name("go")
    go.parent.mkdir(parents=True, exist_ok=True)
    writers = [python(WRITE_N, str(path), chat, str(count), name, str(go)) for name in ("left", "right")]
    for writer in writers:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    go.touch()
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert (writer.returncode, out.strip()) == (0, "done"), err


def raw(path: Path) -> apsw.Connection:
    """A plain connection that knows nothing of cove, as a recovery tool would open the file."""
    return apsw.Connection(str(path))


def test_kill_9_keeps_every_message_it_reported(cove_home: Path) -> None:
    path = db_path(cove_home)
    with History(path) as history:
        chat = history.start("m")
    writer = python(WRITE_FOREVER, str(path), chat.id)
    assert writer.stdout is not None
    reported = [int(writer.stdout.readline()) for _ in range(40)]
    os.kill(writer.pid, signal.SIGKILL)
    rest, _ = writer.communicate(timeout=30)
    reported += [int(line) for line in rest.split()]  # printed before the kill: committed too
    assert writer.returncode == -signal.SIGKILL

    conn = raw(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    stored = {row[0] for row in conn.execute("SELECT id FROM messages")}
    assert set(reported) <= stored
    with History(path) as history:
        positions = [m.position for m in history.get(chat.id).messages]
        searchable = history.search("worth keeping", limit=len(stored) + 10)
    assert positions == list(range(len(stored)))
    assert len(searchable) == len(stored)


def test_two_processes_writing_at_once_both_succeed(cove_home: Path) -> None:
    path = db_path(cove_home)
    with History(path) as history:
        chat = history.start("m")
    together(path, chat.id, 200)

    with History(path) as history:
        messages = history.get(chat.id).messages
    assert len(messages) == 400
    assert [m.position for m in messages] == list(range(400))
    assert {m.content for m in messages} == {f"{name} {i}" for name in ("left", "right") for i in range(200)}
    assert raw(path).execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_two_processes_creating_the_file_at_once(cove_home: Path) -> None:
    path = db_path(cove_home)
    together(path, "", 20)

    with History(path) as history:
        assert sorted((s.title, s.message_count) for s in history.list()) == [("left", 20), ("right", 20)]
    assert raw(path).execute("SELECT count(*) FROM _migrations").fetchall() == [(len(STEPS),)]
