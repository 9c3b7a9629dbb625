"""Every AWS call a run makes on its service, reads and writes, and the one way AWS errors are wrapped.

Every listing goes through a paginator (ListTasks pages at 100), DescribeTasks
is batched by 100, and every botocore error becomes AwsCallFailed naming the
call and the AWS error code, with the original chained as ``__cause__``.
The clients are typed by boto3-stubs, imported for the type checker only:
the deployed package carries no stubs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, cast

from botocore.exceptions import BotoCoreError, ClientError

from recycler.model.errors import AwsCallFailed, ServiceNotFound
from recycler.model.request import MAX_ALARMS, RecycleRequest

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_application_autoscaling.type_defs import (
        RegisterScalableTargetRequestTypeDef,
        SuspendedStateTypeDef,
    )
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import CompositeAlarmTypeDef, MetricAlarmTypeDef
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.literals import DesiredStatusType
    from mypy_boto3_ecs.type_defs import DescribeServicesResponseTypeDef, ServiceTypeDef, TaskTypeDef
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_elbv2.type_defs import TargetDescriptionTypeDef
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sts import STSClient

P = ParamSpec("P")
R = TypeVar("R")

SCALABLE_DIMENSION: Final = "ecs:service:DesiredCount"
SUSPENDED_FLAGS = ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")
# DescribeTasks takes at most 100 tasks per call (DescribeAlarms 100 names: MAX_ALARMS).
DESCRIBE_TASKS_BATCH = 100


@contextmanager
def aws_errors(operation: str) -> Iterator[None]:
    """Turn botocore's errors into AwsCallFailed, naming the call and the AWS error code."""
    try:
        yield
    except ClientError as e:
        message = e.response.get("Error", {}).get("Message", "")
        detail = f"{error_code(e)}: {message}" if message else error_code(e)
        raise AwsCallFailed(f"{e.operation_name} failed: {detail}") from e
    except BotoCoreError as e:
        raise AwsCallFailed(f"{operation} failed: {e}") from e


def error_code(error: BaseException | None) -> str:
    """The AWS error code of a ClientError (or of the one an AwsCallFailed wraps), else the type name."""
    if isinstance(error, AwsCallFailed):
        error = error.__cause__
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


@dataclass(frozen=True)
class ScalableTarget:
    """The service's Application Auto Scaling target, as read."""

    min_capacity: int
    max_capacity: int
    suspended: dict[str, bool]

    def to_dict(self) -> dict[str, Any]:
        return {"MinCapacity": self.min_capacity, "MaxCapacity": self.max_capacity, "SuspendedState": self.suspended}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalableTarget:
        return cls(int(data["MinCapacity"]), int(data["MaxCapacity"]), dict(data["SuspendedState"]))


class ServiceGateway:
    """One service's AWS calls: reads of it, its tasks, task definition, target groups, scalable target and alarms,
    and the writes a run makes (desired count, scalable target, StopTask, the cancel tag)."""

    def __init__(
        self,
        ecs: ECSClient,
        autoscaling: ApplicationAutoScalingClient | None,
        elbv2: ElasticLoadBalancingv2Client | None,
        request: RecycleRequest,
        cloudwatch: CloudWatchClient | None = None,
        sts: STSClient | None = None,
    ) -> None:
        self.ecs = ecs
        self.autoscaling = autoscaling
        self.elbv2 = elbv2
        self.cloudwatch = cloudwatch
        self.request = request
        # Only for the account a not-found error names.
        self.sts = sts

    @staticmethod
    def _call(operation: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        with aws_errors(getattr(operation, "__name__", "AWS call")):
            return operation(*args, **kwargs)

    # ------------------------------------------------------------------ reads

    def describe_service(self, include_tags: bool = False) -> ServiceTypeDef:
        request = self.request
        try:
            response = self._describe_services(include_tags)
        except AwsCallFailed as e:
            if error_code(e.__cause__) == "ClusterNotFoundException":
                raise ServiceNotFound(f"cluster not found: {request.cluster_name} ({self.searched()})") from e.__cause__
            raise
        services = response.get("services", [])
        if not services:
            reasons = ", ".join(f.get("reason", "?") for f in response.get("failures", [])) or "MISSING"
            raise ServiceNotFound(
                f"service not found: {request.service_name} in cluster {request.cluster_name} "
                f"({reasons}; {self.searched()})"
            )
        return services[0]

    def _describe_services(self, include_tags: bool) -> DescribeServicesResponseTypeDef:
        cluster, services = self.request.cluster_name, [self.request.service_name]
        if include_tags:
            return self._call(self.ecs.describe_services, cluster=cluster, services=services, include=["TAGS"])
        return self._call(self.ecs.describe_services, cluster=cluster, services=services)

    def searched(self) -> str:
        """Where the service was looked for: a wrong region or account is the usual cause of a not-found.

        The account costs a call, so it is asked for here only, once; the error must come out whatever STS says.
        """
        region = getattr(getattr(self.ecs, "meta", None), "region_name", None) or "unknown"
        account = "account unknown"
        if self.sts is not None:
            try:
                account = f"account {self.sts.get_caller_identity()['Account']}"
            except (ClientError, BotoCoreError, KeyError, TypeError):
                pass
        return f"searched region {region}, {account}"

    def list_task_arns(self, desired_status: DesiredStatusType = "RUNNING") -> list[str]:
        arns: list[str] = []
        paginator = self.ecs.get_paginator("list_tasks")
        pages = paginator.paginate(
            cluster=self.request.cluster_name, serviceName=self.request.service_name, desiredStatus=desired_status
        )
        with aws_errors("ListTasks"):
            for page in pages:
                arns.extend(page.get("taskArns", []))
        return arns

    def describe_tasks(self, arns: Iterable[str]) -> list[TaskTypeDef]:
        tasks: list[TaskTypeDef] = []
        for batch in _batches(list(arns), DESCRIBE_TASKS_BATCH):
            response = self._call(self.ecs.describe_tasks, cluster=self.request.cluster_name, tasks=batch)
            tasks.extend(response.get("tasks", []))
        return tasks

    def has_health_checks(self, task_definition: str | None) -> bool:
        if not task_definition:
            return False
        response = self._call(self.ecs.describe_task_definition, taskDefinition=task_definition)
        containers = response.get("taskDefinition", {}).get("containerDefinitions", [])
        return any(c.get("healthCheck") for c in containers)

    def target_health(self, target_group_arn: str, targets: Sequence[TargetDescriptionTypeDef]) -> list[str | None]:
        """The states of these targets in the group (all of its targets when none are given)."""
        elbv2 = _given(self.elbv2, "elbv2")
        if targets:
            response = self._call(elbv2.describe_target_health, TargetGroupArn=target_group_arn, Targets=list(targets))
        else:
            response = self._call(elbv2.describe_target_health, TargetGroupArn=target_group_arn)
        return [d.get("TargetHealth", {}).get("State") for d in response.get("TargetHealthDescriptions", [])]

    def task_protection(self, arns: list[str]) -> dict[str, str]:
        """The tasks whose scale-in protection is on, each with when it expires (ISO 8601), in one call.

        GetTaskProtection takes up to 100 tasks, and a batch is at most 100.
        """
        if not arns:
            return {}
        response = self._call(self.ecs.get_task_protection, cluster=self.request.cluster_name, tasks=arns)
        protected: dict[str, str] = {}
        for entry in response.get("protectedTasks", []):
            if not entry.get("protectionEnabled"):
                continue
            expires = entry.get("expirationDate")
            protected[entry["taskArn"]] = expires.isoformat(timespec="seconds") if expires else "unknown"
        return protected

    def scalable_target(self) -> ScalableTarget | None:
        autoscaling = _given(self.autoscaling, "autoscaling")
        paginator = autoscaling.get_paginator("describe_scalable_targets")
        with aws_errors("DescribeScalableTargets"):
            for page in paginator.paginate(
                ServiceNamespace="ecs", ResourceIds=[self.resource_id()], ScalableDimension=SCALABLE_DIMENSION
            ):
                for target in page.get("ScalableTargets", []):
                    flags = target.get("SuspendedState", {})
                    return ScalableTarget(
                        int(target["MinCapacity"]),
                        int(target["MaxCapacity"]),
                        {k: bool(flags.get(k, False)) for k in SUSPENDED_FLAGS},
                    )
        return None

    def alarm_states(self, names: Iterable[str]) -> dict[str, dict[str, str]]:
        """Each named alarm's state and its reason, metric and composite alike, 100 names per call.

        An alarm that does not exist is simply absent from the answer.
        """
        wanted = list(names)
        states: dict[str, dict[str, str]] = {}
        cloudwatch = _given(self.cloudwatch, "cloudwatch")
        paginator = cloudwatch.get_paginator("describe_alarms")
        with aws_errors("DescribeAlarms"):
            for batch in _batches(wanted, MAX_ALARMS):
                # MaxRecords (PageSize) at its ceiling: the default page could split 100 names over several calls.
                pages = paginator.paginate(
                    AlarmNames=batch,
                    AlarmTypes=["MetricAlarm", "CompositeAlarm"],
                    PaginationConfig={"PageSize": MAX_ALARMS},
                )
                for page in pages:
                    alarms: list[MetricAlarmTypeDef | CompositeAlarmTypeDef] = [
                        *page.get("MetricAlarms", []),
                        *page.get("CompositeAlarms", []),
                    ]
                    for alarm in alarms:
                        states[alarm["AlarmName"]] = {
                            "state": str(alarm.get("StateValue", "")),
                            "reason": str(alarm.get("StateReason", "")),
                        }
        return states

    def resource_id(self) -> str:
        return f"service/{self.request.cluster_name}/{self.request.service_name}"

    # ----------------------------------------------------------------- writes

    def set_desired_count(self, desired_count: int) -> None:
        """UpdateService with an absolute desired count: repeating it is harmless."""
        self._call(
            self.ecs.update_service,
            cluster=self.request.cluster_name,
            service=self.request.service_name,
            desiredCount=desired_count,
        )

    def register_scalable_target(self, suspended: Mapping[str, bool], max_capacity: int | None = None) -> None:
        """RegisterScalableTarget on an existing target changes only the fields given (MinCapacity is never sent)."""
        autoscaling = _given(self.autoscaling, "autoscaling")
        call: RegisterScalableTargetRequestTypeDef = {
            "ServiceNamespace": "ecs",
            "ResourceId": self.resource_id(),
            "ScalableDimension": SCALABLE_DIMENSION,
            "SuspendedState": cast("SuspendedStateTypeDef", dict(suspended)),
        }
        if max_capacity is not None:
            call["MaxCapacity"] = max_capacity
        self._call(autoscaling.register_scalable_target, **call)

    def stop_task(self, task_arn: str, reason: str) -> str:
        """StopTask; returns the reason the task carries, which is another's when someone stopped it first."""
        response = self._call(self.ecs.stop_task, cluster=self.request.cluster_name, task=task_arn, reason=reason)
        return response.get("task", {}).get("stoppedReason") or ""

    def tag_service(self, service_arn: str, key: str, value: str) -> None:
        self._call(self.ecs.tag_resource, resourceArn=service_arn, tags=[{"key": key, "value": value}])

    def untag_service(self, service_arn: str, key: str) -> None:
        self._call(self.ecs.untag_resource, resourceArn=service_arn, tagKeys=[key])


def start_execution(lambda_client: LambdaClient, function_name: str, execution_name: str, payload: bytes) -> int | None:
    """Invoke a durable function asynchronously (InvocationType Event) under a deterministic execution name.

    Returns the StatusCode; a second start under the name fails with DurableExecutionAlreadyStartedException.
    """
    with aws_errors("Invoke"):
        response = lambda_client.invoke(
            FunctionName=function_name,
            InvocationType="Event",
            DurableExecutionName=execution_name,
            Payload=payload,
        )
    return response.get("StatusCode")


T = TypeVar("T")


def _given(client: T | None, name: str) -> T:
    """The client a call needs: a gateway built without it (a status read, a test) must not reach for it."""
    if client is None:
        raise TypeError(f"this gateway was built without a {name} client")
    return client


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


RETRY_ATTEMPTS = 3


def retrying(fn: Callable[[], T], sleep: Callable[[float], None], log: Callable[..., None]) -> T | str:
    """Run one restore action, retrying on AWS errors. Returns the error text if it never succeeds.

    Used where failing is not an option that may raise: the restore, and the lock writes it records.
    """
    last = ""
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return fn()
        except AwsCallFailed as e:
            last = str(e)
            log(logging.ERROR, f"Restore call failed (attempt {attempt}/{RETRY_ATTEMPTS}): {e}")
            if attempt < RETRY_ATTEMPTS:
                sleep(2.0 * attempt)
    return last
