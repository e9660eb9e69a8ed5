"""Tests for cove.store.huggingface against a loopback fake: naming, choosing, resuming."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_hf import FakeHF

from cove.errors import DigestMismatch, DiskFull, InvalidName, ModelNotFound, PullError
from cove.store import huggingface
from cove.store.blobs import Blobs, PartialBlob
from cove.store.huggingface import HFRef, HuggingFace, RemoteFile, parse_hf_ref
from cove.store.names import parse_name
from cove.store.progress import PullProgress

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
LISTING = [
    ".gitattributes",
    "README.md",
    "Llama-3.2-1B-Instruct-Q2_K.gguf",
    "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
    "Llama-3.2-1B-Instruct-Q4_K_S.gguf",
    "llama-3.2-1b-instruct-q8_0.gguf",
    "mmproj-Llama-3.2-1B-Instruct-f16.gguf",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture
def server() -> Iterator[FakeHF]:
    with FakeHF() as fake:
        fake.add_file("acme", "Tiny-GGUF", "tiny-Q4_K_M.gguf", DATA)
        fake.add_file("acme", "Tiny-GGUF", "tiny-Q8_0.gguf", DATA[:1000])
        yield fake


@pytest.fixture
def blobs(tmp_path: Path) -> Blobs:
    return Blobs(tmp_path / "blobs")


def ref(text: str = "hf.co/acme/Tiny-GGUF") -> HFRef:
    parsed = parse_hf_ref(text)
    assert parsed is not None
    return parsed


def pull(fake: FakeHF, blobs: Blobs, text: str = "hf.co/acme/Tiny-GGUF", **kw: Any) -> str:
    with HuggingFace(fake.url, kw.pop("token", None), retry_delay=0.01) as hf:
        return hf.download(hf.resolve(ref(text)), blobs, **kw)


def partial_path(blobs: Blobs, sha: str = SHA) -> Path:
    return blobs.root / f"sha256-{sha}-partial"


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "store_name"),
    [
        ("hf.co/acme/Tiny-GGUF", HFRef("acme", "Tiny-GGUF"), "hf.co/acme/tiny-gguf:q4_k_m"),
        (
            "huggingface.co/acme/Tiny-GGUF:Q8_0",
            HFRef("acme", "Tiny-GGUF", quant="Q8_0"),
            "hf.co/acme/tiny-gguf:q8_0",
        ),
        ("HF.co/acme/tiny:latest", HFRef("acme", "tiny"), "hf.co/acme/tiny:q4_k_m"),
        (
            "https://huggingface.co/acme/Tiny/sub/Tiny Model.Q5_K.gguf",
            HFRef("acme", "Tiny", filename="sub/Tiny Model.Q5_K.gguf"),
            "hf.co/acme/tiny:tiny-model.q5_k",
        ),
        (
            "https://huggingface.co/acme/Tiny/resolve/dev/x.GGUF?download=true",
            HFRef("acme", "Tiny", revision="dev", filename="x.GGUF"),
            "hf.co/acme/tiny:x",
        ),
    ],
)
def test_parse_hf_ref(text: str, expected: HFRef, store_name: str) -> None:
    parsed = parse_hf_ref(text)
    assert parsed == expected
    assert parsed.store_name == store_name
    assert str(parse_name(store_name)) == store_name


@pytest.mark.parametrize("text", ["gemma3:270m", "library/gemma3", "hf.co", "example.com/a/b"])
def test_parse_hf_ref_not_hf(text: str) -> None:
    assert parse_hf_ref(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "hf.co/../repo",
        "hf.co/owner/..",
        "hf.co/owner/a..b",
        "hf.co//etc/passwd",
        "hf.co/owner",
        "hf.co/-owner/repo",
        "hf.co/owner/repo/../../x.gguf",
        "hf.co/owner/repo/sub/./x.gguf",
        "hf.co/owner/repo/a//b.gguf",
        "hf.co/owner/repo/a\\b.gguf",
        "hf.co/owner/repo\x00",
        "hf.co/owner/repo/x\nb.gguf",
        "hf.co/owner/repo/model.bin",
        "hf.co/owner/repo/.gguf",
        "hf.co/owner/repo:",
        "hf.co/owner/repo:../x",
        "hf.co/owner/repo:Q4/x.gguf",
    ],
)
def test_parse_hf_ref_hostile(text: str) -> None:
    with pytest.raises(InvalidName):
        parse_hf_ref(text)


def test_long_filename_tag_is_capped() -> None:
    parsed = ref("hf.co/o/r/" + "-." + "A" * 300 + ".gguf")
    tag = parsed.store_name.rsplit(":", 1)[1]
    assert tag == "a" * 126
    parse_name(parsed.store_name)


# -- choosing ------------------------------------------------------------------------------


def choose(quant: str | None, files: list[str] = LISTING) -> str:
    return HuggingFace("http://127.0.0.1:9").choose_file(HFRef("o", "r", quant=quant), files)


def test_choose_file_default_and_case() -> None:
    assert choose(None) == "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    assert choose("q4_k_s") == "Llama-3.2-1B-Instruct-Q4_K_S.gguf"
    assert choose("Q8_0") == "llama-3.2-1b-instruct-q8_0.gguf"


def test_choose_file_prefers_exact_token() -> None:
    assert choose("Q4_K", [*LISTING, "Llama-Q4_K.gguf"]) == "Llama-Q4_K.gguf"
    # Without an exact Q4_K, llama.cpp's alias Q4_K_M is the one meant.
    assert choose("Q4_K") == "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    assert choose("Q2_K") == "Llama-3.2-1B-Instruct-Q2_K.gguf"


def test_choose_file_never_mmproj_and_lists_quants() -> None:
    with pytest.raises(ModelNotFound) as caught:
        choose("F16")
    message = str(caught.value)
    assert "Q2_K" in message and "Q4_K_M" in message and "Q8_0" in message
    assert "mmproj" not in message.lower()
    with pytest.raises(ModelNotFound, match="no GGUF"):
        choose(None, ["README.md", "mmproj-f16.gguf"])


def test_choose_file_refuses_split_files() -> None:
    files = [f"big/Big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    with pytest.raises(PullError, match="split GGUF"):
        choose(None, files)


def test_choose_file_by_filename() -> None:
    hf = HuggingFace("http://127.0.0.1:9")
    assert hf.choose_file(ref("hf.co/o/r/README.gguf"), ["README.gguf"]) == "README.gguf"
    with pytest.raises(ModelNotFound):
        hf.choose_file(ref("hf.co/o/r/other.gguf"), ["README.gguf"])


# -- listing and resolving -----------------------------------------------------------------


def test_list_files_tree_and_fallback(server: FakeHF) -> None:
    server.add_file("acme", "Tiny-GGUF", "sub/dir/x.gguf", b"x", lfs=False)
    expected = {"tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf", "sub/dir/x.gguf"}
    with HuggingFace(server.url) as hf:
        assert set(hf.list_files(ref())) == expected
        server.no_tree = True
        assert set(hf.list_files(ref())) == expected
    assert server.seen("GET", "/api/models/acme/Tiny-GGUF/tree/main")


def test_resolve_reads_lfs_headers(server: FakeHF) -> None:
    with HuggingFace(server.url) as hf:
        remote = hf.resolve(ref())
    assert remote.filename == "tiny-Q4_K_M.gguf"
    assert (remote.sha256, remote.size) == (SHA, len(DATA))
    assert remote.url == f"{server.url}/acme/Tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf"
    assert server.seen("HEAD")[0].headers["user-agent"] == "cove/0.1"


def test_missing_repo_and_file(server: FakeHF) -> None:
    with HuggingFace(server.url) as hf:
        with pytest.raises(ModelNotFound):
            hf.list_files(ref("hf.co/acme/nothing"))
        with pytest.raises(ModelNotFound):
            hf.resolve(ref("hf.co/acme/nothing"))
        with pytest.raises(ModelNotFound):
            hf.resolve(ref("hf.co/acme/Tiny-GGUF/missing.gguf"))


def test_private_repo_needs_token(server: FakeHF, blobs: Blobs) -> None:
    server.require_token = "hf_secret"
    with pytest.raises(PullError, match="HF_TOKEN") as caught:
        pull(server, blobs)
    assert "hf_secret" not in str(caught.value)
    with pytest.raises(PullError, match="HF_TOKEN"):
        pull(server, blobs, token="hf_wrong")
    assert pull(server, blobs, token="hf_secret") == SHA


# -- downloading ---------------------------------------------------------------------------


def test_full_download_verified(server: FakeHF, blobs: Blobs) -> None:
    seen: list[PullProgress] = []
    assert pull(server, blobs, progress=seen.append) == SHA
    assert blobs.path(SHA).read_bytes() == DATA
    assert not partial_path(blobs).exists()
    assert seen[-1] == PullProgress(f"pulling {SHA[:12]}", f"sha256:{SHA}", len(DATA), len(DATA))
    assert len(seen) <= 12
    assert all("range" not in r.headers for r in server.seen("GET"))

    again: list[PullProgress] = []
    assert pull(server, blobs, progress=again.append) == SHA
    assert [p.status for p in again] == ["already have"]
    assert len(server.seen("GET", "/resolve/")) == 1


def test_wrong_digest_stores_nothing(server: FakeHF, blobs: Blobs) -> None:
    server.wrong_digest = True
    with HuggingFace(server.url) as hf:
        remote = hf.resolve(ref())
        with pytest.raises(DigestMismatch):
            hf.download(remote, blobs)
    assert list(blobs.root.iterdir()) == []


def test_drop_mid_body_resumes_with_range(server: FakeHF, blobs: Blobs) -> None:
    server.drop_after_bytes, server.drops_remaining = 100_000, 1
    assert pull(server, blobs) == SHA
    gets = server.seen("GET", "/resolve/")
    assert [g.headers.get("range") for g in gets] == [None, "bytes=100000-"]
    assert blobs.path(SHA).read_bytes() == DATA


def test_drop_keeps_partial_for_next_pull(
    server: FakeHF, blobs: Blobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface, "MAX_RETRIES", 0)
    server.drop_after_bytes, server.drops_remaining = 120_000, 1
    with pytest.raises(PullError, match="interrupted after 120000 bytes; run the same pull"):
        pull(server, blobs)
    assert partial_path(blobs).stat().st_size == 120_000
    assert not blobs.exists(SHA)
    assert pull(server, blobs) == SHA
    assert server.seen("GET", "/resolve/")[-1].headers["range"] == "bytes=120000-"


def test_gives_up_after_retries_without_progress(server: FakeHF, blobs: Blobs) -> None:
    server.drop_after_bytes, server.drops_remaining = 0, 100
    with pytest.raises(PullError, match="interrupted after 0 bytes"):
        pull(server, blobs)
    assert len(server.seen("GET", "/resolve/")) == 1 + huggingface.MAX_RETRIES
    assert not blobs.exists(SHA)


def test_server_ignoring_range_restarts(server: FakeHF, blobs: Blobs) -> None:
    server.drop_after_bytes, server.drops_remaining = 100_000, 1
    server.ignore_range = True
    assert pull(server, blobs) == SHA
    assert server.seen("GET", "/resolve/")[-1].headers["range"] == "bytes=100000-"
    assert blobs.path(SHA).read_bytes() == DATA


def test_416_restarts_once_without_range(server: FakeHF, blobs: Blobs) -> None:
    partial_path(blobs).write_bytes(os.urandom(len(DATA)))
    with HuggingFace(server.url) as hf:
        remote = hf.resolve(ref())
        unsized = RemoteFile(remote.ref, remote.filename, remote.url, SHA, None)
        assert hf.download(unsized, blobs) == SHA
    ranges = [g.headers.get("range") for g in server.seen("GET", "/resolve/")]
    assert ranges == [f"bytes={len(DATA)}-", None]


def test_redirect_to_cdn_gets_no_token(blobs: Blobs) -> None:
    with FakeHF("localhost") as cdn, FakeHF() as hub:
        for fake in (hub, cdn):
            fake.add_file("acme", "Tiny-GGUF", "tiny-Q4_K_M.gguf", DATA)
        hub.require_token, hub.redirect_to = "hf_secret", cdn.url
        assert pull(hub, blobs, token="hf_secret") == SHA
        assert hub.seen("GET", "/resolve/")[0].headers["authorization"] == "Bearer hf_secret"
        assert hub.seen("HEAD")[0].headers["authorization"] == "Bearer hf_secret"
        assert cdn.seen("GET", "/resolve/")
        assert all("authorization" not in r.headers for r in cdn.seen())
        assert not cdn.seen("HEAD")
    assert blobs.path(SHA).read_bytes() == DATA


def test_redirect_to_other_scheme_refused(server: FakeHF, blobs: Blobs) -> None:
    server.redirect_to = "file://"
    with pytest.raises(PullError, match="'file' URL"):
        pull(server, blobs)


def test_non_lfs_file_checked_by_git_sha1(server: FakeHF, blobs: Blobs) -> None:
    small = os.urandom(5000)
    server.add_file("acme", "Tiny-GGUF", "small.gguf", small, lfs=False)
    assert pull(server, blobs, "hf.co/acme/Tiny-GGUF/small.gguf") == (hashlib.sha256(small).hexdigest())
    server.wrong_digest = True
    other = Blobs(blobs.root.parent / "other")
    with pytest.raises(DigestMismatch, match="git sha1"):
        pull(server, other, "hf.co/acme/Tiny-GGUF/small.gguf")
    assert list(other.root.iterdir()) == []


def test_no_etag_downloads_unverified_and_says_so(server: FakeHF, blobs: Blobs) -> None:
    server.no_etag = True
    seen: list[PullProgress] = []
    assert pull(server, blobs, progress=seen.append) == SHA
    assert "unverified" in seen[-1].status
    assert blobs.path(SHA).read_bytes() == DATA


def test_disk_full(server: FakeHF, blobs: Blobs, monkeypatch: pytest.MonkeyPatch) -> None:
    class FullDisk:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def write(self, _: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    original = PartialBlob.__init__

    def patched(self: PartialBlob, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._file = FullDisk(self._file)  # type: ignore[assignment]

    monkeypatch.setattr(PartialBlob, "__init__", patched)
    with pytest.raises(DiskFull):
        pull(server, blobs)
    assert not blobs.exists(SHA)


def test_kill_9_mid_download_then_resume(server: FakeHF, blobs: Blobs) -> None:
    server.slow = 0.05
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from cove.store.blobs import Blobs
        from cove.store.huggingface import HuggingFace, parse_hf_ref
        hf = HuggingFace({server.url!r})
        remote = hf.resolve(parse_hf_ref("hf.co/acme/Tiny-GGUF"))
        hf.download(remote, Blobs(Path({str(blobs.root)!r})))
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    partial = partial_path(blobs)
    deadline = time.monotonic() + 15
    while not (partial.exists() and partial.stat().st_size > 0):
        assert child.poll() is None and time.monotonic() < deadline, "download never started"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not blobs.exists(SHA)
    size = partial.stat().st_size
    assert 0 < size < len(DATA)

    server.slow = 0
    assert pull(server, blobs) == SHA
    assert server.seen("GET", "/resolve/")[-1].headers["range"] == f"bytes={size}-"
    assert hashlib.sha256(blobs.path(SHA).read_bytes()).hexdigest() == SHA


def test_redirect_loop_stops(server: FakeHF, blobs: Blobs) -> None:
    server.redirect_to = server.url
    with pytest.raises(PullError, match="too many redirects"):
        pull(server, blobs)
    assert len(server.seen("HEAD")) == 1 + huggingface.MAX_REDIRECTS


# -- two pulls of one file at once -------------------------------------------------------------


def _pull_in_threads(server: FakeHF, blobs: Blobs, count: int = 2) -> list[str | BaseException]:
    results: list[str | BaseException] = []
    start = threading.Barrier(count)

    def one() -> None:
        start.wait()
        try:
            results.append(pull(server, blobs))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_threads_pulling_one_file_share_one_download(server: FakeHF, blobs: Blobs) -> None:
    server.slow = 0.005  # long enough that both are in the download at once
    assert _pull_in_threads(server, blobs) == [SHA, SHA]
    assert blobs.path(SHA).read_bytes() == DATA
    assert len(server.seen("GET", "/resolve/")) == 1  # the second waited, then found it stored
    assert sorted(p.name for p in blobs.root.iterdir()) == [f"sha256-{SHA}"]  # no partial, no lock


def test_a_second_process_waits_for_the_first(server: FakeHF, blobs: Blobs) -> None:
    server.slow = 0.02
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from cove.store.blobs import Blobs
        from cove.store.huggingface import HuggingFace, parse_hf_ref
        hf = HuggingFace({server.url!r})
        remote = hf.resolve(parse_hf_ref("hf.co/acme/Tiny-GGUF"))
        print(hf.download(remote, Blobs(Path({str(blobs.root)!r}))))
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while not partial_path(blobs).exists():
        assert child.poll() is None and time.monotonic() < deadline, "the child never started"
        time.sleep(0.005)
    assert pull(server, blobs) == SHA  # waits on the child's lock instead of writing its partial
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0 and out.strip() == SHA
    assert blobs.path(SHA).read_bytes() == DATA
    assert len(server.seen("GET", "/resolve/")) == 1


def test_not_enough_disk_is_refused_before_downloading(
    server: FakeHF, blobs: Blobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Blobs, "free_bytes", lambda self: len(DATA) - 1)
    with pytest.raises(DiskFull, match=r"needs 0\.3 MB but only 0\.3 MB is free"):
        pull(server, blobs)
    assert server.seen("GET", "/resolve/") == []
    assert list(blobs.root.iterdir()) == []


def test_disk_check_counts_what_a_partial_already_holds(
    server: FakeHF, blobs: Blobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial_path(blobs).write_bytes(DATA[:200_000])
    monkeypatch.setattr(Blobs, "free_bytes", lambda self: 150_000)  # enough for the rest only
    assert pull(server, blobs) == SHA
