"""The context one GitHub event is handled in: its payload, who sent it, and what it may use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.github.routing import GitHubConfig, dig
from orchestrator.settings import Settings
from orchestrator.store import TaskStore


@dataclass(frozen=True)
class EventContext:
    """One routed delivery and what its handler may use."""

    store: TaskStore
    settings: Settings
    config: GitHubConfig
    delivery_id: str
    event: str
    payload: Mapping[str, Any]

    @property
    def actor(self) -> str:
        login = dig(self.payload, "sender", "login")
        return f"github:{login}" if isinstance(login, str) else "github"

    @property
    def repo(self) -> str:
        return str(dig(self.payload, "repository", "full_name"))

    @property
    def service(self) -> str | None:
        return self.config.service_for(self.repo)[0]
