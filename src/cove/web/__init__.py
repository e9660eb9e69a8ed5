"""The browser chat: its static assets, and Markdown rendered to sanitised, highlighted HTML."""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape
from importlib import resources
from importlib.resources.abc import Traversable

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

MAX_RENDER_CHARS = 200_000

TAGS = {
    "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "span", "div", "blockquote",
    "ul", "ol", "li", "a", "img", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "sup", "sub",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "span": {"class"},
    "div": {"class"},
    "code": {"class"},
    "pre": {"class"},
    "th": {"class"},
    "td": {"class"},
    "ol": {"start"},
}
ALIGN = re.compile(r'style="text-align:(left|center|right)"')
LINK_SCHEMES = ("http:", "https:", "mailto:")


def _keep(tag: str, attribute: str, value: str) -> str | None:
    """Links only to http(s)/mailto; images only inline data: (nothing is ever fetched elsewhere)."""
    low = value.strip().lower()
    if tag == "a" and attribute == "href":
        return value if low.startswith(LINK_SCHEMES) else None
    if tag == "img" and attribute == "src":
        return value if low.startswith("data:image/") else None
    if attribute == "class":
        return value if all(part.replace("-", "").isalnum() for part in value.split()) else None
    return value


def _fence(code: str, lang: str, _attrs: str) -> str:
    """Pygments, class-based; an unknown language is escaped text."""
    try:
        lexer = get_lexer_by_name(lang.strip().split()[0]) if lang.strip() else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes the code itself
    return str(highlight(code, lexer, HtmlFormatter(nowrap=True)))


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _fence})
    md.enable(["table", "strikethrough"])
    return md


# Code first, so a `$` inside code stays code; then $$display$$ and $inline$ mathematics. An inline
# span must not start or end with a space and not be followed by a digit ("$5 and $6" is money).
MATH = re.compile(
    r"(?P<fence>^(?P<tick>`{3,}|~{3,})[^\n]*\n.*?^(?P=tick)[ \t]*$)"
    r"|(?P<code>(?P<run>`+).+?(?P=run))"
    r"|(?<!\\)\$\$(?P<display>.+?)(?<!\\)\$\$"
    r"|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?!\d)",
    re.DOTALL | re.MULTILINE,
)
MARK = "covemath{}x"  # letters only: Markdown leaves it alone, and nothing a person types is this


def _take_math(text: str) -> tuple[str, list[tuple[bool, str]]]:
    """The text with each formula replaced by a marker, and the formulas (display?, TeX) in order."""
    found: list[tuple[bool, str]] = []

    def swap(m: re.Match[str]) -> str:
        if m.group("fence") or m.group("code"):
            return m.group(0)
        display = m.group("display") is not None
        found.append((display, m.group("display") if display else m.group("inline")))
        return MARK.format(len(found) - 1)

    return MATH.sub(swap, text), found


def _put_math(html: str, found: list[tuple[bool, str]]) -> str:
    """Each marker back as an element holding the TeX as escaped text; the page typesets it
    with the bundled KaTeX (through the DOM, which the CSP allows) or shows the TeX as it is."""
    for index, (display, tex) in enumerate(found):
        kind = "math-display" if display else "math-inline"
        html = html.replace(MARK.format(index), f'<span class="{kind}">{escape(tex.strip())}</span>', 1)
    return html


def render(text: str) -> str:
    """Markdown to HTML that is safe to insert: raw HTML off, then an allowlist sanitiser."""
    marked, formulas = _take_math(text[:MAX_RENDER_CHARS])
    html = _parser().render(marked)
    # Table alignment as classes: the page's CSP allows no inline styles.
    html = ALIGN.sub(lambda m: f'class="align-{m.group(1)}"', html)
    return _put_math(_clean(html), formulas)


def _clean(html: str) -> str:
    return str(
        nh3.clean(
            html,
            tags=TAGS,
            attributes=ATTRIBUTES,
            attribute_filter=_keep,
            url_schemes={"http", "https", "mailto", "data"},
            link_rel="noopener noreferrer",
            clean_content_tags={"script", "style"},
        )
    )


def code_css() -> str:
    """Pygments colours for light and dark themes, scoped to `.md pre`."""
    light = HtmlFormatter(style="default").get_style_defs(".md pre")
    dark = HtmlFormatter(style="monokai").get_style_defs(".md pre")
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"


def static_root() -> Traversable:
    return resources.files("cove.web") / "static"
