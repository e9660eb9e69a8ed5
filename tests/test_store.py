"""Tests for the model store: names, digests, blobs, manifests, and what bad input leaves behind."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gguf_writer import DEFAULT_METADATA, make_gguf, write_gguf

from cove.config import Settings
from cove.errors import DigestMismatch, DiskFull, InvalidModelFile, InvalidName, ModelNotFound
from cove.library.local import Cove
from cove.store import blobs as blobs_module
from cove.store.atomic import atomic_write_bytes
from cove.store.blobs import Blobs
from cove.store.models import ModelStore
from cove.store.names import ModelName, parse_digest, parse_name
from cove.store.pull import pull

HOSTILE_TEMPLATE = "{{{{ cycler.__init__.__globals__.os.popen('touch {target}').read() }}}}"


@pytest.fixture
def store(cove_home: Path) -> ModelStore:
    return ModelStore(cove_home)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(folder: Path) -> list[str]:
    """Every file below `folder` (hidden temp files included), as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name", "tag"),
    [
        ("gemma3:270m", "gemma3", "270m"),
        ("hf.co/owner/repo:q4_k_m", "hf.co/owner/repo", "q4_k_m"),
        ("tiny", "tiny", "latest"),
        ("Gemma3:270M", "gemma3", "270m"),
        ("HF.co/Owner/Repo:Q4_K_M", "hf.co/owner/repo", "q4_k_m"),
        ("  smollm2:135m \n", "smollm2", "135m"),
        ("a/b/c/d:x", "a/b/c/d", "x"),
        ("my_model-2.5:v1.0", "my_model-2.5", "v1.0"),
    ],
)
def test_parse_name_accepts(raw: str, name: str, tag: str) -> None:
    parsed = parse_name(raw)
    assert parsed == ModelName(name, tag)
    assert str(parsed) == f"{name}:{tag}"
    assert parse_name(str(parsed)) == parsed  # the canonical form round-trips


@pytest.mark.parametrize(
    "raw",
    [
        "../../x",
        "a/../b",
        "..",
        ".",
        "x:..",
        "a\x00b",
        "tiny\x00:latest",
        "..\\..\\x",
        "C:\\x",
        "a\\b",
        "/etc/passwd",
        "/abs:tag",
        "a/b/c/d/e",
        "",
        "   ",
        "a//b",
        "-x",
        "x:",
        "x:-tag",
        "a\n/b",
        "a\n:b",
        "a b",
        "gemma3:270m:extra",
        "x" * 81,
        "x:" + "t" * 129,
    ],
)
def test_parse_name_rejects(raw: str) -> None:
    with pytest.raises(InvalidName) as info:
        parse_name(raw)
    assert "\n" not in str(info.value)  # one line, even when the name held a newline


def test_parse_name_rejects_non_strings() -> None:
    with pytest.raises(InvalidName):
        parse_name(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "hexdigest"),
    [
        ("sha256:" + "ab" * 32, "ab" * 32),
        ("sha256-" + "0" * 64, "0" * 64),
        ("SHA256:" + "AB" * 32, "ab" * 32),
    ],
)
def test_parse_digest_accepts(raw: str, hexdigest: str) -> None:
    assert parse_digest(raw) == hexdigest


@pytest.mark.parametrize(
    "raw",
    [
        "sha256:../x",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "G" * 64,
        "sha256:" + "Z" * 64,
        "sha256:" + "a" * 63 + "\x00",
        "sha256:\x00" + "a" * 64,
        "sha256:" + "a" * 32 + "/" + "a" * 31,
        "md5:" + "a" * 64,
        "a" * 64,
        "sha256:",
        "",
    ],
)
def test_parse_digest_rejects(raw: str) -> None:
    with pytest.raises(InvalidName):
        parse_digest(raw)


# -- importing bad files ---------------------------------------------------------------------


def _bad_files() -> dict[str, bytes]:
    good = make_gguf()
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "header only": good[:12],
        "bad magic": b"GGUX" + good[4:],
        "not gguf": b"<html><body>404 Not Found</body></html>\n" * 20,
        "zip": b"PK\x03\x04" + bytes(200),
    }


@pytest.mark.parametrize("kind", list(_bad_files()))
def test_import_bad_file_adds_nothing(store: ModelStore, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(_bad_files()[kind])
    with pytest.raises(InvalidModelFile) as info:
        store.import_gguf(path, "bad", source="test")
    assert "\n" not in str(info.value)
    assert store.list() == []
    assert not store.has("bad")
    assert files_under(store.blobs.root) == []  # no blob, no partial, no temp file
    assert files_under(store.manifests) == []


def test_import_missing_file(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile):
        store.import_gguf(tmp_path / "nope.gguf", "nope", source="test")
    assert store.list() == []


def test_import_refuses_hostile_chat_template(store: ModelStore, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    metadata = {**DEFAULT_METADATA, "tokenizer.chat_template": HOSTILE_TEMPLATE.format(target=target)}
    path = write_gguf(tmp_path / "evil.gguf", metadata)
    with pytest.raises(InvalidModelFile) as info:
        store.import_gguf(path, "evil", source="test")
    assert "template" in str(info.value)
    assert not target.exists()
    assert store.list() == []
    assert files_under(store.blobs.root) == []


def test_import_with_wrong_expected_digest(store: ModelStore, tiny: Path) -> None:
    with pytest.raises(DigestMismatch):
        store.import_gguf(tiny, "tiny", source="test", expected="0" * 64)
    assert store.list() == []
    assert files_under(store.blobs.root) == []


def test_import_with_right_expected_digest(store: ModelStore, tiny: Path) -> None:
    digest = sha256(tiny.read_bytes())
    manifest = store.import_gguf(tiny, "tiny", source="test", expected=digest)
    assert manifest.digest == digest


# -- list, show, cp, rm ----------------------------------------------------------------------


def test_import_list_show(store: ModelStore, tiny: Path) -> None:
    manifest = store.import_gguf(tiny, "Tiny:V1", source="test")
    assert manifest.name == "tiny:v1"
    assert manifest.digest == sha256(tiny.read_bytes())
    assert manifest.size == tiny.stat().st_size
    assert store.blobs.path(manifest.digest).read_bytes() == tiny.read_bytes()
    shown = store.get("tiny:v1")
    assert shown == manifest
    assert shown.info["architecture"] == "llama"
    assert shown.info["context_length"] == 256
    assert shown.modified
    assert [m.name for m in store.list()] == ["tiny:v1"]
    assert store.has("TINY:v1")
    with pytest.raises(ModelNotFound):
        store.get("tiny")  # :latest is another name


def test_copy_then_remove_keeps_shared_blob(store: ModelStore, tiny: Path) -> None:
    original = store.import_gguf(tiny, "tiny", source="test")
    copied = store.copy("tiny", "hf.co/me/copy:q8")
    assert copied.digest == original.digest
    assert copied.name == "hf.co/me/copy:q8"
    assert (store.manifests / "hf.co" / "me" / "copy" / "q8.json").is_file()
    assert [m.name for m in store.list()] == ["hf.co/me/copy:q8", "tiny:latest"]
    assert store.blobs.all_digests() == {original.digest}

    removed = store.remove("tiny")
    assert removed.name == "tiny:latest"
    assert store.blobs.exists(original.digest)  # the copy still uses it
    assert [m.name for m in store.list()] == ["hf.co/me/copy:q8"]

    store.remove("hf.co/me/copy:q8")
    assert store.list() == []
    assert files_under(store.blobs.root) == []
    assert list(store.manifests.iterdir()) == []  # empty name folders are pruned


def test_remove_deletes_only_unused_blobs(store: ModelStore, tmp_path: Path) -> None:
    first = store.import_gguf(write_gguf(tmp_path / "a.gguf"), "a", source="test")
    other_meta = {**DEFAULT_METADATA, "general.name": "other"}
    second = store.import_gguf(write_gguf(tmp_path / "b.gguf", other_meta), "b", source="test")
    assert first.digest != second.digest
    store.remove("a")
    assert not store.blobs.exists(first.digest)
    assert store.blobs.exists(second.digest)
    assert store.get("b") == second


def test_remove_and_copy_unknown(store: ModelStore) -> None:
    with pytest.raises(ModelNotFound):
        store.remove("nothing")
    with pytest.raises(ModelNotFound):
        store.copy("nothing", "else")
    assert store.list() == []


def test_reimport_replaces_name(store: ModelStore, tmp_path: Path) -> None:
    store.import_gguf(write_gguf(tmp_path / "a.gguf"), "m", source="first")
    other = write_gguf(tmp_path / "b.gguf", {**DEFAULT_METADATA, "general.name": "b"})
    second = store.import_gguf(other, "m", source="second")
    assert store.get("m") == second
    assert len(store.list()) == 1


# -- manifests: atomic writes, damage, paths -------------------------------------------------


@pytest.mark.parametrize(
    ("crash", "raised"),
    [
        (OSError(errno.EIO, "I/O error"), OSError),
        (OSError(errno.ENOSPC, "No space left on device"), DiskFull),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
)
def test_manifest_write_is_atomic(
    store: ModelStore,
    tiny: Path,
    monkeypatch: pytest.MonkeyPatch,
    crash: BaseException,
    raised: type[BaseException],
) -> None:
    before = store.import_gguf(tiny, "tiny", source="before")
    path = store.manifest_path(parse_name("tiny"))
    old_bytes = path.read_bytes()

    def crash_on_replace(*_: Any) -> None:
        raise crash

    monkeypatch.setattr(os, "replace", crash_on_replace)
    with pytest.raises(raised):
        store.save(replace(before, source="after", modified=""))
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes
    assert store.get("tiny") == before
    assert files_under(store.manifests) == ["tiny/latest.json"]  # no temp file left


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert files_under(tmp_path) == ["deep/file.json"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'"a string"', b"[1, 2]", b"42", b'{"name": "x"}', b"\xff\xfe\x00", b""],
)
def test_damaged_manifest_is_skipped(store: ModelStore, tiny: Path, content: bytes) -> None:
    store.import_gguf(tiny, "tiny", source="test")
    damaged = store.manifests / "broken" / "latest.json"
    damaged.parent.mkdir()
    damaged.write_bytes(content)
    assert [m.name for m in store.list()] == ["tiny:latest"]
    with pytest.raises(InvalidModelFile) as info:
        store.get("broken")
    assert "cove rm broken:latest" in str(info.value)
    # ...and it can be removed, which does not touch the good model's blob.
    store.remove("broken")
    assert not damaged.exists()
    assert [m.name for m in store.list()] == ["tiny:latest"]
    assert store.blobs.exists(store.get("tiny").digest)


@pytest.mark.parametrize(
    "bad",
    ["../../outside", "a/../../outside", "..", "/tmp/outside", "..\\outside", "x:../../y", "a\x00b"],
)
def test_path_like_names_never_write_outside(store: ModelStore, tiny: Path, tmp_path: Path, bad: str) -> None:
    store.import_gguf(tiny, "tiny", source="test")
    before = files_under(tmp_path)
    with pytest.raises(InvalidName):
        store.import_gguf(tiny, bad, source="test")
    with pytest.raises(InvalidName):
        store.copy("tiny", bad)
    with pytest.raises(InvalidName):
        store.get(bad)
    with pytest.raises(InvalidName):
        store.remove(bad)
    assert files_under(tmp_path) == before


def test_manifest_path_refuses_escape_even_for_unchecked_names(store: ModelStore) -> None:
    """Defence in depth: a ModelName built without parse_name still cannot leave the store."""
    with pytest.raises(InvalidName):
        store.manifest_path(ModelName("../../evil", "x"))


def test_symlinked_name_folder_cannot_redirect_writes(store: ModelStore, tiny: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.manifests / "sneaky").symlink_to(outside, target_is_directory=True)
    store.import_gguf(tiny, "tiny", source="test")
    with pytest.raises(InvalidName):
        store.copy("tiny", "sneaky/model")
    assert list(outside.iterdir()) == []


# -- blobs -----------------------------------------------------------------------------------


def test_blob_digest_mismatch_leaves_nothing(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path / "blobs")
    with pytest.raises(DigestMismatch) as info:
        blobs.add_stream([b"hello ", b"world"], expected=sha256(b"something else"))
    assert "nothing was stored" in str(info.value)
    assert files_under(blobs.root) == []


def test_blob_add_is_content_addressed(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path / "blobs")
    digest = blobs.add_stream([b"hello ", b"world"])
    assert digest == sha256(b"hello world")
    assert blobs.path(digest).read_bytes() == b"hello world"
    assert blobs.add_stream([b"hello world"], expected=digest) == digest
    assert files_under(blobs.root) == [f"sha256-{digest}"]


def test_blob_path_refuses_bad_digest(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path / "blobs")
    for bad in ("../x", "a" * 63, "../../" + "a" * 58):
        with pytest.raises(InvalidName):
            blobs.path(bad)


class _FullDisk:
    """A file whose writes fail as a full disk does."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, _: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def full_disk_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    """`open` for the blobs module: reading works, files opened for writing cannot grow."""
    handle = open(path, mode, *args, **kwargs)  # noqa: SIM115
    return handle if "r" in mode else _FullDisk(handle)


def test_blob_disk_full_on_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = Blobs(tmp_path / "blobs")
    monkeypatch.setattr(blobs_module, "open", full_disk_open, raising=False)
    data = b"x" * 1000
    with pytest.raises(DiskFull) as info:
        blobs.add_stream([data], expected=sha256(data))
    message = str(info.value)
    assert "disk full" in message and "\n" not in message
    assert files_under(blobs.root) == []


def test_blob_disk_full_on_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = Blobs(tmp_path / "blobs")

    def no_space(_: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blobs_module.os, "fsync", no_space)
    with pytest.raises(DiskFull):
        blobs.add_stream([b"abc"])
    monkeypatch.undo()
    assert files_under(blobs.root) == []


def test_import_on_full_disk_adds_nothing(
    store: ModelStore, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blobs_module, "open", full_disk_open, raising=False)
    with pytest.raises(DiskFull):
        store.import_gguf(tiny, "tiny", source="test")
    monkeypatch.undo()
    assert store.list() == []
    assert files_under(store.blobs.root) == []


def test_partial_blob_resumes(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path / "blobs")
    data = os.urandom(5000)
    digest = sha256(data)
    first = blobs.partial(digest)
    first.write(data[:2000])
    first.abandon(keep=True)
    assert not blobs.exists(digest)  # only a partial, never the final name
    second = blobs.partial(digest, resume=True)
    assert second.size == 2000
    second.write(data[2000:])
    assert second.finish() == digest
    assert blobs.path(digest).read_bytes() == data
    assert files_under(blobs.root) == [f"sha256-{digest}"]


def test_partial_blob_with_wrong_bytes_is_removed(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path / "blobs")
    digest = sha256(b"right")
    partial = blobs.partial(digest)
    partial.write(b"wrong")
    with pytest.raises(DigestMismatch):
        partial.finish()
    assert files_under(blobs.root) == []


def test_collect_garbage_keeps_partials_and_used_blobs(store: ModelStore, tiny: Path) -> None:
    used = store.import_gguf(tiny, "tiny", source="test").digest
    orphan = store.blobs.add_stream([b"orphan"])
    partial = store.blobs.partial(sha256(b"in flight"))
    partial.write(b"in fl")
    partial.abandon(keep=True)
    store.collect_garbage()
    assert store.blobs.all_digests() == {used}
    assert not store.blobs.exists(orphan)
    assert partial.path.exists()  # a resumable download is not garbage


def test_manifest_json_shape(store: ModelStore, tiny: Path) -> None:
    manifest = store.import_gguf(tiny, "tiny", source="test")
    body = json.loads(store.manifest_path(parse_name("tiny")).read_text())
    assert body["schema"] == 1
    assert body["name"] == "tiny:latest"
    assert body["digest"] == manifest.digest


# -- a mistyped name is answered with the name it resembles ----------------------------------------


def not_found(store: ModelStore, name: str) -> str:
    with pytest.raises(ModelNotFound) as info:
        store.get(name)
    return str(info.value)


def test_typo_of_a_catalog_name_suggests_it(store: ModelStore) -> None:
    message = not_found(store, "smolm2:135m")
    assert "did you mean 'smollm2:135m'?" in message and "`cove pull smollm2:135m`" in message
    assert "cove pull smolm2" not in message  # never advice that cannot work
    assert "'smollm2:135m'" in not_found(store, "smolm2")  # the tag left off


def test_typo_of_a_stored_name_suggests_it(store: ModelStore, tiny: Path) -> None:
    store.import_gguf(tiny, "my-model", source="test")
    message = not_found(store, "my-modle")
    assert "did you mean 'my-model:latest'?" in message and "cove list" in message
    assert "cove pull" not in message


def test_catalog_model_not_yet_pulled_says_how(store: ModelStore) -> None:
    assert not_found(store, "qwen2.5:0.5b") == (
        "model 'qwen2.5:0.5b' is not in the store yet: `cove pull qwen2.5:0.5b` fetches it"
    )


def test_nothing_close_gives_no_guess_and_no_false_advice(store: ModelStore) -> None:
    message = not_found(store, "zzqx-nothing")
    assert "did you mean" not in message and "cove pull zzqx" not in message
    assert "cove list --available" in message


def test_every_door_gets_the_suggestion(fake_cove: Cove, cove_home: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"did you mean 'tiny:latest'\?"):
        fake_cove.model("tinny")
    with pytest.raises(ModelNotFound, match=r"did you mean 'smollm2:135m'\? see `cove list --available`"):
        pull(fake_cove.store, "smolm2:135m", Settings(home=cove_home))


def test_manifest_digest_names_the_model_not_the_file(store: ModelStore, tiny: Path) -> None:
    base = store.import_gguf(tiny, "base", source="test")
    copy = store.copy("base", "other-name")
    prompted = store.save(
        replace(base, name="prompted", recipe={"base": "base:latest", "system": "Be brief."})
    )
    assert copy.manifest_digest == base.manifest_digest  # name and time are not the model
    assert prompted.digest == base.digest and prompted.manifest_digest != base.manifest_digest
    assert store.get("prompted").manifest_digest == prompted.manifest_digest  # stable across a reload
    assert len(base.manifest_digest) == 64 and base.manifest_digest != base.digest
