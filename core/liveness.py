"""How often a worker says it is alive (`workers_seen`), and how long readiness believes it.

Each worker's reconciler thread marks its row at every sweep; `/health/ready` counts a
worker seen within two sweeps (and a little slack), so a dead worker drops out of it
within about `2 * sweep_interval_s` instead of the minute it used to."""

from __future__ import annotations

SLACK_S = 2.0
"""Room for a sweep that runs late (a busy machine, a slow database)."""


def sweep_interval_s(stale_after_s: float) -> float:
    """Seconds between a worker's sweeps (and so its `workers_seen` marks)."""
    return max(stale_after_s / 3, 2.0)


def seen_window_s(stale_after_s: float) -> float:
    """How long after its last mark a worker still counts as alive."""
    return 2 * sweep_interval_s(stale_after_s) + SLACK_S
