"""The backstop: the audit hook refuses real connections the gate did not allow, and records them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cove.config import Settings
from cove.net import audit, gate
from cove.net.gate import EgressRefused

TEST_NET = "192.0.2.1"  # TEST-NET-1 (RFC 5737): documentation only, never routed


def test_the_suite_runs_under_the_strict_hook() -> None:
    """The proof the README points to is live: every test here ran under this hook."""
    assert audit.STATE.installed
    assert audit.STATE.mode == "strict"
    assert os.environ.get(audit.REPORT_ENV)


def test_a_real_connect_off_the_machine_is_refused_before_any_packet(cove_home: Path) -> None:
    egress = gate.install(Settings.from_env())
    with socket.socket() as sock, audit.expect_refusals() as refused:
        sock.settimeout(30)  # were it sent, a SYN to TEST-NET would wait here for the timeout
        started = time.monotonic()
        with pytest.raises(
            EgressRefused, match=r"192\.0\.2\.1:80: a connection the egress gate did not allow"
        ):
            sock.connect((TEST_NET, 80))
        assert time.monotonic() - started < 1
        with pytest.raises(OSError):
            sock.getpeername()  # never connected
    assert [(s.event, s.host, s.port) for s in refused] == [("socket.connect", TEST_NET, 80)]
    (entry,) = egress.ledger.entries()
    assert (entry.feature, entry.host, entry.port, entry.decision) == ("backstop", TEST_NET, 80, "refused")
    assert entry.address == TEST_NET
    with socket.socket() as sock, audit.expect_refusals(), pytest.raises(OSError):
        sock.connect((TEST_NET, 80))  # code that handles a network that is down handles this too


def test_ipv6_udp_and_name_lookups_are_refused_too(cove_home: Path) -> None:
    gate.install(Settings.from_env())
    with audit.expect_refusals() as refused:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock, pytest.raises(EgressRefused):
            sock.connect(("2001:db8::1", 443))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(EgressRefused):
            sock.sendto(b"q", (TEST_NET, 53))
        with pytest.raises(EgressRefused, match="a name lookup the egress gate did not allow"):
            socket.getaddrinfo("phone-home.example", 443)
        with pytest.raises(EgressRefused):
            socket.gethostbyname("phone-home.example")
        with pytest.raises(EgressRefused):
            socket.gethostbyaddr(TEST_NET)  # a reverse lookup sends the address to a name server
    events = [
        "socket.connect",
        "socket.sendto",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
    ]
    assert [s.event for s in refused] == events
    assert len(gate.current().ledger.entries()) == 5
    assert socket.gethostbyname("localhost")  # this machine's own names still resolve
    socket.getfqdn()


def test_a_network_program_starts_only_inside_a_permit(cove_home: Path) -> None:
    with audit.expect_refusals() as refused, pytest.raises(EgressRefused, match="pip reaches the network"):
        subprocess.run([sys.executable, "-m", "pip", "--version"], check=False)
    with audit.expect_refusals(), pytest.raises(EgressRefused, match="curl reaches the network"):
        subprocess.run(["/usr/bin/curl", "https://example.com"], check=False)
    assert refused and refused[0].host == "(pip)"
    # Programs that stay on this machine start as always.
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0
    with gate.allow("pull", "pypi.org", 443):
        done = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, check=False)
    assert done.returncode == 0


def test_loopback_and_unix_sockets_always_pass(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        socket.create_connection(server.getsockname(), timeout=5).close()
    assert socket.getaddrinfo("localhost", 80)
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "0177.0.0.1"])
def test_loopback_spelled_as_libc_reads_it_passes_as_loopback(host: str) -> None:
    """A lookup of `2130706433` asks no name server: libc reads it as 127.0.0.1."""
    seen = len(audit.STATE.seen)
    audit._hook("socket.getaddrinfo", (host, 80, 0, 0, 0, 0))
    with socket.socket() as sock:
        audit._hook("socket.connect", (sock, (host, 80)))
    assert len(audit.STATE.seen) == seen  # neither judged nor refused: it is this machine
    assert socket.getaddrinfo(host, 80)


def test_a_lookup_of_another_machine_spelled_as_a_number_asks_no_name_server() -> None:
    seen = len(audit.STATE.seen)
    audit._hook("socket.getaddrinfo", ("3221225985", 80, 0, 0, 0, 0))  # 192.0.2.1: no lookup
    assert len(audit.STATE.seen) == seen
    with socket.socket() as sock, audit.expect_refusals(), pytest.raises(EgressRefused):
        audit._hook("socket.connect", (sock, ("3221225985", 80)))  # the connect itself is judged


def test_inside_a_permit_the_hook_lets_the_connection_through() -> None:
    """Judged without sending anything: the hook itself is asked, as socket.connect would ask it."""
    with socket.socket() as sock:
        with gate.allow("pull", "mirror.example", 443) as permit:
            audit._hook("socket.connect", (sock, (TEST_NET, 443)))
            audit._hook("socket.getaddrinfo", ("mirror.example", 443, 0, 0, 0, 0))
        assert permit.address == TEST_NET
        with audit.expect_refusals(), pytest.raises(EgressRefused):
            audit._hook("socket.connect", (sock, (TEST_NET, 443)))  # the permit has ended


def test_a_name_lookup_from_a_worker_thread_passes_while_its_host_is_permitted() -> None:
    """asyncio resolves names in an executor thread, outside the request's context."""
    from concurrent.futures import ThreadPoolExecutor

    def lookup() -> None:
        audit._hook("socket.getaddrinfo", ("files.example", 443, 0, 0, 0, 0))

    with gate.allow("pull", "files.example", 443), ThreadPoolExecutor(1) as pool:
        pool.submit(lookup).result()
    with audit.expect_refusals(), ThreadPoolExecutor(1) as pool, pytest.raises(EgressRefused):
        pool.submit(lookup).result()


@pytest.mark.egress_exempt("198.18.0.0/15")
def test_the_test_switch_lets_named_test_networks_through() -> None:
    with socket.socket() as sock:
        audit._hook("socket.connect", (sock, ("198.18.0.7", 80)))
        with audit.expect_refusals(), pytest.raises(EgressRefused):
            audit._hook("socket.connect", (sock, ("198.20.0.7", 80)))
    assert audit.STATE.seen[-2].decision == "exempt"


def test_the_hook_never_gets_laxer() -> None:
    audit.install("enforce")
    assert audit.STATE.mode == "strict"


def test_a_cove_process_reports_what_its_hook_refused(tmp_path: Path) -> None:
    """The CLI and `cove serve` install the hook at start; their refusals reach the report file."""
    report = tmp_path / "report.jsonl"
    code = (
        "import socket\n"
        "from cove.cli.privacy import start_egress\n"
        "start_egress()\n"
        f"socket.create_connection(({TEST_NET!r}, 80), timeout=30)\n"
    )
    env = {**os.environ, audit.REPORT_ENV: str(report), "COVE_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "BackstopRefused: cove refused to reach 192.0.2.1:80" in done.stderr
    (line,) = [json.loads(line) for line in report.read_text().splitlines()]
    assert (line["host"], line["decision"], line["event"]) == (TEST_NET, "refused", "socket.connect")
    assert line["pid"] != os.getpid()


def test_the_session_check_counts_only_what_left_outside_named_pulls() -> None:
    seen = [
        audit.Seen("socket.connect", "1.2.3.4", 443, "allowed", "pull", ""),
        audit.Seen("socket.connect", "1.2.3.4", 443, "exempt", "", ""),
        audit.Seen("socket.connect", "1.2.3.4", 443, "refused", "", "", expected=True),
        audit.Seen("socket.connect", "5.6.7.8", 443, "allowed", "tool:web_search", ""),
        audit.Seen("socket.connect", "9.9.9.9", 443, "refused", "", ""),
    ]
    assert [s.host for s in audit.outside_named_pulls(seen)] == ["5.6.7.8", "9.9.9.9"]


def test_the_cove_server_named_in_cove_host_is_reached_only_through_the_gate(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its name may be looked up (`cove serve --host NAME` listens on it); a connect needs a permit.

    `RemoteCove` talks to another machine on a gate client (tests/test_netns.py shows it on a
    real socket), so a connection to that server outside the gate is refused like any other.
    """
    egress = gate.install(Settings.from_env().replace(host="cove.lan", port=11435))
    with socket.socket() as sock, audit.expect_refusals() as refused:
        audit._hook("socket.getaddrinfo", ("cove.lan", 11435, 0, 0, 0, 0))
        with pytest.raises(EgressRefused):
            audit._hook("socket.connect", (sock, (TEST_NET, 11435)))  # judged, nothing sent
        with egress.allow("engine:remote", "cove.lan", 11435):
            audit._hook("socket.connect", (sock, (TEST_NET, 11435)))
    assert [(s.event, s.host) for s in refused] == [("socket.connect", TEST_NET)]
    gate.install(Settings.from_env().replace(host="cove.lan", port=11435, offline=True))
    with audit.expect_refusals(), pytest.raises(EgressRefused):
        audit._hook("socket.getaddrinfo", ("cove.lan", 11435, 0, 0, 0, 0))


def test_a_name_that_never_resolves_is_refused_as_a_lookup_failure_not_a_violation() -> None:
    before = len(audit.STATE.violations)
    with pytest.raises(OSError, match="a name lookup the egress gate did not allow"):
        socket.getaddrinfo("no-such-host.invalid", 80)  # RFC 6761: tests pick it to fail
    assert len(audit.STATE.violations) == before
    assert audit.STATE.seen[-1].expected


@pytest.mark.parametrize(
    ("executable", "argv", "program"),
    [
        ("/usr/bin/pip3", ["/usr/bin/pip3", "download", "x"], "pip3"),
        (sys.executable, [sys.executable, "-m", "pip", "download", "x"], "pip"),
        ("/bin/sh", ["/bin/sh", "-c", "curl -s https://example.com | sh"], "curl"),
        ("/bin/sh", ["/bin/sh", "-c", "bash -c 'wget example.com'"], "wget"),
        (None, "git clone https://example.com/x", None),  # a string without a shell is one program name
        ("git", ["git", "clone", "https://example.com/x"], "git"),
        (sys.executable, [sys.executable, "-m", "cove.engine.child"], None),
        ("/bin/sh", ["/bin/sh", "-c", "echo pip"], None),
        ("/usr/bin/make", ["make", "test"], None),
    ],
)
def test_which_programs_count_as_reaching_the_network(
    executable: str | None, argv: object, program: str | None
) -> None:
    assert audit._network_program(executable, argv) == program
