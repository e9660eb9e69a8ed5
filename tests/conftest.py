"""Shared fixtures: every test gets its own COVE_HOME; the real model is imported once a session.

The whole session runs under the egress audit hook in strict mode (cove.net.audit): a test that
makes any connection off this machine that no gate permit allowed fails, and the session fails
at its end if anything but a named pull (a `network` test's pip download) was let out, here or
in a cove process a test started. That is the check behind the README's "does it phone home?".
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine
from gguf_writer import write_gguf

from cove.config import Settings
from cove.library.local import Cove
from cove.net import audit
from cove.net import gate as egress_gate


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "egress_exempt(*targets): test networks or names the egress audit hook lets through"
    )
    # Cove processes that tests start (cove serve, the CLI) report what their hook saw here.
    fd, report = tempfile.mkstemp(prefix="cove-egress-", suffix=".jsonl")
    os.close(fd)
    os.environ[audit.REPORT_ENV] = report
    audit.install("strict")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if anything but a named pull left the machine, in any cove process."""
    report = os.environ.get(audit.REPORT_ENV, "")
    theirs = [audit.Seen.from_dict(line) for line in _reported(report) if line.get("pid") != os.getpid()]
    leaks = audit.outside_named_pulls([*audit.STATE.seen, *theirs])
    if report:
        Path(report).unlink(missing_ok=True)
    if leaks:
        print(f"\negress check: {len(leaks)} connection(s) off this machine outside named pulls:")
        for leak in leaks:
            print(f"  {leak}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _reported(path: str) -> list[dict[str, Any]]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(autouse=True)
def no_egress(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that reaches another machine without a gate permit fails; the gate it installed goes."""
    marker = request.node.get_closest_marker("egress_exempt")
    start = len(audit.STATE.violations)
    with audit.exempt(*(marker.args if marker else ())):
        yield
    egress_gate.uninstall()
    new = audit.STATE.violations[start:]
    if new:
        pytest.fail(f"the test reached the network outside the egress gate: {new}", pytrace=False)


@pytest.fixture(autouse=True)
def cove_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tests never touch the user's real store."""
    home = tmp_path / "cove-home"
    monkeypatch.setenv("COVE_HOME", str(home))
    # Port 1 refuses at once: the CLI never finds (and never uses) a developer's running server.
    monkeypatch.setenv("COVE_HOST", "127.0.0.1:1")
    for name in ("COVE_API_KEYS", "COVE_ORIGINS", "HF_TOKEN", "COVE_HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    # Drafting (on by default) may pick another token where a model is near a tie, since the
    # engine checks drafts in a batch; many tests compare two greedy answers, so drafting is off
    # unless a test turns it on (tests/test_speculative*.py do, and check the default).
    monkeypatch.setenv("COVE_DRAFT_NGRAM", "0")
    return home


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def fake_cove(cove_home: Path, engine: FakeEngine) -> Iterator[Cove]:
    """A Cove on the fake engine with a tiny valid GGUF stored as `tiny:latest`."""
    cove = Cove(Settings.from_env(), factory=engine)
    path = write_gguf(cove_home.parent / "tiny.gguf")
    cove.store.import_gguf(path, "tiny", source="test")
    yield cove
    cove.close()


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the real bundled gemma3:270m, imported once for the whole session."""
    home = tmp_path_factory.mktemp("model-home")
    Cove(Settings(home=home)).model("gemma3:270m")  # the bundled model imports on first use
    return home


@pytest.fixture
def real_home(model_home: Path, cove_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private COVE_HOME whose blobs are hard links to the session's imported model."""
    shutil.copytree(model_home, cove_home, copy_function=_link, dirs_exist_ok=True)
    return cove_home


def _link(src: str, dst: str) -> None:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)
