"""The web chat's newer server routes without a browser: mathematics marked for KaTeX, a page of
renders at once, attachments read by the knowledge parsers, measured speeds, fonts and gzip."""

from __future__ import annotations

import gzip
import io

import pytest
from server_fixtures import anyio_backend, client, make_app

from cove.history.measurements import Measurement, Measurements
from cove.library.local import Cove
from cove.server.web import CSP, MAX_ATTACHMENT_BYTES
from cove.web import render

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("$x^2$", '<p><span class="math-inline">x^2</span></p>\n'),
        ("$$a_1 * b_2$$", '<p><span class="math-display">a_1 * b_2</span></p>\n'),
        ("costs $5 and $6", "<p>costs $5 and $6</p>\n"),  # money is not mathematics
        ("`$x$`", "<p><code>$x$</code></p>\n"),  # nor is code
        ("```\n$a_b$\n```", "<pre><code>$a_b$\n</code></pre>\n"),
        (
            "$<img src=x onerror=alert(1)>$",
            '<p><span class="math-inline">&lt;img src=x onerror=alert(1)&gt;</span></p>\n',
        ),
    ],
)
def test_mathematics_is_marked_as_escaped_text(text: str, html: str) -> None:
    assert render(text) == html


async def test_the_csp_allows_own_fonts_only_and_katex_is_served(fake_cove: Cove) -> None:
    assert "font-src 'self'" in CSP and "unsafe" not in CSP
    async with client(make_app(fake_cove)) as c:
        r = await c.get("/static/fonts/KaTeX_Main-Regular.woff2")
        assert r.status_code == 200 and r.headers["content-type"] == "font/woff2"
        assert (await c.get("/static/katex.min.js")).status_code == 200
        assert (await c.get("/static/KATEX-LICENSE.txt")).text.startswith("The MIT License")
        for sneaky in ("fonts/..%2Fapp.js", "fonts/", "fonts/.hidden", "other/app.js"):
            assert (await c.get(f"/static/{sneaky}")).status_code == 404


async def test_text_assets_are_sent_gzipped_to_who_asks(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        plain = await c.get("/static/app.js", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers
        raw = c.build_request("GET", "/static/app.js", headers={"accept-encoding": "gzip"})
        zipped = await c.send(raw, stream=True)
        body = b"".join([part async for part in zipped.aiter_raw()])
        assert zipped.headers["content-encoding"] == "gzip" and len(body) < len(plain.content) / 2
        assert gzip.decompress(body) == plain.content


async def test_render_many_renders_in_order_and_refuses_too_many(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/cove/render-many", json={"texts": ["**a**", "<script>x</script>", "$y$"]})
        assert r.json()["html"] == [
            "<p><strong>a</strong></p>\n",
            "<p>&lt;script&gt;x&lt;/script&gt;</p>\n",
            '<p><span class="math-inline">y</span></p>\n',
        ]
        assert (await c.post("/api/cove/render-many", json={"texts": ["x"] * 201})).status_code == 400


async def test_attachments_are_read_by_the_knowledge_parsers(fake_cove: Cove) -> None:
    from docx import Document

    buffer = io.BytesIO()
    doc = Document()
    doc.add_paragraph("The puffins nest in burrows.")
    doc.save(buffer)
    async with client(make_app(fake_cove)) as c:
        r = await c.post(
            "/api/cove/attachments?name=notes.md", content=b"# Seals\n\nThey sleep on the pier.\n"
        )
        assert r.status_code == 200, r.text
        assert "They sleep on the pier." in r.json()["text"] and r.json()["name"] == "notes.md"
        r = await c.post("/api/cove/attachments?name=birds.docx", content=buffer.getvalue())
        assert r.status_code == 200, r.text
        assert "puffins nest in burrows" in r.json()["text"]
        r = await c.post("/api/cove/attachments?name=../../etc/passwd.txt", content=b"only text")
        assert r.json()["name"] == "passwd.txt"  # a name, never a path


@pytest.mark.parametrize(
    ("name", "content", "status", "said"),
    [
        ("tool.exe", b"MZ", 400, "reads only these types"),
        ("", b"text", 400, "reads only these types"),
        ("broken.pdf", b"%PDF-1.4 not really", 422, "broken.pdf"),
        ("blank.txt", b"   \n", 400, "holds no text"),
        ("huge.txt", b"x" * (MAX_ATTACHMENT_BYTES + 1), 400, "larger than"),
    ],
)
async def test_a_bad_attachment_is_refused_with_a_reason(
    fake_cove: Cove, name: str, content: bytes, status: int, said: str
) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post(f"/api/cove/attachments?name={name}", content=content)
        assert r.status_code == status, r.text
        assert said in r.text


async def test_measured_speed_of_a_stored_model(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.get("/api/cove/measured?model=tiny")
        assert r.status_code == 200 and r.json()["measured"] is None
        digest = fake_cove.store.get("tiny").digest
        with Measurements.of_home(fake_cove.settings.home) as m:
            for tps in (10.0, 20.0, 30.0):
                m.record(Measurement(model="tiny:latest", digest=digest, kind="answer", decode_tps=tps))
        found = (await c.get("/api/cove/measured?model=tiny")).json()["measured"]
        assert found["decode_tps"] == 20.0 and found["runs"] == 3
        assert (await c.get("/api/cove/measured?model=nope")).status_code == 404
        assert (await c.get("/api/cove/measured")).status_code == 400
