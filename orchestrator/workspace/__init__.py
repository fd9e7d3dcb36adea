"""The shared workspace: layout, git checkout, task documents, the per-service lease and clean-up."""
