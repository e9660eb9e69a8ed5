"""The URL guard on real sockets to real private addresses: a network namespace the test builds.

A veth pair joins this namespace (10.200.N.1, fd00:c0fe:N::1) to a new one (10.200.N.2 and .3,
fd00:c0fe:N::2) where a tiny HTTP server runs. A plain client reaches every address, so each
refusal below is the guard's doing, not an unreachable host. Needs root and iproute2's `ip`;
skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cove.net import audit
from cove.net.addresses import UnsafeUrl
from cove.net.safe_transport import safe_client

PORT = 8080
_N = os.getpid() % 250 + 1  # a subnet of its own, so two test runs on one machine do not collide
V4 = f"10.200.{_N}"
V6 = f"fd00:c0fe:{_N:x}:"
pytestmark = pytest.mark.egress_exempt(f"{V4}.0/24", f"{V6}:/64")

SERVER = """
import http.server, socket, sys
log = open(sys.argv[1], "a", buffering=1)
routes = {"/to-private": "http://%(v4)s.3:%(port)d/", "/to-ula": "http://[%(v6)s:2]:%(port)d/",
          "/to-mapped": "http://[::ffff:%(v4)s.3]:%(port)d/"}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        local = self.connection.getsockname()[0].removeprefix("::ffff:")
        log.write(f"{local} {self.path}\\n")
        if self.path in routes:
            self.send_response(302); self.send_header("Location", routes[self.path])
            self.send_header("Content-Length", "0"); self.end_headers(); return
        body = f"inside {local} for {self.headers['Host']}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
Server(("::", %(port)d), Handler).serve_forever()
"""


@dataclass
class Namespace:
    name: str
    log: Path

    def requests(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def _cannot_build() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux's"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    return None


@pytest.fixture(scope="module")
def netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    reason = _cannot_build()
    if reason:
        pytest.skip(reason)
    name, host_side, inside = f"cove-test-{os.getpid()}", f"cvh{os.getpid()}", f"cvn{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"`ip netns add` is not permitted here: {exc.stderr.strip()}")
    server: subprocess.Popen[bytes] | None = None
    try:
        _wire(name, host_side, inside)
        folder = tmp_path_factory.mktemp("netns")
        script, log = folder / "server.py", folder / "requests.log"
        script.write_text(SERVER % {"v4": V4, "v6": V6, "port": PORT})
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, str(script), str(log)])
        with audit.exempt(f"{V4}.0/24"):  # set up before the tests' own exemption is in force
            _wait_for(f"{V4}.2", server)
        yield Namespace(name, log)
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", host_side], capture_output=True, timeout=10)


def _wire(name: str, host_side: str, inside: str) -> None:
    _ip("link", "add", host_side, "type", "veth", "peer", "name", inside)
    _ip("link", "set", inside, "netns", name)
    _ip("addr", "add", f"{V4}.1/24", "dev", host_side)
    _ip("-6", "addr", "add", f"{V6}:1/64", "dev", host_side, "nodad")
    _ip("link", "set", host_side, "up")
    for address in (f"{V4}.2/24", f"{V4}.3/24"):
        _ip("-n", name, "addr", "add", address, "dev", inside)
    _ip("-n", name, "-6", "addr", "add", f"{V6}:2/64", "dev", inside, "nodad")
    _ip("-n", name, "link", "set", inside, "up")
    _ip("-n", name, "link", "set", "lo", "up")


def _wait_for(address: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server in the namespace exited ({server.returncode})")
        try:
            socket.create_connection((address, PORT), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the server in the namespace never answered on {address}:{PORT}")


def _plain() -> httpx.Client:
    return httpx.Client(trust_env=False, follow_redirects=True, timeout=5)


def test_a_plain_client_reaches_every_private_address(netns: Namespace) -> None:
    with _plain() as client:
        assert client.get(f"http://{V4}.2:{PORT}/").text.startswith(f"inside {V4}.2")
        assert client.get(f"http://[{V6}:2]:{PORT}/").text.startswith(f"inside {V6}:2")
        assert client.get(f"http://{V4}.2:{PORT}/to-private").text.startswith(f"inside {V4}.3")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"http://{V4}.2:{PORT}/", "private"),
        (f"http://{V4}.3:{PORT}/", "private"),
        (f"http://[{V6}:2]:{PORT}/", "unique-local"),
        (f"http://[::ffff:{V4}.2]:{PORT}/", "private"),
        (f"http://10.200.{_N * 256 + 2}:{PORT}/", "private"),  # the a.b.c form of 10.200.N.2
    ],
)
def test_a_private_address_is_refused_on_a_real_socket(netns: Namespace, url: str, reason: str) -> None:
    before = len(netns.requests())
    with safe_client(timeout=5) as client, pytest.raises(UnsafeUrl, match=reason):
        client.get(url)
    assert len(netns.requests()) == before  # refused before any packet: the server saw nothing


@pytest.mark.parametrize("path", ["/to-private", "/to-ula", "/to-mapped"])
def test_a_redirect_from_an_allowed_test_host_to_a_private_address_is_refused(
    netns: Namespace, path: str
) -> None:
    before = len(netns.requests())
    with safe_client(allow_private={f"{V4}.2"}, timeout=5) as client:
        assert client.get(f"http://{V4}.2:{PORT}/").text.startswith(f"inside {V4}.2")
        with pytest.raises(UnsafeUrl, match=r"private|unique-local"):
            client.get(f"http://{V4}.2:{PORT}{path}")
    # The allowed host answered both requests; the redirect's target never saw one.
    assert netns.requests()[before:] == [f"{V4}.2 /", f"{V4}.2 {path}"]


def test_a_name_that_re_resolves_to_loopback_stays_on_the_checked_address(netns: Namespace) -> None:
    answers = [f"{V4}.2", "127.0.0.1"]
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return [answers[min(len(calls), 2) - 1]]

    with safe_client(resolver=resolver, allow_private={f"{V4}.2"}, timeout=5) as client:
        answer = client.get(f"http://rebind.test:{PORT}/")
        assert answer.text == f"inside {V4}.2 for rebind.test:{PORT}"
        assert calls == ["rebind.test"]  # once: the connection went to the address that was checked
        with pytest.raises(UnsafeUrl, match=r"rebind\.test resolves to 127\.0\.0\.1, which is loopback"):
            client.get(f"http://rebind.test:{PORT}/")


def test_an_allowed_ipv6_address_is_reached_pinned_with_the_name_kept(netns: Namespace) -> None:
    def resolver(host: str, port: int) -> list[str]:
        return [f"{V6}:2"]

    with safe_client(resolver=resolver, allow_private={f"{V6}:/64"}, timeout=5) as client:
        assert client.get(f"http://six.test:{PORT}/").text == f"inside {V6}:2 for six.test:{PORT}"
        assert client.get(f"http://[{V6}:2]:{PORT}/").text == f"inside {V6}:2 for [{V6}:2]:{PORT}"


def test_a_searxng_on_the_lan_is_reached_without_an_allow_list(netns: Namespace, cove_home: Path) -> None:
    """The user named its address in COVE_SEARXNG_URL: switching web_search on is enough."""
    from cove.config import Settings
    from cove.net import gate
    from cove.tools import policy
    from cove.tools.registry import ToolContext, ToolError
    from cove.tools.web_search import web_search

    policy.enable(cove_home, "web_search")  # no --allow
    settings = Settings.from_env().replace(searxng_url=f"http://{V4}.2:{PORT}")
    gate.install(settings)
    before = len(netns.requests())
    # The fake answers text, not SearXNG's JSON: reaching it at all is what this shows.
    with pytest.raises(ToolError, match="answered something that is not JSON"):
        web_search({"query": "otters"}, ToolContext(settings=settings))
    (seen,) = netns.requests()[before:]
    assert seen.startswith(f"{V4}.2 /search?q=otters")
    (entry,) = gate.current().ledger.entries()
    assert (entry.feature, entry.host, entry.decision) == ("tool:web_search", f"{V4}.2", "allowed")
    assert "you named in COVE_SEARXNG_URL" in entry.reason


MCP_SERVER = """
import sys
from mcp.server.mcpserver import MCPServer

app = MCPServer("facts")

@app.tool()
def capital(country: str) -> str:
    \"\"\"The capital of a country.\"\"\"
    return {"France": "Paris"}.get(country, "unknown")

app.run("streamable-http", host=sys.argv[1], port=int(sys.argv[2]))
"""
MCP_PORT = 8765


@pytest.fixture
def lan_mcp(netns: Namespace, tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("mcp")
    script = tmp_path / "facts.py"
    script.write_text(MCP_SERVER)
    command = ["ip", "netns", "exec", netns.name, sys.executable, str(script), f"{V4}.2", str(MCP_PORT)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((f"{V4}.2", MCP_PORT), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the MCP server in the namespace never listened")
                time.sleep(0.2)
        yield f"http://{V4}.2:{MCP_PORT}/mcp"
    finally:
        server.kill()
        server.wait(timeout=10)


def test_an_mcp_server_declared_on_the_lan_is_reached_once_its_host_is_allowed(
    lan_mcp: str, cove_home: Path
) -> None:
    """The declared URL may be private (the user named it); the gate's allow-list still decides."""
    from cove.config import Settings
    from cove.net import gate
    from cove.tools import policy
    from cove.tools.mcp_client import server_tools
    from cove.tools.mcp_config import McpServer
    from cove.tools.registry import ToolError, run_tool

    egress = gate.install(Settings.from_env())
    server = McpServer("facts", url=lan_mcp)
    with pytest.raises(ToolError, match=rf"run `cove tools enable mcp:facts --allow {V4}\.2`"):
        server_tools(server, egress.settings)
    policy.enable(cove_home, "mcp:facts", (f"{V4}.2",))
    (tool,) = server_tools(server, egress.settings)
    assert run_tool(tool, {"country": "France"}).text == "Paris"
    refused, *allowed = reversed(egress.ledger.entries())
    assert (refused.feature, refused.decision) == ("mcp:facts", "refused")
    assert allowed and all(e.feature == "mcp:facts" and e.decision == "allowed" for e in allowed)
    assert all(not e.loopback and e.host == f"{V4}.2" and e.bytes_received > 0 for e in allowed)


def test_the_cli_talking_to_a_cove_server_on_another_machine_is_in_the_ledger_with_its_bytes(
    netns: Namespace, cove_home: Path
) -> None:
    from cove.config import Settings
    from cove.library.remote import RemoteCove, find_server
    from cove.net import gate

    settings = Settings.from_env().replace(host=f"{V4}.2", port=PORT)
    remote = RemoteCove(settings)
    try:
        assert remote.http.get("/api/version").text.startswith(f"inside {V4}.2")
    finally:
        remote.close()
    (entry,) = gate.for_settings(settings).ledger.entries()
    assert (entry.feature, entry.host, entry.port, entry.decision) == (
        "engine:remote",
        f"{V4}.2",
        PORT,
        "allowed",
    )
    assert not entry.loopback and entry.bytes_sent > 50 and entry.bytes_received > 20
    # Offline, the server on the other machine is not asked: the CLI runs here instead.
    before = len(netns.requests())
    assert find_server(settings.replace(offline=True)) is None
    assert len(netns.requests()) == before
