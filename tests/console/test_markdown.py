"""Task documents rendered from Markdown, safely."""

from __future__ import annotations

from api.console.markdown import render_markdown


def test_markdown_is_rendered_and_html_is_escaped() -> None:
    html = render_markdown("# Title\n\n**bold** <script>alert(1)</script> <img src=x onerror=alert(1)>")
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html and "<img" not in html


def test_unsafe_link_targets_are_not_links() -> None:
    html = render_markdown("[a](javascript:alert(1)) [b](data:text/html;base64,xx) [c](https://example.com)")
    assert 'href="javascript:' not in html and 'href="data:' not in html
    assert '<a href="https://example.com">c</a>' in html


def test_nothing_renders_as_nothing() -> None:
    assert render_markdown(None) == "" and render_markdown("") == ""
