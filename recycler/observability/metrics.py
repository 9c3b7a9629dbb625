"""CloudWatch metrics for each run, as Embedded Metric Format (EMF) log lines.

Lambda turns EMF lines on stdout into metrics: no API call, no permission.
Namespace ECSTaskRecycle, dimensions Cluster and Service:

- RunsSucceeded, RunsFailed, RunsIncomplete, RunsCancelled, RunsRefused: 1 for
  this run's outcome and 0 for the others, so an alarm sees data on every run
  (refused: another run held the service's lock, or the event was invalid);
- TasksRecycled and FailedReplacements (Count);
- ReplacementSeconds, one value per recycled task, and RunDurationSeconds (Seconds).

A fleet report (``"fleet": true``) adds one document of fleet totals, dimension Cluster only:

- FleetServicesSucceeded, FleetServicesFailed (a refused service counts as failed, as in the fleet's
  status), FleetServicesIncomplete, FleetServicesCancelled and FleetServicesNotStarted (Count);
- FleetTasksRecycled and FleetTaskTotal (Count), FleetDurationSeconds (Seconds).

Each service's own run writes its own documents, as a single run does; the fleet's are its totals only.

The EMF document is built by Powertools for AWS Lambda's metrics provider
(one instance per run, so nothing is shared between runs). EMF allows 100
values per metric in one line: a longer run's ReplacementSeconds go out in
several lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

NAMESPACE = "ECSTaskRecycle"
RUN_METRICS = {
    "succeeded": "RunsSucceeded",
    "failed": "RunsFailed",
    "incomplete": "RunsIncomplete",
    "cancelled": "RunsCancelled",
    "refused": "RunsRefused",
}
# The fleet's services by outcome; a refused service is a failed one for the fleet, as in its status.
FLEET_SERVICE_METRICS = {
    "succeeded": "FleetServicesSucceeded",
    "failed": "FleetServicesFailed",
    "refused": "FleetServicesFailed",
    "incomplete": "FleetServicesIncomplete",
    "cancelled": "FleetServicesCancelled",
}
# Below the provider's 100 values per metric, at which it would print on its own.
VALUES_PER_LINE = 99

# An EMF document: JSON, as the provider serialises it.
EmfDocument = dict[str, Any]


def emf_documents(report: Mapping[str, Any]) -> list[EmfDocument]:
    """The EMF documents for a finished run or fleet; none for a dry run, a hand-off, status or cancel."""
    if report.get("fleet") is True:
        return fleet_emf_documents(report)
    status = report.get("status")
    if status not in RUN_METRICS:
        return []
    seconds = [float(t["seconds"]) for t in report.get("tasks_recycled") or []]
    chunks = [seconds[i : i + VALUES_PER_LINE] for i in range(0, len(seconds), VALUES_PER_LINE)] or [[]]
    documents = []
    for number, chunk in enumerate(chunks):
        provider = _provider(report)
        if number == 0:
            for outcome, name in RUN_METRICS.items():
                provider.add_metric(name, MetricUnit.Count, 1 if status == outcome else 0)
            provider.add_metric("TasksRecycled", MetricUnit.Count, len(seconds))
            provider.add_metric("FailedReplacements", MetricUnit.Count, int(report.get("failed_replacements") or 0))
            provider.add_metric("RunDurationSeconds", MetricUnit.Seconds, float(report.get("duration_seconds") or 0))
        for value in chunk:
            provider.add_metric("ReplacementSeconds", MetricUnit.Seconds, value)
        documents.append(dict(provider.serialize_metric_set()))
    return documents


def fleet_emf_documents(fleet: Mapping[str, Any]) -> list[EmfDocument]:
    """The fleet's totals as one EMF document, dimension Cluster; none for a dry run or a hand-off."""
    if fleet.get("status") not in RUN_METRICS:
        return []
    totals = fleet.get("totals")
    totals = totals if isinstance(totals, Mapping) else {}
    by_outcome = totals.get("services")
    by_outcome = by_outcome if isinstance(by_outcome, Mapping) else {}
    counts = dict.fromkeys(FLEET_SERVICE_METRICS.values(), 0)
    for outcome, name in FLEET_SERVICE_METRICS.items():
        counts[name] += int(by_outcome.get(outcome) or 0)
    provider = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, metric_set={}, dimension_set={}, metadata_set={})
    provider.add_dimension("Cluster", str(fleet.get("cluster")))
    for name, count in counts.items():
        provider.add_metric(name, MetricUnit.Count, count)
    provider.add_metric("FleetServicesNotStarted", MetricUnit.Count, len(fleet.get("not_started") or []))
    provider.add_metric("FleetTasksRecycled", MetricUnit.Count, int(totals.get("tasks_recycled") or 0))
    provider.add_metric("FleetTaskTotal", MetricUnit.Count, int(totals.get("task_total") or 0))
    provider.add_metric("FleetDurationSeconds", MetricUnit.Seconds, float(fleet.get("duration_seconds") or 0))
    return [dict(provider.serialize_metric_set())]


def publish(report: Mapping[str, Any], write: Callable[[str], None] = print) -> None:
    """One line per document on stdout, where Lambda picks EMF up."""
    for document in emf_documents(report):
        write(json.dumps(document))


def _provider(report: Mapping[str, Any]) -> AmazonCloudWatchEMFProvider:
    provider = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, metric_set={}, dimension_set={}, metadata_set={})
    provider.add_dimension("Cluster", str(report.get("cluster")))
    provider.add_dimension("Service", str(report.get("service")))
    return provider
