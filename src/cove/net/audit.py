"""The backstop: an audit hook that refuses and records any connection the gate did not allow.

`sys.addaudithook` sees every `socket.connect`, `socket.sendto`, name lookup (`getaddrinfo`,
`gethostbyname`, `gethostbyaddr`) and `subprocess.Popen` in this process, third-party libraries
included. Unix sockets and loopback always pass; so does anything inside a gate `Permit` (in
the same context, or a name lookup for a permitted host from a worker thread). Anything else to
another machine is refused with `BackstopRefused` (an EgressRefused and an OSError) before a
packet leaves, recorded in the ledger, and remembered here. A program that reaches the network
(pip, curl, `uv run`, `npx`) starts only inside a permit, or as the very command the user
declared for a stdio MCP server (`declared_program`): that program's own network use is outside
cove's process, and `cove privacy` says so.

An audit hook cannot be removed, so the hook only reads `STATE`, a module-level object: tests
switch its mode, exempt test networks, and collect what it refused. Modes: "enforce" (refuse and
record: the CLI and `cove serve`) and "strict" (the test suite: the same, and every refusal is a
violation that fails the test unless the test expected it). With EGRESS_AUDIT_REPORT set to a
file, every refusal and every non-loopback connection let through is appended to it as a JSON
line, so a test run can check the cove processes it started, too.
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
import os
import shlex
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ..config import Settings
from .addresses import parse_ip
from .gate import EgressRefused, Gate, host_in_force, installed, permits_in_force
from .policy import PULL, REMOTE_ENGINE, is_loopback_host, normal_host

Mode = Literal["off", "enforce", "strict"]
#: Programs that reach the network by themselves: started only inside a gate permit.
NETWORK_PROGRAMS = frozenset(
    {
        *("pip", "pip3", "pipx", "uv", "uvx", "npm", "npx", "curl", "wget", "git"),
        *("ssh", "scp", "sftp", "rsync", "nc", "ncat", "telnet", "ftp"),
    }
)
#: Not COVE_*: test helpers that start `cove serve` drop those from its environment, not this.
REPORT_ENV = "EGRESS_AUDIT_REPORT"
_INET = (socket.AF_INET, socket.AF_INET6)
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh"})
#: The older name lookups: each may ask a name server too.
_BY_NAME = frozenset({"socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"})


class BackstopRefused(EgressRefused, PermissionError):
    """A connection the hook refused: an OSError too, so the code that tried it fails the way it
    fails when a network is down (a bind, a client's retry loop), with this message."""


@dataclass(frozen=True)
class Seen:
    """One non-loopback attempt the hook judged: what, where, and whether it passed."""

    event: str
    host: str
    port: int | None
    decision: str  # "allowed", "refused" or "exempt"
    feature: str  # the permit's feature, or "" when none was in force
    reason: str
    #: Provoked by a test on purpose (inside `expect_refusals`).
    expected: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seen:
        """One line of a EGRESS_AUDIT_REPORT file (other keys, such as the pid, are left out)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass
class HookState:
    """What the installed hook reads and writes; module-level so tests can steer it."""

    mode: Mode = "off"
    installed: bool = False
    #: Networks and names a test lets through (netns test hosts); never set outside tests.
    exempt_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    exempt_names: set[str] = field(default_factory=set)
    #: Every non-loopback attempt judged, in order.
    seen: list[Seen] = field(default_factory=list)
    #: Refusals no test expected (strict mode fails the test that caused one).
    violations: list[Seen] = field(default_factory=list)
    expecting: int = 0
    report: str | None = None


STATE = HookState()
#: The commands (argv) the user declared as stdio MCP servers, while cove starts one of them.
_declared: contextvars.ContextVar[tuple[tuple[str, ...], ...]] = contextvars.ContextVar(
    "cove_declared_programs", default=()
)
_busy = threading.local()  # the hook's own work (writing the ledger) must not re-enter it
_lock = threading.Lock()


def install(mode: Mode = "enforce") -> None:
    """Add the hook once per process; a later call may make it stricter, never laxer."""
    with _lock:
        if not STATE.installed:
            STATE.report = os.environ.get(REPORT_ENV) or None
            sys.addaudithook(_hook)
            STATE.installed = True
        order = ("off", "enforce", "strict")
        if order.index(mode) > order.index(STATE.mode):
            STATE.mode = mode


@contextmanager
def exempt(*targets: str) -> Iterator[None]:
    """Test-only: let connections to these networks ("10.77.0.0/24") or names pass the backstop."""
    networks = []
    names = set()
    for target in targets:
        try:
            networks.append(ipaddress.ip_network(target, strict=False))
        except ValueError:
            names.add(target.lower())
    STATE.exempt_networks.extend(networks)
    STATE.exempt_names.update(names)
    try:
        yield
    finally:
        for network in networks:
            STATE.exempt_networks.remove(network)
        STATE.exempt_names.difference_update(names)


@contextmanager
def declared_program(argv: Sequence[str]) -> Iterator[None]:
    """While inside (in this context), the backstop lets exactly this command start.

    For a stdio MCP server the user declared (`uv run server.py`, `npx -y pkg`): the user named
    that program, and what it connects to is its own business, outside cove's process.
    """
    token = _declared.set((*_declared.get(), tuple(argv)))
    try:
        yield
    finally:
        _declared.reset(token)


@contextmanager
def expect_refusals() -> Iterator[list[Seen]]:
    """Test-only: what the hook judges inside is what the test provokes on purpose, so neither a
    violation nor counted by the session's check; yields the refusals among it."""
    start = len(STATE.seen)
    found: list[Seen] = []
    STATE.expecting += 1
    try:
        yield found
    finally:
        STATE.expecting -= 1
        found.extend(s for s in STATE.seen[start:] if s.decision == "refused")


# -- the hook -------------------------------------------------------------------------------


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if STATE.mode == "off" or getattr(_busy, "on", False):
        return
    if event == "socket.connect" or event == "socket.sendto":
        _on_connect(event, args[0], args[1])
    elif event == "socket.getaddrinfo":
        _on_lookup(args[0], args[1])
    elif event in _BY_NAME:
        _on_lookup(args[0], None, event)
    elif event == "subprocess.Popen":
        _on_program(args[0], args[1])


def _on_connect(event: str, sock: Any, address: Any) -> None:
    if getattr(sock, "family", None) not in _INET or not isinstance(address, tuple) or not address:
        return  # Unix sockets, netlink, ...: nothing leaves the machine
    host, port = str(address[0]), address[1] if len(address) > 1 else None
    if is_loopback_host(host):
        return
    if _exempted(host):
        return _note(Seen(event, host, port, "exempt", "", "a test host the test let through"))
    permits = permits_in_force()
    if permits:
        permits[-1].address = permits[-1].address or host
        return _pass(event, host, port, permits[-1].feature)
    _refuse(event, host, port, "a connection the egress gate did not allow")


def _on_lookup(host: Any, port: Any, event: str = "socket.getaddrinfo") -> None:
    if host is None:
        return
    name = host.decode("idna", "replace") if isinstance(host, bytes) else str(host)
    # A literal asks no name server, except in a reverse lookup (which sends the address out).
    literal = _is_literal(name) and event != "socket.gethostbyaddr"
    if is_loopback_host(name) or literal or name.lower() == socket.gethostname().lower():
        return  # no name server is asked (or only about this machine itself)
    port_number = port if isinstance(port, int) else None
    if name.lower() in STATE.exempt_names:
        return _note(Seen(event, name, port_number, "exempt", "", "a test host"))
    permits = permits_in_force()
    if permits:
        return _pass(event, name, port_number, permits[-1].feature)
    permit = host_in_force(name)
    if permit is not None:
        return _pass(event, name, port_number, permit.feature)
    if _named_server(name):
        return _pass(event, name, port_number, REMOTE_ENGINE)
    _refuse(event, name, port_number, "a name lookup the egress gate did not allow")


def _on_program(executable: Any, argv: Any) -> None:
    program = _network_program(executable, argv)
    if program is None or _words(executable, argv) in _declared.get():
        return
    permits = permits_in_force()
    if permits:
        return _pass("subprocess.Popen", f"({program})", None, permits[-1].feature)
    why = f"{program} reaches the network; only a pull, or an MCP server declared in mcp.json, may run it"
    _refuse("subprocess.Popen", f"({program})", None, why)


def _words(executable: Any, argv: Any) -> tuple[str, ...]:
    words = [os.fsdecode(a) for a in argv] if isinstance(argv, list | tuple) else [os.fsdecode(argv)]
    if executable is not None and (not words or words[0] != os.fsdecode(executable)):
        words.insert(0, os.fsdecode(executable))
    return tuple(words)


def _network_program(executable: Any, argv: Any) -> str | None:
    """`pip` for `pip ...`, `python -m pip ...` and `sh -c 'pip ...'`; None for local programs."""
    words = list(_words(executable, argv))
    for _ in range(3):  # a shell running a shell running pip is still pip
        if not words:
            return None
        base = os.path.basename(words[0]).lower()
        if base in NETWORK_PROGRAMS:
            return base
        after = words[words.index("-m") + 1 : words.index("-m") + 2] if "-m" in words else []
        if base.startswith("python") and after and after[0] in NETWORK_PROGRAMS:
            return after[0]
        if base not in _SHELLS or "-c" not in words or words.index("-c") + 1 >= len(words):
            return None
        words = _split_command(words[words.index("-c") + 1])
    return None


def _split_command(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _is_literal(name: str) -> bool:
    """An address as libc reads one (`10.1`, `0x0a000001`): a lookup of it asks no name server."""
    return parse_ip(name) is not None


def _exempted(host: str) -> bool:
    if host.lower() in STATE.exempt_names:
        return True
    address = parse_ip(host)
    return address is not None and any(address in network for network in STATE.exempt_networks)


def _named_server(host: str) -> bool:
    """A lookup of the name in COVE_HOST: `cove serve --host NAME` resolves it to listen on it.

    Connecting to that server goes through the gate (`RemoteCove` on a gate client), so a connect
    is judged like any other: inside a permit, or refused.
    """
    gate = installed()
    return (
        gate is not None
        and not gate.settings.offline
        and normal_host(host) == normal_host(gate.settings.host)
    )


def _pass(event: str, host: str, port: int | None, feature: str) -> None:
    _note(Seen(event, host, port, "allowed", feature, "inside a gate permit", expected=STATE.expecting > 0))


def _refuse(event: str, host: str, port: int | None, reason: str) -> None:
    # A name under .invalid (RFC 6761) is one a test picked to fail; refused, it sent nothing.
    never_resolves = normal_host(host).endswith(".invalid") or normal_host(host) == "invalid"
    seen = Seen(event, host, port, "refused", "", reason, expected=STATE.expecting > 0 or never_resolves)
    _note(seen)
    if STATE.mode == "strict" and not seen.expected:
        STATE.violations.append(seen)
    _busy.on = True
    gate = None
    try:
        gate = installed() or Gate(Settings.from_env())
        gate.refused("backstop", host, port, f"{reason} ({event})", host if _is_literal(host) else None)
    except Exception:
        pass
    finally:
        if gate is not None and gate is not installed():
            gate.close()
        _busy.on = False
    where = f"{host}:{port}" if port else host
    raise BackstopRefused(f"cove refused to reach {where}: {reason} (see `cove privacy`)")


def _note(seen: Seen) -> None:
    STATE.seen.append(seen)
    if STATE.report:
        _busy.on = True
        try:
            with open(STATE.report, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"pid": os.getpid(), **asdict(seen)}) + "\n")
        except OSError:
            pass
        finally:
            _busy.on = False


def outside_named_pulls(seen: list[Seen]) -> list[Seen]:
    """The attempts that are not proof of privacy: refusals, and passes for anything but a pull."""
    return [
        s
        for s in seen
        if not s.expected and (s.decision == "refused" or (s.decision == "allowed" and s.feature != PULL))
    ]


__all__ = ["STATE", "declared_program", "exempt", "expect_refusals", "install", "outside_named_pulls"]
