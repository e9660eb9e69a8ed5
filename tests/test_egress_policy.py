"""The egress policy as a function: what may leave, to where, and the reason each answer gives."""

from __future__ import annotations

import pytest

from cove.net.pip import PYPI_HOSTS, pip_hosts
from cove.net.policy import NamedHost, Policy, ToolRule, decide, host_matches, is_loopback_host

SEARCH = ToolRule(True, ("search.example.org",))
FETCH = ToolRule(True, ("*.wikipedia.org",))
OFF = ToolRule(False, ("example.com",))
POLICY = Policy(
    tools={"web_search": SEARCH, "fetch_url": FETCH, "old": OFF, "empty": ToolRule(True, ())},
    remote_host="192.168.1.5",
    remote_port=11435,
)


@pytest.mark.parametrize(
    ("feature", "host", "port", "allowed", "reason"),
    [
        ("pull", "huggingface.co", 443, True, "asked for by name"),
        ("pull", "cas-bridge.xethub.hf.co", 443, True, "asked for by name"),
        ("tool:web_search", "search.example.org", 443, True, "on its allow-list"),
        ("tool:web_search", "SEARCH.Example.org.", 443, True, "on its allow-list"),
        ("tool:web_search", "evil.example", 443, False, "not on web_search's allow-list"),
        ("web_search", "search.example.org", 443, False, "not something cove may reach"),  # no prefix
        ("tool:fetch_url", "en.wikipedia.org", 443, True, "on its allow-list"),
        ("tool:fetch_url", "wikipedia.org", 443, True, "on its allow-list"),
        ("tool:fetch_url", "wikipedia.org.evil.example", 443, False, "allow-list"),
        ("tool:fetch_url", "notwikipedia.org", 443, False, "allow-list"),
        ("tool:old", "example.com", 443, False, "is off"),
        (
            "tool:never_enabled",
            "example.com",
            443,
            False,
            "cove tools enable never_enabled --allow example.com",
        ),
        ("tool:empty", "example.com", 443, False, "allow-list (empty)"),
        ("mcp:notes", "mcp.example", 443, False, "run `cove tools enable mcp:notes --allow mcp.example`"),
        ("notes", "mcp.example", 443, False, "not something cove may reach"),
        ("engine:remote", "192.168.1.5", 11435, True, "COVE_HOST"),
        ("engine:remote", "192.168.1.5", 22, False, "not the cove server"),
        ("engine:remote", "10.0.0.9", 11435, False, "not the cove server"),
        ("telemetry", "stats.example", 443, False, "not something cove may reach"),
        ("", "example.com", 80, False, "not something cove may reach"),
        ("telemetry", "127.0.0.1", 9, True, "loopback"),
        ("tool:never_enabled", "localhost", 80, True, "loopback"),
        ("tool:never_enabled", "[::1]", 80, True, "loopback"),
        ("tool:never_enabled", "app.localhost", 80, True, "loopback"),
    ],
)
def test_decide(feature: str, host: str, port: int, allowed: bool, reason: str) -> None:
    decision = decide(POLICY, feature, host, port)
    assert decision.allowed is allowed
    assert reason in decision.reason


def test_any_host_is_every_host_for_the_gate() -> None:
    """`--allow '*'`: the gate lets the tool reach any host; URL tools still reach public ones only."""
    policy = Policy(tools={"fetch_url": ToolRule(True, ("*",))})
    for host in ("example.com", "en.wikipedia.org", "93.184.215.14"):
        decision = decide(policy, "tool:fetch_url", host, 443)
        assert decision.allowed and "any host" in decision.reason
    assert not decide(policy, "tool:web_search", "example.com", 443).allowed  # that tool only
    assert host_matches("*", "anything.example")


def test_a_host_named_in_a_setting_needs_no_allow_list_but_the_tool_must_be_on() -> None:
    named = (NamedHost("tool:web_search", "searx.lan", "COVE_SEARXNG_URL"),)
    on = Policy(tools={"web_search": ToolRule(True, ())}, named=named)
    decision = decide(on, "tool:web_search", "SEARX.lan.", 8888)
    assert decision.allowed and "you named in COVE_SEARXNG_URL" in decision.reason
    assert not decide(on, "tool:web_search", "other.example", 443).allowed  # the name only
    assert not decide(on, "tool:fetch_url", "searx.lan", 8888).allowed  # for that tool only
    off = decide(Policy(named=named), "tool:web_search", "searx.lan", 8888)
    assert not off.allowed and "run `cove tools enable web_search`" in off.reason
    assert not decide(
        Policy(offline=True, tools=on.tools, named=named), "tool:web_search", "searx.lan", 1
    ).allowed


def test_offline_refuses_everything_off_the_machine_and_every_pull() -> None:
    offline = Policy(offline=True, tools={"web_search": SEARCH}, remote_host="192.168.1.5", remote_port=1)
    for feature, host, port in [
        ("pull", "huggingface.co", 443),
        ("pull", "127.0.0.1", 8080),  # offline means no download, even from a mirror on this machine
        ("tool:web_search", "search.example.org", 443),
        ("engine:remote", "192.168.1.5", 1),
    ]:
        decision = decide(offline, feature, host, port)
        assert not decision.allowed, (feature, host)
        assert "offline" in decision.reason
    # A tool's loopback server is still this machine.
    assert decide(offline, "tool:web_search", "127.0.0.1", 8888).allowed


def test_nothing_is_allowed_by_default() -> None:
    default = Policy()
    assert decide(default, "pull", "huggingface.co", 443).allowed  # only what was asked for by name
    for feature in ("tool:web_search", "tool:fetch_url", "mcp:x", "engine:remote", "update-check"):
        assert not decide(default, feature, "example.com", 443).allowed


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("example.com", "example.com", True),
        ("example.com", "EXAMPLE.com.", True),
        ("example.com", "www.example.com", False),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", True),
        ("*.example.com", "badexample.com", False),
        ("*.example.com", "example.com.evil", False),
    ],
)
def test_host_matches(pattern: str, host: str, matches: bool) -> None:
    assert host_matches(pattern, host) is matches


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("x.localhost", True),
        ("localhost.evil.example", False),
        ("10.0.0.1", False),
        ("0.0.0.0", True),  # connecting to the unspecified address reaches this machine
        ("::", True),
        ("::ffff:0.0.0.0", True),
        ("0.0.0.1", False),
        ("example.com", False),
        # libc's readings of 127.0.0.1: getaddrinfo and connect reach this machine with each
        ("2130706433", True),
        ("0x7f.1", True),
        ("127.1", True),
        ("0177.0.0.1", True),
        ("0x7f000001", True),
        ("127.1.", True),
        ("10.1", False),
        ("0x0a000001", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_pip_hosts_from_pip_environment() -> None:
    assert pip_hosts({}) == list(PYPI_HOSTS)
    assert pip_hosts({"PIP_INDEX_URL": "https://mirror.example:8443/simple"}) == [("mirror.example", 8443)]
    extra = pip_hosts({"PIP_EXTRA_INDEX_URL": "http://extra.example/simple"})
    assert extra == [*PYPI_HOSTS, ("extra.example", 80)]
    assert pip_hosts({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/srv/wheels"}) == []
    links = pip_hosts({"PIP_NO_INDEX": "yes", "PIP_FIND_LINKS": "https://wheels.example/ /local"})
    assert links == [("wheels.example", 443)]
