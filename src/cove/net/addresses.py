"""Which addresses and URLs a URL tool may reach: public unicast only, over http or https.

The rule is written as tables of refused networks, each with the reason a person reads, so it does
not move with the Python version (`ipaddress.is_global` changed in 3.11.10 and 3.12.4). An IPv6
address that carries an IPv4 one (mapped, compatible, NAT64, 6to4) is judged by the IPv4 it carries,
and IPv6 is public only inside 2000::/3, the block handed out for global unicast.

Hosts are read the way libc reads them: `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` are all
127.0.0.1 to `inet_aton` (and so to `getaddrinfo`), so they are all loopback here too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass

import httpx

from ..errors import CoveError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


class UnsafeUrl(CoveError):
    """A URL a tool may not fetch: not http(s), credentials in it, or a host that is not public."""

    status = 403


def _table(rows: list[tuple[str, str]]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), reason) for net, reason in rows)


#: IPv4 networks that are not the public internet, and why (RFC 6890 and its updates).
REFUSED_V4 = _table(
    [
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (where cloud metadata services live)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved for IETF protocols"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.31.196.0/24", "reserved (AS112)"),
        ("192.52.193.0/24", "reserved (AMT)"),
        ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
        ("192.168.0.0/16", "private"),
        ("192.175.48.0/24", "reserved (AS112)"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (and broadcast)"),
    ]
)

#: IPv6 networks refused inside 2000::/3 (everything outside it is refused as well).
REFUSED_V6 = _table(
    [
        ("2001::/32", "Teredo tunnel"),
        ("2001:2::/48", "benchmarking"),
        ("2001:10::/28", "reserved (ORCHID)"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "reserved for IETF protocols"),
        ("3fff::/20", "documentation"),
    ]
)

#: IPv6 outside 2000::/3, named where a name helps the person reading the refusal.
NAMED_V6 = _table(
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("5f00::/16", "reserved (SRv6)"),
        ("fc00::/7", "unique-local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (private)"),
        ("ff00::/8", "multicast"),
        ("::/8", "reserved"),
    ]
)

_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_COMPATIBLE_V6 = ipaddress.ip_network("::/96")  # ::a.b.c.d, the deprecated IPv4-compatible form
_NAT64_V6 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the last 32 bits are IPv4


def refusal(address: IPAddress) -> str | None:
    """Why `address` is not public (a phrase like "loopback"), or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        return _refusal_v6(address)
    for network, reason in REFUSED_V4:
        if address in network:
            return reason
    return None


def _refusal_v6(address: ipaddress.IPv6Address) -> str | None:
    address = ipaddress.IPv6Address(int(address))  # drop a %zone: it changes the link, not the address
    embedded = embedded_ipv4(address)
    if embedded is not None:
        inner = refusal(embedded)
        return None if inner is None else f"{inner} (IPv4 {embedded} inside IPv6)"
    if address not in _GLOBAL_UNICAST_V6:
        for network, reason in NAMED_V6:
            if address in network:
                return reason
        return "not global unicast IPv6"
    for network, reason in REFUSED_V6:
        if address in network:
            return reason
    return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped, compatible, NAT64 or 6to4; else None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _COMPATIBLE_V6 and int(address) > 1:  # :: and ::1 are themselves, not IPv4
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64_V6:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def is_public(address: IPAddress, allow: Collection[IPAddress | IPNetwork] = ()) -> bool:
    """True for a public unicast address, or one `allow` names (a test's loopback fake)."""
    return refusal(address) is None or allowed(address, allow)


def allowed(address: IPAddress, allow: Collection[IPAddress | IPNetwork]) -> bool:
    plain = ipaddress.IPv6Address(int(address)) if isinstance(address, ipaddress.IPv6Address) else address
    for entry in allow:
        if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
            if plain.version == entry.version and plain in entry:
                return True
        elif plain == entry:
            return True
    return False


def parse_ip(host: str) -> IPAddress | None:
    """The address a host names literally, as libc reads it; None when the host is a name.

    IPv6 may come in brackets and with a zone. IPv4 takes every form `inet_aton` takes: one to
    four parts, each decimal, octal (leading 0) or hex (0x), the last part filling the bits left.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return parse_ipv4(text)


def parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """`inet_aton`'s reading of `text` (`127.1`, `0x7f000001`, `017700000001`), or None."""
    if text.endswith("."):
        # glibc refuses it, but a DNS resolver may not: read it as the number, which errs on refusing
        text = text[:-1]
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_aton_part(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    values = [n for n in numbers if n is not None]
    *leading, last = values
    if any(n > 0xFF for n in leading) or last >= 1 << (8 * (5 - len(values))):
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _aton_part(part: str) -> int | None:
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits or not set(digits) <= _DIGITS[base]:
        return None
    return int(digits, base)


_DIGITS = {8: set("01234567"), 10: set("0123456789"), 16: set("0123456789abcdefABCDEF")}


@dataclass(frozen=True)
class Target:
    """Where a URL points: its scheme, host (as written, lower case), port and literal address."""

    scheme: str
    host: str
    port: int
    address: IPAddress | None

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def check_url(url: str | httpx.URL, allow: Collection[IPAddress | IPNetwork] = ()) -> Target:
    """The target of a URL a tool may fetch, or `UnsafeUrl` saying why it may not.

    This checks what the URL itself says (scheme, credentials, a literal address); a host name is
    checked when it is resolved, by `cove.net.safe_transport`, which connects only to what it checked.
    """
    target = url_target(url)
    if target.address is not None:
        check_address(target.address, target.host, allow)
    return target


def url_target(url: str | httpx.URL) -> Target:
    """Scheme, host, port and literal address of a URL; `UnsafeUrl` unless http(s) without credentials."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:  # IDNA errors are ValueErrors
        raise UnsafeUrl(f"{_shown(url)} is not a valid URL ({exc})") from None
    if parsed.scheme not in SCHEMES:
        scheme = parsed.scheme or "no scheme"
        raise UnsafeUrl(f"only http:// and https:// URLs can be fetched, not {scheme} ({_shown(url)})")
    if parsed.userinfo:
        raise UnsafeUrl(f"a URL with a user name or password in it is not fetched ({_shown(url)})")
    host = parsed.raw_host.decode("ascii", "replace").lower()  # IDNA-encoded: what DNS is asked
    if not host:
        raise UnsafeUrl(f"{_shown(url)} names no host")
    address = parse_ip(host)
    if address is None and not _HOST_NAME.fullmatch(host):
        # httpx lets %20 and other escapes through into the host; no resolver should see them
        raise UnsafeUrl(f"{_shown(url)} is not a valid URL (its host has characters no host name has)")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise UnsafeUrl(f"{_shown(url)} has port {port}, outside 1-65535")
    return Target(parsed.scheme, host, port, address)


def check_address(address: IPAddress, host: str, allow: Collection[IPAddress | IPNetwork] = ()) -> None:
    """Raise `UnsafeUrl` unless `address` (what `host` resolved to) is public or allowed."""
    reason = refusal(address)
    if reason is None or allowed(address, allow):
        return
    if parse_ip(host) != address:
        what = f"{host} resolves to {address}, which is"
    elif host.strip("[]") != str(address):
        what = f"{host} is {address}, which is"  # 2130706433, 0x7f.1: say what the number means
    else:
        what = f"{address} is"
    raise UnsafeUrl(f"{what} {reason}: URL tools reach only public internet addresses")


def _shown(url: object) -> str:
    """A URL for an error message: quoted, short, without control characters."""
    text = str(url)
    text = text if len(text) <= 200 else text[:200] + "…"
    return ascii(text) if not text.isprintable() else repr(text)
