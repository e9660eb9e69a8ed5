"""`make run` on a real terminal: a Ctrl-C that stops an answer does not make make report an interrupt."""

from __future__ import annotations

import os
import select
import shutil
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Stands in for the installed `cove`: `pull` succeeds, `pick --pull` names a model, `run` survives
# Ctrl-C as the REPL does (the answer stops, the chat goes on) and leaves on /bye with status 0.
FAKE_COVE = """\
import signal, sys
if sys.argv[1] == "pull":
    sys.exit(0)
if sys.argv[1:] == ["pick", "--pull"]:
    print("picked:1b")
    sys.exit(0)
print("chatting with", sys.argv[2:], flush=True)
signal.signal(signal.SIGINT, lambda *_: print("[answer stopped]", flush=True))
print(">>> ", end="", flush=True)
for line in sys.stdin:
    if line.strip() == "/bye":
        break
print("bye", flush=True)
"""

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or sys.platform == "win32", reason="needs make and a pty"
)


def fake_venv(folder: Path) -> Path:
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    cove = bin_dir / "cove"
    cove.write_text(f"#!{sys.executable}\n{FAKE_COVE}")
    cove.chmod(0o755)
    return folder


def read_for(fd: int, seconds: float) -> bytes:
    data = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the terminal closed: everything on it has exited
                break
            if not chunk:
                break
            data += chunk
    return data


def read_until(fd: int, marker: bytes, seconds: float) -> bytes:
    data = b""
    end = time.monotonic() + seconds
    while marker not in data and time.monotonic() < end:
        data += read_for(fd, 0.1)
    return data


def test_ctrl_c_then_bye_ends_make_run_without_interrupt(tmp_path: Path) -> None:
    import pty

    venv = fake_venv(tmp_path / "venv")
    pid, fd = pty.fork()
    if pid == 0:  # the child: make on the new terminal, as a person would type it
        os.execvp("make", ["make", "-s", "-C", str(REPO), "run", f"VENV={venv}"])
    screen = read_until(fd, b">>> ", 30)
    os.write(fd, b"\x03")  # Ctrl-C on the terminal: SIGINT to make, the shell and the chat
    screen += read_until(fd, b"[answer stopped]", 10)
    os.write(fd, b"/bye\n")
    screen += read_for(fd, 5)
    _, status = os.waitpid(pid, 0)
    text = screen.decode(errors="replace")
    assert "[answer stopped]" in text and "bye" in text
    assert "chatting with ['picked:1b']" in text  # no MODEL: the machine's pick
    assert "Interrupt" not in text and "***" not in text, text
    assert os.waitstatus_to_exitcode(status) in (0, -2)  # make re-raises the SIGINT it saw


def test_make_run_with_model_chats_with_that_model(tmp_path: Path) -> None:
    import subprocess

    venv = fake_venv(tmp_path / "venv")
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "run", f"VENV={venv}", "MODEL=given:1b"],
        input="/bye\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "chatting with ['given:1b']" in done.stdout
