"""CloudWatch metrics for each run, as Embedded Metric Format (EMF) log lines.

Lambda turns EMF lines on stdout into metrics: no API call, no permission.
Namespace ECSTaskRecycle, dimensions Cluster and Service:

- RunsSucceeded, RunsFailed, RunsIncomplete, RunsCancelled, RunsRefused: 1 for
  this run's outcome and 0 for the others, so an alarm sees data on every run
  (refused: another run held the service's lock, or the event was invalid);
- TasksRecycled and FailedReplacements (Count);
- ReplacementSeconds, one value per recycled task, and RunDurationSeconds (Seconds).

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
# Below the provider's 100 values per metric, at which it would print on its own.
VALUES_PER_LINE = 99


def emf_documents(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The EMF documents for a finished run; none for a dry run, a hand-off, status or cancel."""
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


def publish(report: Mapping[str, Any], write: Callable[[str], None] = print) -> None:
    """One line per document on stdout, where Lambda picks EMF up."""
    for document in emf_documents(report):
        write(json.dumps(document))


def _provider(report: Mapping[str, Any]) -> AmazonCloudWatchEMFProvider:
    provider = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, metric_set={}, dimension_set={}, metadata_set={})
    provider.add_dimension("Cluster", str(report.get("cluster")))
    provider.add_dimension("Service", str(report.get("service")))
    return provider
