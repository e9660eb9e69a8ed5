"""The URL guard as a function: which hosts and URLs a URL tool may reach (BAD-INPUTS item 24)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from cove.net.addresses import UnsafeUrl, check_url, embedded_ipv4, is_public, parse_ip, parse_ipv4, refusal

# Host spellings libc reads as an address, and the address it reads.
SPELLINGS = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),  # decimal
    ("0177.0.0.1", "127.0.0.1"),  # octal
    ("0177.0000.0000.0001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),  # hex, short form
    ("0x7F.0x0.0x0.0x1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("127.1", "127.0.0.1"),  # a.b: b fills 24 bits
    ("127.0.1", "127.0.0.1"),  # a.b.c: c fills 16 bits
    ("0", "0.0.0.0"),
    ("0.0.0.0", "0.0.0.0"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("2852039166", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"),
    ("10.1", "10.0.0.1"),
    ("192.168.0x1.1", "192.168.1.1"),
    ("8.8.8.8", "8.8.8.8"),
    ("134744072", "8.8.8.8"),
]

# Not an IPv4 address to inet_aton: a host name for the resolver (whose answer is checked then).
NOT_IPV4 = ["256.0.0.1", "1.2.3.4.5", "08.0.0.1", "0x", "0x100.1", "1.16777216", "", "a.b.c.d", "1..2", "0xg"]


@pytest.mark.parametrize(("host", "address"), SPELLINGS)
def test_libc_spellings_of_an_address_are_read_as_that_address(host: str, address: str) -> None:
    assert parse_ip(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", [h for h, _ in SPELLINGS] + NOT_IPV4)
def test_the_reading_is_the_one_glibc_inet_aton_makes(host: str) -> None:
    try:
        expected = ipaddress.IPv4Address(socket.inet_aton(host)) if host else None
    except OSError:
        expected = None
    assert parse_ipv4(host) == expected


@pytest.mark.parametrize("host", NOT_IPV4)
def test_other_text_is_a_name_not_an_address(host: str) -> None:
    assert parse_ip(host) is None


REFUSED = [
    # (address, the word the refusal uses)
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.255", "carrier-grade NAT"),
    ("169.254.169.254", "link-local"),
    ("192.0.0.8", "IETF"),
    ("192.0.2.1", "TEST-NET-1"),
    ("198.51.100.7", "TEST-NET-2"),
    ("203.0.113.9", "TEST-NET-3"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("192.88.99.1", "6to4 relay"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("0:0:0:0:0:0:0:1", "loopback"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd00:c0fe::2", "unique-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("2001::1", "Teredo"),
    ("100::1", "discard"),
    ("64:ff9b:1::1", "NAT64"),
    # IPv4-mapped IPv6, in its spellings
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("0:0:0:0:0:ffff:127.0.0.1", "loopback"),
    ("0000:0000:0000:0000:0000:FFFF:7F00:0001", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:a9fe:a9fe", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::ffff:8.8.8.8%eth0", None),  # mapped public: public (checked below), the zone changes nothing
    # IPv4-compatible (deprecated) IPv6
    ("::127.0.0.1", "loopback"),
    ("::7f00:1", "loopback"),
    ("::169.254.169.254", "link-local"),
    ("::0.0.0.2", "unspecified"),
    # NAT64 (well-known prefix) carrying a private IPv4
    ("64:ff9b::127.0.0.1", "loopback"),
    ("64:ff9b::a00:1", "private"),
    # 6to4 carrying a private IPv4
    ("2002:7f00:1::", "loopback"),
    ("2002:c0a8:101::1", "private"),
    ("2002:a9fe:a9fe::", "link-local"),
    # IPv4-translated (SIIT) and other IPv6 outside global unicast
    ("::ffff:0:127.0.0.1", "reserved"),
    ("::ffff:0:808:808", "reserved"),
    ("4000::1", "not global unicast"),
]


@pytest.mark.parametrize(("address", "word"), [row for row in REFUSED if row[1] is not None])
def test_non_public_addresses_are_refused_with_their_reason(address: str, word: str) -> None:
    ip = ipaddress.ip_address(address)
    reason = refusal(ip)
    assert reason is not None and word in reason
    assert not is_public(ip)


PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below carrier-grade NAT
    "100.128.0.0",  # just above it
    "172.15.255.255",
    "172.32.0.0",
    "192.169.0.1",
    "198.20.0.1",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8",
    "::ffff:8.8.8.8%eth0",
    "64:ff9b::808:808",  # NAT64 to a public IPv4
    "2002:808:808::1",  # 6to4 from a public IPv4
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::7f00:1", "127.0.0.1"),
        ("64:ff9b::7f00:1", "127.0.0.1"),
        ("2002:7f00:1::", "127.0.0.1"),
        ("::1", None),
        ("::", None),
        ("2606:4700::1", None),
    ],
)
def test_the_ipv4_an_ipv6_address_carries(address: str, inner: str | None) -> None:
    found = embedded_ipv4(ipaddress.IPv6Address(address))
    assert found == (None if inner is None else ipaddress.IPv4Address(inner))


def test_the_test_switch_lets_named_addresses_through_and_nothing_else() -> None:
    allow = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_network("10.200.0.0/24")]
    assert is_public(ipaddress.ip_address("127.0.0.1"), allow)
    assert is_public(ipaddress.ip_address("10.200.0.9"), allow)
    assert not is_public(ipaddress.ip_address("127.0.0.2"), allow)
    assert not is_public(ipaddress.ip_address("10.201.0.1"), allow)
    # The mapped spelling is another address; allowing 127.0.0.1 does not allow it.
    assert not is_public(ipaddress.ip_address("::ffff:127.0.0.1"), allow)


REFUSED_URLS = [
    # BAD-INPUTS item 24, each as a URL tool would be given it
    ("http://127.0.0.1/", "loopback"),
    ("http://127.0.0.1:8080/admin", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::1]:11435/api/tags", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "loopback"),
    ("http://[::127.0.0.1]/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://2130706433/", "loopback"),
    ("http://0177.0.0.1/", "not a valid URL"),  # httpx refuses a dotted quad with leading zeros
    ("http://0177.1/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://2852039166/", "link-local"),
    ("HTTP://127.0.0.1/", "loopback"),
    ("https://10.0.0.1/", "private"),
    ("https://[fd00::1]/", "unique-local"),
    ("http://[ff02::1]/", "multicast"),
    ("http://224.0.0.251/", "multicast"),
    ("http://100.100.100.200/", "carrier-grade NAT"),  # Alibaba's metadata address
    ("http://192.0.0.192/", "IETF"),  # Oracle's metadata address
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
    # schemes other than http(s)
    ("file:///etc/passwd", "only http:// and https://"),
    ("file://localhost/etc/passwd", "only http:// and https://"),
    ("gopher://127.0.0.1:70/_x", "only http:// and https://"),
    ("ftp://example.com/", "only http:// and https://"),
    ("dict://example.com:11211/", "only http:// and https://"),
    ("javascript:alert(1)", "only http:// and https://"),
    ("data:text/html,hi", "only http:// and https://"),
    ("//example.com/", "only http:// and https://"),
    ("example.com", "only http:// and https://"),
    # credentials: the classic "which host is it?" tricks
    ("http://example.com@127.0.0.1/", "user name or password"),
    ("http://127.0.0.1@example.com/", "user name or password"),
    ("http://user:pass@example.com/", "user name or password"),
    ("http://example.com\\@127.0.0.1/", "user name or password"),
    ("http://:@example.com/", "user name or password"),
    ("http://ex%61mple.com/", "not a valid URL"),
    ("http://127.0.0.1%2f@example.com/", "user name or password"),
    # no host, bad port, not a URL
    ("http:///x", "no host"),
    ("http:/127.0.0.1/", "no host"),
    ("http://127.0.0.1:99999/", "outside 1-65535"),
    ("http://exa mple.com/", "not a valid URL"),
]


@pytest.mark.parametrize(("url", "word"), REFUSED_URLS)
def test_urls_a_tool_may_not_fetch_are_refused_with_the_reason(url: str, word: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url(url)
    assert word in str(caught.value)
    assert caught.value.status == 403


def test_a_number_spelled_host_is_explained() -> None:
    with pytest.raises(UnsafeUrl, match=r"2130706433 is 127\.0\.0\.1, which is loopback"):
        check_url("http://2130706433/")


@pytest.mark.parametrize(
    ("url", "host", "port", "address"),
    [
        ("http://example.com/", "example.com", 80, None),
        ("https://Example.COM:8443/x?y#z", "example.com", 8443, None),
        ("https://93.184.215.14/", "93.184.215.14", 443, "93.184.215.14"),
        ("http://[2606:4700:4700::1111]:81/", "2606:4700:4700::1111", 81, "2606:4700:4700::1111"),
        ("http://134744072/", "134744072", 80, "8.8.8.8"),
        ("  https://example.com/  ", "example.com", 443, None),
        ("https://bücher.example/", "xn--bcher-kva.example", 443, None),
    ],
)
def test_urls_a_tool_may_fetch(url: str, host: str, port: int, address: str | None) -> None:
    target = check_url(url)
    assert target.scheme in ("http", "https")
    assert (target.host, target.port) == (host, port)
    assert target.address == (None if address is None else ipaddress.ip_address(address))


def test_a_host_name_is_left_for_the_resolver_check() -> None:
    # "localhost" is a name: the transport resolves it and refuses 127.0.0.1 (tests/test_safe_transport.py).
    assert check_url("http://localhost/").address is None
