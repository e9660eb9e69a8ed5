"""Sync speed of the knowledge base: a re-sync of an unchanged 1,000-file folder (target under
2 s: nothing is read again), a re-sync after one file changed, and ingest speed (files, pages
and chunks per second) through the whole pipeline: parser, chunker with the model's tokenizer,
embedding in cove's engine, index writes. Pages/s is also measured on a real PDF, the Debian
FAQ's (package `debian-faq`), when it is installed.

    .venv/bin/python benchmarks/kb_sync.py [--files 1000] [--model all-minilm] [--home DIR]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from cove.config import Settings
from cove.knowledge.service import KnowledgeBase
from cove.library.local import Cove

FAQ_PDF = Path("/usr/share/doc/debian/FAQ/debian-faq.en.pdf.gz")
WORDS = [
    "package",
    "release",
    "install",
    "upgrade",
    "kernel",
    "mirror",
    "archive",
    "source",
    "binary",
    "security",
    "update",
    "network",
    "config",
    "file",
    "system",
    "user",
    "server",
    "desktop",
    "driver",
    "printer",
    "locale",
    "font",
    "boot",
    "service",
    "daemon",
    "log",
    "disk",
    "partition",
    "backup",
    "restore",
    "license",
    "policy",
    "bug",
    "report",
    "maintainer",
    "developer",
]


def write_folder(folder: Path, count: int, rng: random.Random) -> None:
    for i in range(count):
        sub = folder / f"part{i // 100:02}"
        sub.mkdir(parents=True, exist_ok=True)
        paragraphs = [" ".join(rng.choices(WORDS, k=rng.randint(30, 60))) + "." for _ in range(2)]
        (sub / f"note{i:04}.md").write_text(
            f"# Note {i}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8"
        )


def timed_sync(kb: KnowledgeBase, name: str) -> tuple[float, object]:
    started = time.perf_counter()
    report = kb.sync(name)
    return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--model", default="all-minilm")
    parser.add_argument("--home", type=Path)
    args = parser.parse_args()
    settings = Settings.from_env()
    if args.home:
        settings = replace(settings, home=args.home)
    work = Path(tempfile.mkdtemp(prefix="cove-kb-sync-"))
    cove = Cove(replace(settings, num_parallel=1))
    try:
        kb = KnowledgeBase(cove, path=work / "knowledge.db")
        folder = work / "notes"
        write_folder(folder, args.files, random.Random(3))
        kb.create("notes", args.model)
        kb.add("notes", [folder])
        kb.embedder(args.model).embed(["load the model first"])  # not counted as ingest
        seconds, report = timed_sync(kb, "notes")
        chunks = report.chunks  # type: ignore[attr-defined]
        print(
            f"ingest: {args.files} files, {chunks} chunks in {seconds:.1f} s: "
            f"{args.files / seconds:.1f} files/s, {chunks / seconds:.1f} chunks/s ({args.model})"
        )
        unchanged = [timed_sync(kb, "notes")[0] for _ in range(5)]
        print(
            f"re-sync, nothing changed: median {statistics.median(unchanged):.3f} s "
            f"(of 5; max {max(unchanged):.3f} s)"
        )
        target = folder / "part03" / "note0300.md"
        target.write_text(target.read_text() + "\nOne more line about the kernel.\n")
        os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
        seconds, report = timed_sync(kb, "notes")
        print(f"re-sync, one file changed: {seconds:.3f} s (updated: {report.updated})")  # type: ignore[attr-defined]
        if FAQ_PDF.exists():
            pdf = work / "pdf" / "debian-faq.pdf"
            pdf.parent.mkdir()
            pdf.write_bytes(gzip.decompress(FAQ_PDF.read_bytes()))
            kb.create("pdf", args.model)
            kb.add("pdf", [pdf.parent])
            seconds, report = timed_sync(kb, "pdf")
            pages, chunks = report.pages, report.chunks  # type: ignore[attr-defined]
            print(
                f"ingest of a real PDF (Debian FAQ): {pages} pages, {chunks} chunks in {seconds:.1f} s: "
                f"{pages / seconds:.1f} pages/s, {chunks / seconds:.1f} chunks/s"
            )
        kb.close()
    finally:
        cove.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
