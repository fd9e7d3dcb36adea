"""Kubernetes: pure builders for agent Jobs (`jobs`), their status (`status`), and the one API client (`client`)."""
