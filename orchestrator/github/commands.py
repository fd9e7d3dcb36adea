"""Comment commands: `/orchestrator run|cancel|retry|status [text]`.

Only a line that starts with the prefix counts, outside quoted replies, code
blocks and HTML comments, so quoting someone's command, documenting one or
hiding one does not run it.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.github.hidden import strip_hidden

WORDS: frozenset[str] = frozenset({"run", "cancel", "retry", "status"})


@dataclass(frozen=True)
class Command:
    """One parsed command: its word and the rest of its line."""

    word: str
    argument: str = ""


def parse_command(body: str | None, prefix: str) -> Command | None:
    """The first command in a comment body, or None when it holds none."""
    if not body or not prefix:
        return None
    in_fence = False
    # A command GitHub does not display (inside an HTML comment) is no command.
    for raw_line in strip_hidden(body)[0].splitlines():
        line = raw_line.strip()
        if line.startswith("```") or line.startswith("~~~"):
            in_fence = not in_fence
            continue
        if in_fence or line.startswith(">") or not line.startswith(prefix):
            continue
        rest = line[len(prefix) :]
        if rest and not rest[0].isspace():
            continue  # `/orchestratorx` is another word, not our prefix
        parts = rest.split(None, 1)
        if not parts:
            continue
        word = parts[0].lower()
        if word not in WORDS:
            continue
        return Command(word, parts[1].strip() if len(parts) > 1 else "")
    return None
