"""Runners: where a run's agent executes (a Kubernetes Job, or a local process)."""
