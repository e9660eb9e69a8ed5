"""`cove serve` binds its port before it says it listens; every bind failure is one line."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cove.config import Settings
from cove.errors import CoveError
from cove.server import run as run_module

COVE = Path(sys.executable).with_name("cove")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program is listening on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def serve_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(COVE), "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def test_bind_names_the_busy_port(busy_port: int) -> None:
    with pytest.raises(CoveError, match=rf"^port {busy_port} on 127.0.0.1 is already in use"):
        run_module.bind("127.0.0.1", busy_port)


@pytest.mark.parametrize(
    ("host", "port", "reason"),
    [
        ("127.0.0.1", 99999, r"^cannot listen on 127.0.0.1:99999: "),
        ("no-such-host.invalid", 1234, r"^cannot listen on no-such-host.invalid:1234: "),
    ],
)
def test_bind_refuses_bad_addresses_in_one_line(host: str, port: int, reason: str) -> None:
    with pytest.raises(CoveError, match=reason) as info:
        run_module.bind(host, port)
    assert "\n" not in str(info.value)


def test_bind_listens_at_once() -> None:
    sock = run_module.bind("127.0.0.1", 0)
    with sock, socket.create_connection(sock.getsockname(), timeout=2):
        pass  # accepted into the backlog before any server loop runs


def test_serve_on_busy_port_never_announces(
    busy_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    built: list[object] = []
    monkeypatch.setattr(run_module, "Cove", lambda settings: built.append(settings))
    with caplog.at_level(logging.INFO, "cove.server"), pytest.raises(CoveError, match="in use"):
        run_module.serve(Settings(home=tmp_path, host="127.0.0.1", port=busy_port))
    assert "listening" not in caplog.text
    assert built == []  # nothing was loaded for a server that could not start


def test_process_busy_port_is_one_line(busy_port: int) -> None:
    process = serve_process("--port", str(busy_port))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert out == ""
    assert err.startswith(f"Error: port {busy_port} on 127.0.0.1 is already in use")
    assert err.count("\n") == 1 and "listening" not in err


def test_process_port_out_of_range_is_a_usage_error() -> None:
    process = serve_process("--port", "99999")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "Traceback" not in err
    assert "Error: Invalid value for '--port': 99999 is not in the range 0<=x<=65535" in err


def test_process_announces_the_real_port_and_stops_on_ctrl_c() -> None:
    process = serve_process("--port", "0")
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"cove is listening on http://127\.0\.0\.1:(\d+) ", line)
        assert match, line
        answer = httpx.get(f"http://127.0.0.1:{match.group(1)}/api/version", timeout=10)
        assert answer.status_code == 200
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=30)
        assert process.returncode == 130
        assert "Traceback" not in rest
    finally:
        process.kill()
        process.wait()


def test_a_start_that_fails_after_binding_frees_the_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_bind = run_module.bind
    bound: list[socket.socket] = []

    def recording_bind(host: str, port: int) -> socket.socket:
        bound.append(real_bind(host, port))
        return bound[-1]

    def broken_store(settings: Settings) -> None:
        raise CoveError("the store cannot be opened")

    monkeypatch.setattr(run_module, "bind", recording_bind)
    monkeypatch.setattr(run_module, "Cove", broken_store)
    with pytest.raises(CoveError, match="cannot be opened"):
        run_module.serve(Settings(home=tmp_path, host="127.0.0.1", port=0))
    assert len(bound) == 1 and bound[0].fileno() == -1  # closed, so the port is free again
