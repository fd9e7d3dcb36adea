"""Task documents as HTML: Markdown with raw HTML escaped and unsafe links refused."""

from __future__ import annotations

import functools

from markdown_it import MarkdownIt
from markupsafe import Markup


@functools.lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # html=False: any HTML in a document is shown as text. markdown-it's link
    # validation refuses javascript:, vbscript:, file: and data: (but images) URLs.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def render_markdown(text: str | None) -> Markup:
    """Safe HTML of a Markdown document (empty for None)."""
    if not text:
        return Markup("")
    return Markup(_parser().render(str(text)))
