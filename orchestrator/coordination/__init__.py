"""Coordination: which task runs when, what an ended run means, and what the reconcile loop re-drives.

- `rules`: dependencies, cycles and the admission order (pure, or reading the store).
- `stages`: pipeline configuration (no imports from the rest of the package, so settings can use it).
- `outputs`: what a run's agent leaves in its output directory.
- `admission`, `outcome`, `redrive`: the plain code behind the admit and finish steps and the re-drive.
- `effects`: what those ask of the world (a step sent, capacity freed, a status reported).
"""
