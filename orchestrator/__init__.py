"""Orchestrator: run AI coding agents as Kubernetes Jobs, driven by a Redis queue."""

__version__ = "0.1.0"
