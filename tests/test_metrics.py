"""Metrics: a run's outcome and timings as CloudWatch embedded-metric-format lines on stdout."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed, load_event

from dev.simulator import FakeLambdaContext
from recycler.hosts import plain
from recycler.hosts.config import parse_config
from recycler.observability import metrics


def plain_handler(bed: Bed) -> Any:
    """The plain handler on the bed's virtual clock, with an input.json of defaults."""
    return plain.build_handler(clock=bed.clock, config=parse_config({}))


def test_a_run_publishes_its_metrics_as_emf_lines(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a recycle of three tasks through the plain handler, as in Lambda
    bed.add_service(tasks=3, target=(1, 6))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ecs-task-recycle")
    out = io.StringIO()
    with redirect_stdout(out):
        report = plain_handler(bed)(load_event("recycle.json"), FakeLambdaContext(bed.clock))

    # THEN stdout carries EMF: the namespace, Cluster and Service, the outcome and the timings
    (line,) = [json.loads(text) for text in out.getvalue().splitlines() if text.startswith("{")]
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "ECSTaskRecycle" and directive["Dimensions"] == [["Cluster", "Service"]]
    assert (line["Cluster"], line["Service"]) == (CLUSTER, SERVICE)
    assert line["RunsSucceeded"] == [1.0] and line["RunsFailed"] == [0.0] and line["RunsCancelled"] == [0.0]
    assert line["TasksRecycled"] == [3.0] and line["FailedReplacements"] == [0.0]
    assert line["ReplacementSeconds"] == [t["seconds"] for t in report["tasks_recycled"]]
    assert line["RunDurationSeconds"] == [report["duration_seconds"]]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["ReplacementSeconds"] == "Seconds" and units["RunsFailed"] == "Count"


def test_a_long_run_splits_its_replacement_seconds_across_lines() -> None:
    report = {
        "status": "failed",
        "cluster": "c",
        "service": "s",
        "tasks_recycled": [{"seconds": float(i)} for i in range(250)],
        "failed_replacements": 3,
        "duration_seconds": 9000.0,
    }
    documents = metrics.emf_documents(report)
    assert [len(d["ReplacementSeconds"]) for d in documents] == [99, 99, 52]
    assert documents[0]["RunsFailed"] == [1.0] and documents[0]["FailedReplacements"] == [3.0]
    assert "RunsFailed" not in documents[1]
    assert metrics.emf_documents({**report, "status": "dry_run"}) == []


FLEET = {
    "fleet": True,
    "status": "failed",
    "cluster": "prod",
    "region": "eu-west-1",
    "started_at": "2026-11-28T21:00:00+00:00",
    "duration_seconds": 1800.5,
    "selection": {"service_tags": {"recycle": "weekly"}},
    "max_parallel_services": 2,
    "on_service_failure": "continue",
    "totals": {
        "services": {"succeeded": 15, "failed": 2, "refused": 1, "incomplete": 1},
        "tasks_recycled": 97,
        "task_total": 100,
    },
    "services": [{"service": f"svc-{i}", "status": "succeeded"} for i in range(19)],
    "not_started": ["svc-19"],
    "error": None,
    "error_type": None,
}


def test_a_fleet_publishes_its_totals_in_one_document_by_cluster() -> None:
    # GIVEN a fleet report: 15 services succeeded, 2 failed, 1 refused, 1 ran out of time, 1 never started
    out: list[str] = []
    metrics.publish(FLEET, out.append)

    # THEN one EMF line carries the fleet's totals, by Cluster alone (no Service: it is the fleet's)
    (line,) = [json.loads(text) for text in out]
    value = {name: line[name] for name in line if name.startswith("Fleet")}
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "ECSTaskRecycle" and directive["Dimensions"] == [["Cluster"]]
    assert line["Cluster"] == "prod" and "Service" not in line
    # AND a refused service counts as failed, as it does in the fleet's status
    assert value == {
        "FleetServicesSucceeded": [15.0],
        "FleetServicesFailed": [3.0],
        "FleetServicesIncomplete": [1.0],
        "FleetServicesCancelled": [0.0],
        "FleetServicesNotStarted": [1.0],
        "FleetTasksRecycled": [97.0],
        "FleetTaskTotal": [100.0],
        "FleetDurationSeconds": [1800.5],
    }
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["FleetDurationSeconds"] == "Seconds" and units["FleetServicesFailed"] == "Count"
    assert len(directive["Metrics"]) <= 100
    # AND none of a single run's metrics, which each service's own run writes
    assert not {"RunsSucceeded", "TasksRecycled", "ReplacementSeconds"} & set(units)


@pytest.mark.parametrize("status", ["dry_run", "handed_off"])
def test_a_fleet_that_changed_nothing_yet_publishes_nothing(status: str) -> None:
    assert metrics.emf_documents({**FLEET, "status": status}) == []


def test_a_succeeded_fleet_has_data_for_every_outcome() -> None:
    fleet = {**FLEET, "status": "succeeded", "totals": {"services": {"succeeded": 3}}, "not_started": []}
    (document,) = metrics.fleet_emf_documents(fleet)
    assert document["FleetServicesSucceeded"] == [3.0]
    for name in ("FleetServicesFailed", "FleetServicesIncomplete", "FleetServicesCancelled", "FleetServicesNotStarted"):
        assert document[name] == [0.0], name
    assert (document["FleetTasksRecycled"], document["FleetTaskTotal"]) == ([0.0], [0.0])
