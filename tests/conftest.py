"""Shared fixtures: every test gets its own COVE_HOME; the real model is imported once a session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeEngine
from gguf_writer import write_gguf

from cove.config import Settings
from cove.library.local import Cove


@pytest.fixture(autouse=True)
def cove_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tests never touch the user's real store."""
    home = tmp_path / "cove-home"
    monkeypatch.setenv("COVE_HOME", str(home))
    # Port 1 refuses at once: the CLI never finds (and never uses) a developer's running server.
    monkeypatch.setenv("COVE_HOST", "127.0.0.1:1")
    for name in ("COVE_API_KEYS", "COVE_ORIGINS", "HF_TOKEN", "COVE_HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
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
