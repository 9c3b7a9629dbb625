"""Fleet reports as FleetReport.to_dict() gives them (FLEET.md), built here from real single-service reports, so the
fleet's email, metrics and events are tested on what a service's run really returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The fleet's status is the worst of its services' outcomes, in this order (a refused service counts as failed).
_WORST = ("failed", "incomplete", "cancelled")


def fleet_status(statuses: Sequence[str]) -> str:
    if statuses and all(s == "dry_run" for s in statuses):
        return "dry_run"
    if all(s == "succeeded" for s in statuses):
        return "succeeded"
    worst = {"refused": "failed"}
    seen = {worst.get(s, s) for s in statuses}
    return next((s for s in _WORST if s in seen), "failed")


def fleet_dict(
    reports: Sequence[Mapping[str, Any]],
    cluster: str,
    not_started: Sequence[str] = (),
    **overrides: Any,
) -> dict[str, Any]:
    """The fleet report of these services' own reports (RecycleReport.to_dict()), in the contract's shape."""
    statuses = [str(r["status"]) for r in reports]
    by_outcome: dict[str, int] = {}
    for status in statuses:
        by_outcome[status] = by_outcome.get(status, 0) + 1
    fleet: dict[str, Any] = {
        "fleet": True,
        "status": fleet_status(statuses) if not not_started or statuses else "cancelled",
        "cluster": cluster,
        "region": reports[0].get("region") if reports else None,
        "started_at": reports[0].get("started_at") if reports else None,
        "duration_seconds": float(sum(r.get("duration_seconds") or 0 for r in reports)),
        "selection": {"services": [r["service"] for r in reports] + list(not_started)},
        "max_parallel_services": 1,
        "on_service_failure": "continue",
        "totals": {
            "services": by_outcome,
            "tasks_recycled": sum(len(r.get("tasks_recycled") or []) for r in reports),
            "task_total": sum(r.get("task_total") or 0 for r in reports),
        },
        "services": [dict(r) for r in reports],
        "not_started": list(not_started),
        "error": None,
        "error_type": None,
    }
    fleet.update(overrides)
    return fleet
