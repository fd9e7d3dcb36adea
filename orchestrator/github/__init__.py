"""GitHub integration: webhook verification and routing, the REST client and the status reporter."""
