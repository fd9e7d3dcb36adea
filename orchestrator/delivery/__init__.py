"""Delivery: what happens after a run ends, done by a worker step and never by the agent.

Commit what the agent left uncommitted, push the task's branch, open or update
the task's one pull request, and record the run's outcome (`changes`,
`no_changes`, `failed`, `cancelled`). See `step.deliver_run`.
"""
