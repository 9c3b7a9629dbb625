"""The durable fleet's admission reads nothing per service: each service's worst case comes from what the
selection read. It must never be shorter than what the service's own dry run would admit it against, and a
run given its service's ARN (as a fleet gives each) finds its lock item without a call."""

from __future__ import annotations

from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed

from recycler.aws.services import fleet_selection
from recycler.model.request import parse_event
from recycler.model.settings import RecycleSettings
from recycler.run.budget import durable_plan_seconds, selected_durable_seconds


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"batch_size": 2},
        {"batch_size": 5, "max_tasks": 3},
        {"checkpoint_percentages": [20, 50, 100], "checkpoint_delay_seconds": 600},
        {"batch_size": 4, "checkpoint_percentages": [10, 20], "checkpoint_delay_seconds": 60},
        {"alarm_names": ["web-5xx"]},
        {"min_task_age_seconds": 3600},
    ],
)
def test_the_selections_worst_case_is_never_shorter_than_the_dry_runs(bed: Bed, fields: dict[str, Any]) -> None:
    bed.add_service(tasks=5, target=(1, 10))
    if "alarm_names" in fields:
        bed.add_alarm("web-5xx")
    settings = RecycleSettings()
    request = parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 30, **fields})
    plan = bed.run(dry_run=True, settings=settings, wait_time=30, **fields).plan
    assert plan is not None and plan["batches"] > 0
    (selected,) = fleet_selection(bed.ecs, CLUSTER, [SERVICE], {})
    assert selected.tasks == 5
    admitted = selected_durable_seconds(selected.tasks, bool(request.alarm_names), request, settings)
    assert plan is not None and admitted >= durable_plan_seconds(plan, request, settings)


def test_a_service_given_by_its_arn_finds_its_lock_with_one_call_fewer(bed: Bed) -> None:
    bed.add_service(tasks=2, target=(1, 6))
    (selected,) = fleet_selection(bed.ecs, CLUSTER, [SERVICE], {})
    by_name = bed.sim.calls.get("describe_services", 0)
    named = bed.run(dry_run=True)
    by_name = bed.sim.calls["describe_services"] - by_name
    by_arn = bed.sim.calls["describe_services"]
    arn_run = bed.run(service=selected.arn, dry_run=True)
    by_arn = bed.sim.calls["describe_services"] - by_arn
    assert (named.status, arn_run.status) == ("dry_run", "dry_run") and arn_run.service == SERVICE
    assert by_arn == by_name - 1
    # The same lock item either way: while a run by name holds it, a dry run by ARN would be refused by it.
    seen: dict[str, Any] = {}
    bed.sim.at(30, "dry run by ARN", lambda: seen.setdefault("report", bed.run(service=selected.arn, dry_run=True)))
    assert bed.run(wait_time=5, owner="by-name").status == "succeeded"
    refusals = seen["report"].would_refuse or []
    assert [r["check"] for r in refusals] == ["lock"] and "by-name" in refusals[0]["problem"]
    bed.assert_restored()
