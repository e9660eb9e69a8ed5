"""Where a `pip download` will connect, read from pip's environment, so the gate can judge it first.

pip runs in its own process, out of the audit hook's sight: the gate checks (and the ledger
records) the index hosts before pip starts, and the Popen hook lets pip start only inside those
permits. pip's config files can name other indexes; COVE reads the PIP_* variables, the way cove's
own tests and most deployments set them, and falls back to PyPI's two hosts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

from .gate import Gate, Permit, current
from .policy import PULL

PYPI_HOSTS = (("pypi.org", 443), ("files.pythonhosted.org", 443))
#: pip given only local folders still needs a permit to start; it is recorded as loopback.
LOCAL = ("localhost", None)


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _urls(value: str | None) -> list[str]:
    return [part for part in (value or "").split() if part]


def _host(url: str) -> tuple[str, int | None] | None:
    """host and port of an http(s) URL; None for a local path or file: URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def pip_hosts(environ: Mapping[str, str] | None = None) -> list[tuple[str, int | None]]:
    """The hosts a `pip download` with this environment reaches (none: only local files)."""
    env = os.environ if environ is None else environ
    urls = _urls(env.get("PIP_FIND_LINKS"))
    if not _true(env.get("PIP_NO_INDEX")):
        index = env.get("PIP_INDEX_URL")
        urls += [*(_urls(index) or []), *_urls(env.get("PIP_EXTRA_INDEX_URL"))]
        if not index:
            return list(dict.fromkeys([*PYPI_HOSTS, *filter(None, map(_host, urls))]))
    return list(dict.fromkeys(filter(None, map(_host, urls))))


@contextmanager
def pip_permits(environ: Mapping[str, str] | None = None, gate: Gate | None = None) -> Iterator[Permit]:
    """Permits for every host pip will reach (EgressRefused, recorded, if one is refused).

    Yields the first: the caller counts the downloaded bytes on it.
    """
    gate = gate or current()
    hosts = pip_hosts(environ) or [LOCAL]
    with ExitStack() as stack:
        permits = [stack.enter_context(gate.allow(PULL, host, port)) for host, port in hosts]
        yield permits[0]
