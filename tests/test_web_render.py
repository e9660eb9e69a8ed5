"""The web chat's server side without a browser: the page, static files, CSP, and sanitised Markdown."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from server_fixtures import anyio_backend, client, make_app

from cove.library.local import Cove
from cove.server.web import CSP
from cove.web import render

__all__ = ["anyio_backend"]

HOSTILE = {
    "script": "<script>window.__xss=1</script>",
    "img": '<img src=x onerror="window.__xss=1">',
    "link": "[x](javascript:window.__xss=1)",
    "iframe": '<iframe src="javascript:window.__xss=1"></iframe>',
    "svg": "<svg onload=window.__xss=1>",
    "remote image": "![](https://example.com/x.png)",
    "data link": "[x](data:text/html,<script>1</script>)",
    "autolink": "<javascript:alert(1)>",
    "ref link": "[x][r]\n\n[r]: vbscript:msgbox(1)",
}


class Elements(HTMLParser):
    """Every element and attribute in an HTML fragment, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def assert_inert(html: str) -> None:
    parser = Elements()
    parser.feed(html)
    for tag, attrs in parser.found:
        assert tag not in ("script", "iframe", "svg", "object", "embed", "style", "form", "math"), html
        assert not any(name.startswith("on") for name in attrs), html
        if "href" in attrs:
            assert attrs["href"].lower().startswith(("http:", "https:", "mailto:")), html
            assert attrs.get("rel") == "noopener noreferrer", html
        if "src" in attrs:
            assert tag == "img" and attrs["src"].startswith("data:image/"), html


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_markdown_renders_inert(name: str) -> None:
    html = render(HOSTILE[name])
    assert_inert(html)
    assert "example.com" not in html or "src=" not in html


def test_markdown_features_survive() -> None:
    html = render(
        "# Title\n\n**bold** [site](https://example.org) ![dot](data:image/png;base64,iVBORw0KGgo=)\n\n"
        "| a | b | c |\n|---|:-:|--:|\n| 1 | 2 | 3 |\n\n```python\ndef f():\n    return '<b>'\n```\n"
    )
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html
    assert '<a href="https://example.org" rel="noopener noreferrer">site</a>' in html
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html
    assert "<table>" in html and "<td>1</td>" in html and "style=" not in html
    assert '<td class="align-center">2</td>' in html and '<th class="align-right">c</th>' in html
    assert '<span class="k">def</span>' in html  # Pygments, class-based
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_unknown_language_is_escaped_text() -> None:
    html = render("```nosuchlang\n<img src=x onerror=alert(1)>\n```")
    assert "&lt;img" in html and "<img" not in html


@pytest.mark.anyio
async def test_page_and_csp(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        page = await c.get("/", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<script type="module" src="/static/app.js"></script>' in page.text
        assert "<script>" not in page.text and "style=" not in page.text  # nothing inline: CSP allows none
        for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css"), ("code.css", "text/css")]:
            r = await c.get(f"/static/{name}")
            assert r.status_code == 200, name
            assert r.headers["content-type"].startswith(kind)
            assert r.headers["content-security-policy"] == CSP
            assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.anyio
async def test_root_stays_plain_for_api_clients(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        for accept in (None, "*/*", "application/json"):
            headers = {"accept": accept} if accept else {}
            r = await c.get("/", headers=headers)
            assert r.status_code == 200
            assert r.text == "cove is running"
            assert r.headers["content-type"].startswith("text/plain")
        assert (await c.head("/")).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/__init__.py",
        "/static/..%2f__init__.py",
        "/static/%2e%2e%2f%2e%2e%2fserver%2fweb.py",
        "/static/.hidden",
        "/static/nope.js",
        "/static/",
        "/static/sub/app.js",
        "/static/..\\__init__.py",
        "/static/app.js%00.png",
    ],
)
async def test_static_lookup_never_leaves_the_folder(fake_cove: Cove, path: str) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.get(path)
        assert r.status_code == 404, (path, r.text[:200])
        assert "import" not in r.text


@pytest.mark.anyio
async def test_render_endpoint(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/cove/render", json={"text": "<script>x</script> *hi* [a](javascript:1)"})
        assert r.status_code == 200
        html = r.json()["html"]
        assert_inert(html)
        assert "<em>hi</em>" in html and "&lt;script&gt;" in html


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"text": 5}, 400),
        ({"text": ["a"]}, 400),
        ({"text": "a", "extra": 1}, 400),
        ({"text": "a" * 200_001}, 400),
        ([], 400),
    ],
)
async def test_render_validates(fake_cove: Cove, body: object, status: int) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/cove/render", json=body)
        assert r.status_code == status, r.text
        assert "error" in r.json()


@pytest.mark.anyio
async def test_render_wants_json(fake_cove: Cove) -> None:
    # Any content type is read as JSON (non-browser clients send none or a form type); cross-site
    # browser requests are refused by their Origin instead (tests/test_server_guard.py).
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/cove/render", content=b"text=hi", headers={"content-type": "text/plain"})
        assert r.status_code == 400 and "invalid JSON" in r.json()["error"]


@pytest.mark.anyio
async def test_catalog(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        models = (await c.get("/api/cove/catalog")).json()["models"]
        assert models and {"name", "ram_gb", "size_mb", "description"} <= set(models[0])
