"""Text GitHub does not display: HTML comments in issue, comment and review bodies.

GitHub renders Markdown and hides `<!-- ... -->` (and everything after an
unclosed `<!--`), so whoever writes an issue can put instructions there that a
human reviewer never sees but an agent would read. Text that becomes a task
document goes through `strip_hidden` first, and the document says when
something was removed. Removed inside code blocks too, where GitHub would
show it: the agent may see less than a reader, never more.
"""

from __future__ import annotations

import re

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)


def strip_hidden(text: str) -> tuple[str, bool]:
    """`text` without HTML comments, and whether there were any."""
    stripped, count = _COMMENT.subn("", text)
    return stripped, count > 0


def removal_note(what: str) -> str:
    """The line a task document carries when hidden text was removed from `what` ("this issue")."""
    return f"Hidden HTML comments were removed from {what}'s text."
