"""Which services of a cluster a fleet event selects: read-only ECS calls, nothing changed.

By tag: ListServices through its paginator, then DescribeServices ten at a time (ECS's own limit) with
their tags, keeping the ACTIVE services that carry every tag. By name: DescribeServices ten at a time,
so a name that is not an ACTIVE service of the cluster is refused, named by its place in the list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

# One batching helper for every batched call (gateway's DescribeTasks too).
from recycler.aws.gateway import _batches, aws_errors
from recycler.model.errors import ConfigError, clip

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import ServiceTypeDef

# DescribeServices takes at most 10 services per call.
DESCRIBE_SERVICES_BATCH: Final = 10
# ListServices answers up to 100 ARNs a page (10 when not asked): fewer calls on a large cluster.
LIST_SERVICES_PAGE: Final = 100
# DRAINING and INACTIVE services are being deleted (or are): a run on one would only fail.
SELECTABLE_STATUS: Final = "ACTIVE"


@dataclass(frozen=True)
class SelectedService:
    """A selected service as the selection read it: what the fleet's admission and each service's lock need."""

    name: str
    arn: str
    # The most tasks its run could recycle: its desired or its running count, whichever is larger.
    tasks: int = 0
    # Its deployment alarms, when ECS applies them (they gate its run unless use_service_alarms is false).
    alarm_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arn": self.arn, "tasks": self.tasks, "alarm_names": list(self.alarm_names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectedService:
        return cls(str(data["name"]), str(data["arn"]), int(data["tasks"]), tuple(data.get("alarm_names") or ()))


def fleet_selection(
    ecs_client: ECSClient, cluster: str, names: Sequence[str], tags: Mapping[str, str]
) -> list[SelectedService]:
    """The services selected, sorted by name: those named (each checked), or those carrying every tag.

    Raises ConfigError naming ``services[i]`` for a name that is not an ACTIVE service of the cluster, and
    ``service_tags`` when the tags select nothing; AWS errors come out as AwsCallFailed.
    """
    if names:
        return _named(ecs_client, cluster, names)
    if not tags:
        raise ConfigError("services", "give services or service_tags to select the fleet")
    return _tagged(ecs_client, cluster, tags)


def fleet_services(ecs_client: ECSClient, cluster: str, names: Sequence[str], tags: Mapping[str, str]) -> list[str]:
    """The names of the services selected, sorted (see fleet_selection)."""
    return [selected.name for selected in fleet_selection(ecs_client, cluster, names, tags)]


def service_alarm_names(service: ServiceTypeDef) -> tuple[str, ...]:
    """The service's deployment alarms, when ECS applies them (enable true)."""
    alarms: Mapping[str, Any] = (service.get("deploymentConfiguration") or {}).get("alarms") or {}
    return tuple(alarms.get("alarmNames") or ()) if alarms.get("enable") else ()


def _selected(service: ServiceTypeDef) -> SelectedService:
    return SelectedService(
        name=service.get("serviceName", ""),
        arn=service.get("serviceArn", ""),
        tasks=max(int(service.get("desiredCount", 0)), int(service.get("runningCount", 0))),
        alarm_names=service_alarm_names(service),
    )


def service_name(name_or_arn: str) -> str:
    """A service's name from its name or its ARN (``...:service/cluster/name``, or the old ``service/name``)."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn.rsplit("/", 1)[-1]
    return name_or_arn


def _arn_cluster(name_or_arn: str) -> str | None:
    """The cluster a new-format service ARN names; None for a name or an old-format ARN."""
    if not name_or_arn.startswith("arn:"):
        return None
    path = name_or_arn.split(":", 5)[-1].split("/")
    return path[1] if len(path) == 3 else None


def _named(ecs: ECSClient, cluster: str, names: Sequence[str]) -> list[SelectedService]:
    # Refused before any call: an ARN of another cluster can never be a service of this one.
    for i, given in enumerate(names):
        arn_cluster = _arn_cluster(given)
        if arn_cluster is not None and arn_cluster != cluster.rsplit("/", 1)[-1]:
            raise ConfigError(f"services[{i}]", f"{clip(given)} is in cluster {clip(arn_cluster)}, not {clip(cluster)}")
    wanted: dict[str, int] = {}
    for i, given in enumerate(names):
        wanted.setdefault(service_name(given), i)
    found: dict[str, str] = {}
    described: dict[str, SelectedService] = {}
    for batch in _batches(list(wanted), DESCRIBE_SERVICES_BATCH):
        services, failures = _describe(ecs, cluster, batch, with_tags=False)
        for service in services:
            found[service.get("serviceName", "")] = service.get("status", "")
            described[service.get("serviceName", "")] = _selected(service)
        for arn, reason in failures:
            found.setdefault(service_name(arn), reason)
    for name, i in wanted.items():
        status = found.get(name, "MISSING")
        if status != SELECTABLE_STATUS:
            raise ConfigError(f"services[{i}]", f"{clip(name)} is not in cluster {clip(cluster)} ({status})")
    return [described[name] for name in sorted(wanted)]


def _tagged(ecs: ECSClient, cluster: str, tags: Mapping[str, str]) -> list[SelectedService]:
    selected: dict[str, SelectedService] = {}
    for batch in _batches(_list_service_arns(ecs, cluster), DESCRIBE_SERVICES_BATCH):
        services, _ = _describe(ecs, cluster, batch, with_tags=True)
        for service in services:
            if _selectable(service) and _carries(service, tags) and service.get("serviceName"):
                selected[service.get("serviceName", "")] = _selected(service)
    if not selected:
        shown = ", ".join(f"{clip(k)}={clip(v)}" for k, v in sorted(tags.items()))
        raise ConfigError("service_tags", f"{shown} selects no service of cluster {clip(cluster)}")
    return [selected[name] for name in sorted(selected)]


def _list_service_arns(ecs: ECSClient, cluster: str) -> list[str]:
    arns: list[str] = []
    pages = ecs.get_paginator("list_services").paginate(
        cluster=cluster, PaginationConfig={"PageSize": LIST_SERVICES_PAGE}
    )
    with aws_errors("ListServices"):
        for page in pages:
            arns.extend(page.get("serviceArns", []))
    # A page boundary moving under a concurrent create can repeat an ARN.
    return list(dict.fromkeys(arns))


def _describe(
    ecs: ECSClient, cluster: str, batch: list[str], *, with_tags: bool
) -> tuple[list[ServiceTypeDef], list[tuple[str, str]]]:
    """The services found, and each failure as (ARN, reason)."""
    with aws_errors("DescribeServices"):
        if with_tags:
            response = ecs.describe_services(cluster=cluster, services=batch, include=["TAGS"])
        else:
            response = ecs.describe_services(cluster=cluster, services=batch)
    failures = [(f.get("arn", ""), f.get("reason", "MISSING")) for f in response.get("failures", [])]
    return list(response.get("services", [])), failures


def _selectable(service: ServiceTypeDef) -> bool:
    return service.get("status") == SELECTABLE_STATUS


def _carries(service: ServiceTypeDef, tags: Mapping[str, str]) -> bool:
    have = {t.get("key"): t.get("value") for t in service.get("tags", [])}
    return all(have.get(key) == value for key, value in tags.items())
