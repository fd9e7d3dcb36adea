"""Agents that ship with the orchestrator (the example agent used when Claude Code is not available)."""
