"""Whether a run may touch a service, from its description: its state, its scheduling, its deployment
controller and its deployments; and whether an ARN in the event names the region and account reached."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from recycler.model.errors import ConfigError, PreflightError
from recycler.model.request import RecycleRequest

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import ServiceTypeDef


def untouchable(request: RecycleRequest, service: ServiceTypeDef) -> list[tuple[str, PreflightError]]:
    """Why the run may not touch this service, as (check, error): the run raises the first."""
    name, status = request.service_name, service.get("status")
    controller_config: Mapping[str, Any] = service.get("deploymentController") or {}
    controller = controller_config.get("type", "ECS")
    deployments = service.get("deployments", [])
    found = [
        ("service", status != "ACTIVE", f"service {name} is {status}, not ACTIVE"),
        (
            "service",
            service.get("schedulingStrategy") == "DAEMON",
            "DAEMON services run one task per instance and have no desired count to surge",
        ),
        (
            "service",
            controller != "ECS",
            f"service {name} uses the {controller} deployment controller; its tasks belong to task sets that "
            "this tool does not manage (only ECS rolling-update services are supported)",
        ),
        (
            "deployment",
            len(deployments) > 1,
            f"a deployment is in progress ({len(deployments)} deployments at once); wait for it to finish "
            "before recycling",
        ),
        (
            "deployment",
            len(deployments) <= 1 and any(d.get("rolloutState") == "IN_PROGRESS" for d in deployments),
            "a deployment is in progress (its rolloutState is IN_PROGRESS); wait for it to finish before recycling",
        ),
    ]
    return [(check, PreflightError(message)) for check, applies, message in found if applies]


def check_arn_matches(request: RecycleRequest, service: ServiceTypeDef) -> None:
    """An ARN in the event must name the region and account the session reaches, not just the names."""
    actual = str(service.get("serviceArn", "")).split(":")
    if len(actual) < 6:
        return
    for field_name, (region, account) in request.arn_fields().items():
        for what, given, reached in (("region", region, actual[3]), ("account", account, actual[4])):
            if given != reached:
                raise ConfigError(field_name, f"the ARN's {what} is {given}, but the session reaches {reached}")
