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
