"""Issue 15's figures: Lighthouse scores of the chat page, and the first load's weight.

    npm ci --prefix tests/web          # once: lighthouse (and axe-core, katex) from the npm registry
    .venv/bin/python benchmarks/web_lighthouse.py [--preset desktop|mobile] [--runs 3]

A private `cove serve` (its own COVE_HOME holding the bundled model and one imported
conversation) serves the page; Lighthouse drives Debian's /usr/bin/chromium against it, with
only loopback reachable. Scores are the median of the runs. The weight is every response of
the first load as the server sent it (gzip for text assets), summed from Lighthouse's own
network records, and the same assets uncompressed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
LIGHTHOUSE = ROOT / "tests" / "web" / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = Path("/usr/bin/chromium")
CATEGORIES = ("performance", "accessibility", "best-practices")
METRICS = (
    "first-contentful-paint",
    "largest-contentful-paint",
    "total-blocking-time",
    "cumulative-layout-shift",
)
STAMP = "2026-11-28T09:30:00+00:00"


def serve(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`cove serve` on a free loopback port, its home `home`; returns once it answers."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    env["COVE_HOME"] = str(home)
    cove = shutil.which("cove", path=str(ROOT / ".venv" / "bin")) or "cove"
    process = subprocess.Popen(
        [cove, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/api/version", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("cove serve did not start")


def seed(url: str) -> None:
    """One conversation with code, a table and a formula, so the page has something to show."""
    answer = "Here:\n\n```python\nprint('hi')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nand $e^{i\\pi}+1=0$."
    chat = {"id": "bench0000001", "title": "A demo", "model": "gemma3:270m", "created_at": STAMP,
            "updated_at": STAMP, "source": "import", "messages": [
                {"position": 0, "role": "user", "content": "Show me things", "created_at": STAMP},
                {"position": 1, "role": "assistant", "content": answer, "created_at": STAMP}]}  # fmt: skip
    doc = {"format": "cove.history", "version": 1, "exported_at": STAMP, "conversations": [chat]}
    httpx.post(url + "/api/cove/import", json=doc).raise_for_status()


def lighthouse(url: str, preset: str, out: Path) -> dict[str, Any]:
    flags = "--headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking"
    command = [
        str(LIGHTHOUSE), url, "--quiet", "--output=json", f"--output-path={out}",
        f"--only-categories={','.join(CATEGORIES)}", f"--chrome-flags={flags}",
    ]  # fmt: skip
    if preset == "desktop":
        command.append("--preset=desktop")
    env = {**os.environ, "CHROME_PATH": str(CHROMIUM)}
    subprocess.run(command, check=True, env=env, timeout=300)
    report: dict[str, Any] = json.loads(out.read_text("utf-8"))
    return report


def weight(report: dict[str, Any]) -> tuple[int, int, int]:
    """Bytes sent (as compressed on the wire), bytes of the resources, and how many requests."""
    items = report["audits"]["network-requests"]["details"]["items"]
    sent = sum(int(i.get("transferSize") or 0) for i in items)
    size = sum(int(i.get("resourceSize") or 0) for i in items)
    return sent, size, len(items)


def _failed(audit: dict[str, Any]) -> bool:
    return audit.get("scoreDisplayMode") == "binary" and audit.get("score") not in (None, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=["desktop", "mobile"], default="desktop")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not LIGHTHOUSE.exists():
        raise SystemExit("lighthouse is missing: npm ci --prefix tests/web")
    if not CHROMIUM.exists():
        raise SystemExit("needs /usr/bin/chromium (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="cove-lighthouse-") as folder:
        home = Path(folder) / "home"
        from cove.config import Settings
        from cove.library.local import Cove

        Cove(Settings(home=home)).model("gemma3:270m")  # the bundled model, so the picker has one
        process, url = serve(home)
        try:
            seed(url)
            scores: dict[str, list[float]] = {c: [] for c in CATEGORIES}
            loads: list[tuple[int, int, int]] = []
            for run in range(args.runs):
                report = lighthouse(url + "/", args.preset, Path(folder) / f"run{run}.json")
                for name in CATEGORIES:
                    scores[name].append(round(100 * (report["categories"][name]["score"] or 0)))
                loads.append(weight(report))
                failed = [a["id"] for a in report["audits"].values() if _failed(a)]
                said = ", ".join(f"{n} {scores[n][-1]}" for n in CATEGORIES)
                extra = f"; audits not passed: {', '.join(failed)}" if failed else ""
                metrics = ", ".join(
                    f"{m} {report['audits'][m]['displayValue']}" for m in METRICS if m in report["audits"]
                )
                print(f"run {run + 1}: {said} ({metrics}){extra}", file=sys.stderr)
        finally:
            process.terminate()
            process.wait(timeout=15)
    sent, size, count = loads[-1]
    print(f"Lighthouse {args.preset}, median of {args.runs}:")
    for name in CATEGORIES:
        print(f"  {name:15} {statistics.median(scores[name]):.0f}   (runs: {scores[name]})")
    wire, whole = f"{sent / 1000:.1f} KB", f"{size / 1000:.1f} KB"
    print(f"First load: {count} requests, {wire} on the wire (compressed), {whole} uncompressed")


if __name__ == "__main__":
    main()
