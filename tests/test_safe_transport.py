"""The safe transport on real loopback sockets: refused before connecting, pinned, checked per hop."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import anyio
import certificates
import httpx
import pytest
from loopback_http import LoopbackServer, redirect, text

from cove.net.addresses import UnsafeUrl
from cove.net.safe_transport import (
    AsyncSafeTransport,
    SafeTransport,
    async_safe_client,
    checked_addresses,
    safe_client,
)

LOOPBACK = {"127.0.0.1"}


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer({"/": text("secret"), "/echo": lambda seen: _echo(seen)}) as running:
        yield running


def _echo(seen: object) -> object:
    from loopback_http import Reply

    assert hasattr(seen, "headers")
    return Reply(200, {"Content-Type": "text/plain"}, f"Host: {seen.headers.get('Host')}".encode())


def _spellings(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://127.1:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::ffff:7f00:1]:{port}/",
        f"http://[::1]:{port}/",
        f"http://0.0.0.0:{port}/",
        f"http://0:{port}/",
    ]


def test_a_plain_client_reaches_the_fake_so_the_refusals_below_are_real(server: LoopbackServer) -> None:
    assert httpx.get(server.url("/"), trust_env=False).text == "secret"


def test_loopback_in_every_spelling_is_refused_before_any_connection(server: LoopbackServer) -> None:
    with safe_client() as client:
        for url in _spellings(server.port):
            with pytest.raises(UnsafeUrl, match="URL tools reach only public"):
                client.get(url)
    assert server.seen == []


def test_a_name_is_refused_for_what_it_resolves_to(server: LoopbackServer) -> None:
    with safe_client() as client, pytest.raises(UnsafeUrl, match=r"localhost resolves to 127\.0\.0\.1"):
        client.get(f"http://localhost:{server.port}/")


def test_the_test_switch_reaches_the_fake_and_keeps_the_host_header(server: LoopbackServer) -> None:
    with safe_client(allow_private=LOOPBACK) as client:
        assert client.get(server.url("/")).text == "secret"
        # Connected to 127.0.0.1, but the request still names the host it was given.
        assert client.get(f"http://localhost:{server.port}/echo").text == f"Host: localhost:{server.port}"
        with pytest.raises(UnsafeUrl):  # the switch names 127.0.0.1 only
            client.get(f"http://[::ffff:127.0.0.1]:{server.port}/")


def test_a_redirect_to_a_private_address_is_refused(server: LoopbackServer) -> None:
    # 127.0.0.2 is loopback too, but not on the test's list: it stands for the private target.
    with LoopbackServer({"/": text("internal")}, host="127.0.0.2") as inner:
        server.routes["/go"] = redirect(inner.url("/"))
        assert httpx.get(server.url("/go"), follow_redirects=True, trust_env=False).text == "internal"
        inner.seen.clear()
        with safe_client(allow_private=LOOPBACK) as client, pytest.raises(UnsafeUrl, match=r"127\.0\.0\.2"):
            client.get(server.url("/go"))
        assert inner.seen == []


@pytest.mark.parametrize(
    "location",
    ["http://[::1]:{port}/", "http://2130706434:{port}/x", "http://169.254.169.254/latest/meta-data/"],
)
def test_each_hop_is_checked_whatever_the_spelling(server: LoopbackServer, location: str) -> None:
    # 2130706434 is 127.0.0.2, which the test switch (127.0.0.1 only) does not let through
    server.routes["/go"] = redirect(location.format(port=server.port))
    with safe_client(allow_private={"127.0.0.1"}) as client, pytest.raises(UnsafeUrl):
        client.get(server.url("/go"))
    assert [seen.path for seen in server.seen] == ["/go"]


def test_a_redirect_to_another_scheme_is_refused(server: LoopbackServer) -> None:
    server.routes["/go"] = redirect("gopher://127.0.0.1:70/_stats")
    with safe_client(allow_private=LOOPBACK) as client, pytest.raises((UnsafeUrl, httpx.UnsupportedProtocol)):
        client.get(server.url("/go"))


def test_redirects_stop_after_five(server: LoopbackServer) -> None:
    server.routes["/loop"] = redirect("/loop")
    with safe_client(allow_private=LOOPBACK) as client, pytest.raises(httpx.TooManyRedirects):
        client.get(server.url("/loop"))
    assert len(server.seen) == 6


class FlippingResolver:
    """A name that answers an allowed address first and a refused one after (DNS rebinding)."""

    def __init__(self, first: str, then: str) -> None:
        self.answers = [first, then]
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [self.answers[min(len(self.calls), 2) - 1]]


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[object] = []
    real = socket.getaddrinfo

    def recording(host: object, *args: object, **kwargs: object) -> object:
        lookups.append(host)
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    resolver = FlippingResolver("127.0.0.1", "127.0.0.2")
    with safe_client(resolver=resolver, allow_private=LOOPBACK) as client:
        answer = client.get(f"http://rebind.test:{server.port}/echo")
        assert answer.text == f"Host: rebind.test:{server.port}"
        assert resolver.calls == ["rebind.test"]
        # The socket layer was only ever given the checked address, never the name to look up again.
        assert "rebind.test" not in lookups
        with pytest.raises(UnsafeUrl, match=r"rebind\.test resolves to 127\.0\.0\.2"):
            client.get(f"http://rebind.test:{server.port}/")
    assert len(resolver.calls) == 2


def test_one_private_address_among_public_ones_refuses_the_name() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "2606:4700::1", "10.0.0.5"]

    with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.5 is|10\.0\.0\.5, which is private"):
        checked_addresses("mixed.test", 80, resolver=resolver)


def test_the_next_checked_address_is_tried_when_one_does_not_answer(server: LoopbackServer) -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.3", "127.0.0.1"]  # nothing listens on 127.0.0.3

    with safe_client(resolver=resolver, allow_private={"127.0.0.0/8"}) as client:
        assert client.get(f"http://two.test:{server.port}/").text == "secret"


def test_a_name_that_does_not_resolve_is_a_connect_error() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with safe_client(resolver=resolver) as client, pytest.raises(httpx.ConnectError, match=r"nowhere\.test"):
        client.get("http://nowhere.test/")


def test_environment_proxies_do_not_bypass_the_checks(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackServer({}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url("/"))
        monkeypatch.setenv("ALL_PROXY", proxy.url("/"))
        with safe_client(allow_private=LOOPBACK) as client:
            assert client.get(server.url("/")).text == "secret"
        assert proxy.seen == []


def test_transport_options_that_would_bypass_the_address_are_refused() -> None:
    with pytest.raises(TypeError, match="uds"):
        SafeTransport(uds="/tmp/x.sock")
    with pytest.raises(TypeError, match="proxy"):
        AsyncSafeTransport(proxy="http://127.0.0.1:1")


def _certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for `name`: the server's context and a client's that trusts it."""
    cert_path, key_path = certificates.self_signed(tmp_path, name, ca=True)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert_path, key_path)
    client_side = ssl.create_default_context(cafile=str(cert_path))
    return server_side, client_side


def test_https_keeps_the_name_for_sni_and_the_certificate_check(tmp_path: Path) -> None:
    server_tls, client_tls = _certificate(tmp_path, "cove.test")
    with LoopbackServer({"/": text("over tls")}, tls=server_tls) as server:

        def resolver(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        with safe_client(resolver=resolver, allow_private=LOOPBACK, verify=client_tls) as client:
            assert client.get(f"https://cove.test:{server.port}/").text == "over tls"
            assert server.sni == ["cove.test"]
            # A name the certificate does not cover fails the check, though the address is the same.
            with pytest.raises(httpx.ConnectError, match=r"certificate|hostname"):
                client.get(f"https://other.test:{server.port}/")


def test_the_async_transport_refuses_and_pins_the_same_way(server: LoopbackServer) -> None:
    async def scenario() -> None:
        async with async_safe_client() as refusing:
            with pytest.raises(UnsafeUrl, match="loopback"):
                await refusing.get(f"http://2130706433:{server.port}/")
        resolver = FlippingResolver("127.0.0.1", "127.0.0.2")
        async with async_safe_client(resolver=resolver, allow_private=LOOPBACK) as client:
            assert (await client.get(f"http://flip.test:{server.port}/")).text == "secret"
            with pytest.raises(UnsafeUrl, match=r"127\.0\.0\.2"):
                await client.get(f"http://flip.test:{server.port}/")

    anyio.run(scenario)


def test_checked_addresses_for_callers_with_their_own_socket() -> None:
    assert checked_addresses("93.184.215.14", 443) == (ipaddress.ip_address("93.184.215.14"),)
    with pytest.raises(UnsafeUrl):
        checked_addresses("127.0.0.1", 80)
    with pytest.raises(UnsafeUrl):
        checked_addresses("localhost", 80)
