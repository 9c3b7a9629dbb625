"""A simulated ECS service scheduler on top of moto, on a virtual clock.

moto's ECS has no scheduler: creating a service starts no task, and a stopped
task is never replaced. ``EcsSimulator`` wraps moto's ECS backend so that every
API call first reconciles each service to its desired count, as ECS would have
done by then. Nothing runs in a thread (moto's dicts are not thread-safe); time
only moves when someone sleeps on the ``VirtualClock``.

It models start latency, draining (a stopped task stays RUNNING with
desiredStatus STOPPED and still counts in runningCount), tasks that fail to
start, tasks that never become healthy, target-group health, autoscaling or an
operator changing desired count mid-run, the scalable-target clamp rule, and
injected API errors. It also records what the engine could never see directly:
the minimum serving capacity and the maximum number of live tasks over time.

This module is for tests, the demo and the benchmark. It is not in the Lambda
package.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
import botocore.endpoint
from botocore.config import Config
from moto import mock_aws
from moto.applicationautoscaling.models import ApplicationAutoscalingBackend, applicationautoscaling_backends
from moto.cloudwatch.models import CloudWatchBackend
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.models import DynamoDBBackend
from moto.ecs.models import EC2ContainerServiceBackend, Service, Task, ecs_backends
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus
from moto.moto_api import state_manager

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
EPOCH_2026 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PLACEMENT_EVENT_INTERVAL_SECONDS = 60.0
# The tasks a service starts with were started this long ago, spread at random (seeded): up to three days.
INITIAL_TASK_AGES_SECONDS = (3_600.0, 3 * 86_400.0)


class LambdaKilled(BaseException):
    """The host killed the run, as Lambda does at its timeout. Not catchable by `except Exception`."""


def _status_of(task: Any) -> str:
    """A moto task's lastStatus as the simulator last set it. moto's property would re-run its state machine
    (which the simulator turns off) on every read, and a fleet's reconcile reads it millions of times."""
    return str(task._status)


class VirtualClock:
    """Time that moves only when something sleeps. Optionally kills the run at a set time."""

    def __init__(self, start: float = EPOCH_2026) -> None:
        self.start = start
        self.t = start
        self.kill_at: float | None = None
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self.t += seconds
        self.slept += seconds
        if self.kill_at is not None and self.t >= self.kill_at:
            self.kill_at = None
            raise LambdaKilled(f"killed at virtual t={self.t - self.start:.0f}s")

    @property
    def elapsed(self) -> float:
        return self.t - self.start


class FakeLambdaContext:
    """A LambdaContext whose remaining time follows the virtual clock."""

    def __init__(self, clock: VirtualClock, timeout_seconds: float = 900.0, request_id: str = "req-0001") -> None:
        self.clock = clock
        self.deadline = clock.now() + timeout_seconds
        self.aws_request_id = request_id
        self.function_name = "ecs-task-recycle"
        self.log_group_name = "/aws/lambda/ecs-task-recycle"
        self.log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:ecs-task-recycle"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock.now()) * 1000))


@dataclass
class Behaviour:
    """How one service's tasks behave. Mutable: tests change it mid-run."""

    start_seconds: float = 40.0
    drain_seconds: float = 30.0
    # Each start takes start_seconds ± up to this much (seeded, so runs repeat exactly).
    start_jitter_seconds: float = 0.0
    # Failed starts: the next N tasks launched stop with TaskFailedToStart.
    fail_next_starts: int = 0
    fail_reason: str = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
    fail_after_seconds: float = 10.0
    # Tasks launched while this is set stay UNHEALTHY forever.
    never_healthy: bool = False
    # How many of the service's tasks the cluster can hold at once; None: no limit. Beyond it,
    # ECS posts "unable to place a task" service events and launches nothing.
    capacity: int | None = None
    # Launched tasks sit in PROVISIONING this long before PENDING (capacity-provider scaling).
    provisioning_seconds: float = 0.0
    # The zones tasks are spread over: each launch goes to the zone with the fewest live tasks.
    zones: tuple[str, ...] = ("us-east-1a", "us-east-1b", "us-east-1c")
    # The deployment's rolloutState as DescribeServices reports it (IN_PROGRESS: a rollout under way).
    rollout_state: str = "COMPLETED"


@dataclass
class _Meta:
    service_key: str
    launched_at: float
    running_at: float
    fails: bool
    never_healthy: bool
    stop_at: float | None = None
    ip: str = ""
    # PROVISIONING until then, PENDING until running_at.
    pending_at: float = 0.0

    @property
    def start_seconds(self) -> float:
        """From created to RUNNING."""
        return self.running_at - self.launched_at


@dataclass
class Fault:
    operation: str
    code: str
    message: str
    times: int
    after_calls: int = 0
    status: int = 400
    # The call takes effect, then the caller sees the error (a timeout after the server acted).
    applied: bool = False


@dataclass
class Observation:
    """What the simulator saw, between and during API calls."""

    min_serving: dict[str, int] = field(default_factory=dict)
    max_live: dict[str, int] = field(default_factory=dict)
    stops: dict[str, int] = field(default_factory=dict)  # task arn -> StopTask calls that stopped it
    # Tasks a StopTask reached while their scale-in protection was on.
    stopped_while_protected: list[str] = field(default_factory=list)


class EcsSimulator:
    """Install with ``with EcsSimulator(clock) as sim:``; inside, moto's ECS behaves like ECS."""

    _WRAPPED_ECS = (
        "create_service",
        "update_service",
        "describe_services",
        "list_tasks",
        "describe_tasks",
        "stop_task",
        "tag_resource",
        "untag_resource",
        "list_tags_for_resource",
        "describe_task_definition",
    )
    _WRAPPED_AAS = ("register_scalable_target", "describe_scalable_targets")
    # The lock table: counted, and faults can be injected like any other call.
    _WRAPPED_DDB = ("get_item", "put_item", "update_item", "delete_item")
    # DescribeAlarms by name (the alarm gate's one read): counted, and faults can be injected.
    _WRAPPED_CW = ("get_alarms_by_alarm_names",)

    def __init__(self, clock: VirtualClock, region: str = REGION, account_id: str = ACCOUNT_ID) -> None:
        self.clock = clock
        self.region = region
        self.account_id = account_id
        self.behaviours: dict[str, Behaviour] = {}
        self.meta: dict[str, _Meta] = {}
        self.faults: list[Fault] = []
        self.calls: dict[str, int] = {}
        self.observed = Observation()
        self.scheduled: list[tuple[float, str, Callable[[], object]]] = []
        self._ip_counter = itertools.count(10)
        self._event_ids = itertools.count(1)
        self._placement_events: dict[str, float] = {}
        # Task scale-in protection: task ARN -> when it expires (epoch seconds).
        self.protection: dict[str, float] = {}
        self._random = random.Random(20261128)
        self._stack = contextlib.ExitStack()
        self._in_reconcile = False
        self._internal = False
        # Off unless serialize_calls() (a scheduled action may run a handler in another thread and wait for it).
        self._serial: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        self._group_index: dict[str, tuple[int, dict[str, list[Any]]]] = {}
        self._finished: set[str] = set()

    # ----------------------------------------------------------- install

    def __enter__(self) -> EcsSimulator:
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        for name in self._WRAPPED_ECS:
            self._wrap(EC2ContainerServiceBackend, name)
        for name in self._WRAPPED_AAS:
            self._wrap(ApplicationAutoscalingBackend, name)
        for name in self._WRAPPED_DDB:
            self._wrap(DynamoDBBackend, name)
        for name in self._WRAPPED_CW:
            self._wrap(CloudWatchBackend, name)
        self._stack.enter_context(mock.patch.object(EC2ContainerServiceResponse, "list_tasks", _paginated_list_tasks))
        self._stack.enter_context(
            mock.patch.object(EC2ContainerServiceResponse, "list_services", _paginated_list_services)
        )
        # moto has no task scale-in protection: GetTaskProtection answers from self.protection.
        self._stack.enter_context(
            mock.patch.object(
                EC2ContainerServiceResponse, "get_task_protection", self._make_get_task_protection(), create=True
            )
        )
        self._stack.enter_context(mock.patch.object(ELBv2Backend, "describe_target_health", self._make_target_health()))
        # botocore sleeps between retries; on the virtual clock that costs nothing.
        fake_time = types.SimpleNamespace(**{k: getattr(time, k) for k in ("time", "monotonic", "perf_counter")})
        fake_time.sleep = self.clock.sleep
        self._stack.enter_context(mock.patch.object(botocore.endpoint, "time", fake_time))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        state_manager.unset_transition("ecs::task")

    def _wrap(self, cls: type, name: str) -> None:
        original = getattr(cls, name)
        simulator = self

        def wrapper(backend: Any, *args: Any, **kwargs: Any) -> Any:
            with simulator._serial:
                if simulator._internal:
                    # moto calling itself (or the scheduler): not an API call.
                    return original(backend, *args, **kwargs)
                with simulator._internal_calls():
                    return outer(backend, *args, **kwargs)

        def outer(backend: Any, *args: Any, **kwargs: Any) -> Any:
            simulator._count(name)
            simulator.reconcile()
            simulator._maybe_fail(name)
            if name == "describe_tasks":
                tasks = args[1] if len(args) > 1 else kwargs.get("tasks", [])
                if len(tasks) > 100:
                    raise JsonRESTError("InvalidParameterException", "Tasks cannot have more than 100 elements")
            if name == "stop_task":
                result = simulator._stop_task(backend, original, *args, **kwargs)
            else:
                result = original(backend, *args, **kwargs)
                if name == "register_scalable_target":
                    simulator._clamp(args, kwargs)
                simulator.reconcile()
            simulator._maybe_fail(name, applied=True)
            return result

        wrapper.__name__ = name
        self._stack.enter_context(mock.patch.object(cls, name, wrapper))

    def serialize_calls(self) -> None:
        """One call at a time, each with its reconcile and observation: moto is not thread-safe, and a durable
        fleet's branches call it from several threads at once (re-entrant, for moto calling itself)."""
        self._serial = threading.RLock()

    def unobserved(self) -> contextlib.AbstractContextManager[None]:
        """Calls made inside (a test looking at the lock table) are neither counted nor faulted."""
        return self._internal_calls()

    @contextlib.contextmanager
    def _internal_calls(self) -> Iterator[None]:
        with self._serial:
            outer = self._internal
            self._internal = True
            try:
                yield
            finally:
                self._internal = outer

    def count_client_calls(self, *clients: Any, into: dict[str, int] | None = None) -> dict[str, int]:
        """Count the API calls these boto3 clients make (attempts, as AWS would bill and throttle them)."""
        counts: dict[str, int] = {} if into is None else into

        def record(model: Any, **_: Any) -> None:
            counts[model.name] = counts.get(model.name, 0) + 1

        for client in clients:
            client.meta.events.register("before-call.*.*", record)
        return counts

    # ------------------------------------------------------------ faults

    def fail(
        self,
        operation: str,
        code: str = "ThrottlingException",
        times: int = 1,
        after_calls: int = 0,
        message: str | None = None,
        status: int = 400,
        applied: bool = False,
    ) -> None:
        """Make the next `times` calls of a backend operation (e.g. "stop_task") fail.

        With ``applied`` the call takes effect before the error reaches the caller.
        """
        self.faults.append(
            Fault(
                operation,
                code,
                message or f"simulated {code}",
                times,
                self.calls.get(operation, 0) + after_calls,
                status,
                applied,
            )
        )

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _maybe_fail(self, name: str, applied: bool = False) -> None:
        for fault in self.faults:
            if (
                fault.operation == name
                and fault.applied == applied
                and fault.times > 0
                and self.calls[name] > fault.after_calls
            ):
                fault.times -= 1
                error = JsonRESTError(fault.code, fault.message)
                error.code = fault.status
                raise error

    def at(self, seconds_from_start: float, label: str, action: Callable[[], object]) -> None:
        """Run `action` when the virtual clock passes start + seconds (an external actor)."""
        self.scheduled.append((self.clock.start + seconds_from_start, label, action))
        self.scheduled.sort(key=lambda item: item[0])

    # ------------------------------------------------------------ set-up

    def backend(self) -> EC2ContainerServiceBackend:
        return ecs_backends[self.account_id][self.region]

    def aas_backend(self) -> ApplicationAutoscalingBackend:
        return applicationautoscaling_backends[self.account_id][self.region]

    def behaviour(self, cluster: str, service: str) -> Behaviour:
        return self.behaviours.setdefault(f"{cluster}:{service}", Behaviour())

    def create_service(
        self,
        ecs: Any,
        cluster: str = "demo-cluster",
        service: str = "web",
        tasks: int = 5,
        behaviour: Behaviour | None = None,
        health_check: bool = True,
        target_group_arn: str | None = None,
    ) -> str:
        """Create a cluster, task definition and service, and let it settle at `tasks` running."""
        ecs.create_cluster(clusterName=cluster)
        container: dict[str, Any] = {"name": "app", "image": "public.ecr.aws/nginx/nginx:1.27", "memory": 256}
        if health_check:
            container["healthCheck"] = {"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]}
        ecs.register_task_definition(family=service, containerDefinitions=[container])
        self.behaviours[f"{cluster}:{service}"] = behaviour or Behaviour()
        extra: dict[str, Any] = {}
        if target_group_arn:
            extra["loadBalancers"] = [{"targetGroupArn": target_group_arn, "containerName": "app", "containerPort": 80}]
        arn: str = ecs.create_service(
            cluster=cluster,
            serviceName=service,
            taskDefinition=service,
            desiredCount=tasks,
            launchType="FARGATE",
            **extra,
        )["service"]["serviceArn"]
        # Let the initial tasks start, then forget how it got there.
        settled = self.behaviours[f"{cluster}:{service}"]
        settle = settled.start_seconds + settled.start_jitter_seconds + settled.provisioning_seconds + 1
        self.clock.t += settle
        self.reconcile()
        # A long-running service's tasks started at different times.
        for task in sorted(self.tasks(cluster, service), key=lambda t: t.task_arn):
            started = self.clock.t - self._random.uniform(*INITIAL_TASK_AGES_SECONDS)
            task.started_at = datetime.fromtimestamp(started, UTC)
            task.created_at = datetime.fromtimestamp(started - self.meta[task.task_arn].start_seconds, UTC)
        self.clock.start = self.clock.t
        self.observed = Observation()
        self.calls = {}
        return arn

    # --------------------------------------------------------- reconcile

    def reconcile(self) -> None:
        """Bring every service to where ECS would have it by now, event by event."""
        if self._in_reconcile:
            return
        self._in_reconcile = True
        try:
            now = self.clock.now()
            while True:
                due = [t for t in self._event_times() if t <= now]
                if not due:
                    break
                moment = min(due)
                self._advance(moment)
                self._run_scheduled(moment)
                self._schedule_all(moment)
                self._observe()
            self._schedule_all(now)
            self._observe()
        finally:
            self._in_reconcile = False

    def _service_tasks(self, svc: Any) -> list[Any]:
        return list(self._groups(svc.cluster_name).get(f"service:{svc.name}", ()))

    def _groups(self, cluster: str) -> dict[str, list[Any]]:
        """The cluster's tasks by group. moto only adds tasks, and a task keeps its group, so the index only
        takes the new ones (a fleet of a hundred services would otherwise scan every task for each service)."""
        tasks = self.backend().tasks.get(cluster, {})
        seen, groups = self._group_index.get(cluster, (0, {}))
        if len(tasks) < seen:
            seen, groups = 0, {}
        if len(tasks) > seen:
            for task in list(tasks.values())[seen:]:
                groups.setdefault(task.group, []).append(task)
            self._group_index[cluster] = (len(tasks), groups)
        return groups

    def _event_times(self) -> list[float]:
        times = [at for at, _, _ in self.scheduled]
        for meta, task in self._unfinished():
            if _status_of(task) == "PROVISIONING":
                times.append(meta.pending_at)
            if _status_of(task) == "PENDING":
                times.append(meta.running_at)
            if task.desired_status == "STOPPED" and _status_of(task) != "STOPPED" and meta.stop_at is not None:
                times.append(meta.stop_at)
        return times

    def _task(self, arn: str) -> Any:
        for tasks in self.backend().tasks.values():
            if arn in tasks:
                return tasks[arn]
        return None

    def _unfinished(self) -> list[tuple[_Meta, Any]]:
        """The simulated tasks that have not stopped, with their moto task. A stopped task has no more events,
        and is skipped from then on (a fleet's run leaves hundreds)."""
        clusters = list(self.backend().tasks.values())
        found = []
        for arn, meta in self.meta.items():
            if arn in self._finished:
                continue
            task = next((tasks[arn] for tasks in clusters if arn in tasks), None)
            if task is None:
                continue
            if _status_of(task) == "STOPPED":
                self._finished.add(arn)
                continue
            found.append((meta, task))
        return found

    def _advance(self, moment: float) -> None:
        for meta, task in self._unfinished():
            if _status_of(task) == "PROVISIONING" and meta.pending_at <= moment:
                task.last_status = "PENDING"
            if _status_of(task) == "PENDING" and meta.running_at <= moment:
                if meta.fails:
                    self._mark_stopped(task, "TaskFailedToStart", self.behaviours[meta.service_key].fail_reason)
                    svc = self.backend().services.get(meta.service_key)
                    if svc is not None and svc.deployments:
                        deployment: dict[str, Any] = svc.deployments[0]
                        deployment["failedTasks"] = int(deployment.get("failedTasks") or 0) + 1
                elif task.desired_status == "RUNNING":
                    task.last_status = "RUNNING"
                    task.started_at = datetime.fromtimestamp(meta.running_at, UTC)
                    task.health_status = "UNHEALTHY" if meta.never_healthy else "HEALTHY"
            if (
                task.desired_status == "STOPPED"
                and _status_of(task) != "STOPPED"
                and meta.stop_at is not None
                and meta.stop_at <= moment
            ):
                self._mark_stopped(
                    task,
                    "UserInitiated" if task.stopped_reason else "ServiceSchedulerInitiated",
                    task.stopped_reason or "Scaling activity initiated by deployment",
                )

    def _mark_stopped(self, task: Any, code: str, reason: str) -> None:
        task.last_status = "STOPPED"
        task.desired_status = "STOPPED"
        task.stop_code = code
        task.stopped_reason = reason
        task.stopped_at = datetime.fromtimestamp(self.clock.now(), UTC)
        task.health_status = "UNKNOWN"

    def _run_scheduled(self, moment: float) -> None:
        while self.scheduled and self.scheduled[0][0] <= moment:
            _, _, action = self.scheduled.pop(0)
            action()

    def _schedule_all(self, moment: float) -> None:
        for key, svc in list(self.backend().services.items()):
            if svc.status != "ACTIVE":
                continue
            tasks = self._service_tasks(svc)
            live = [t for t in tasks if t.desired_status == "RUNNING"]
            missing = svc.desired_count - len(live)
            for _ in range(max(0, missing)):
                self._launch(svc, key, moment)
            if missing < 0:
                # Scale-in: pending first, then unhealthy, then the oldest; never a protected task.
                victims = sorted(
                    (t for t in live if not self.is_protected(t.task_arn)),
                    key=lambda t: (
                        _status_of(t) == "RUNNING",
                        getattr(t, "health_status", "") == "HEALTHY",
                        -self.meta[t.task_arn].launched_at if t.task_arn in self.meta else 0,
                    ),
                )
                for task in victims[:-missing]:
                    self._begin_stop(task, moment, reason="")
            self._refresh_counts(svc)

    def _launch(self, svc: Any, key: str, moment: float) -> None:
        backend = self.backend()
        behaviour = self.behaviours.setdefault(key, Behaviour())
        live = [t for t in self._service_tasks(svc) if t.desired_status == "RUNNING"]
        if behaviour.capacity is not None and len(live) >= behaviour.capacity:
            self._unable_to_place(svc, moment)
            return
        cluster = backend.clusters[svc.cluster_name]
        task_definition = backend.describe_task_definition(svc.task_definition)
        task: Any = Task(
            cluster,
            task_definition,
            None,
            None,
            backend,
            group=f"service:{svc.name}",
            launch_type=svc.launch_type or "FARGATE",
            started_by="ecs-svc/simulated",
        )
        task.last_status = "PROVISIONING" if behaviour.provisioning_seconds > 0 else "PENDING"
        task.health_status = "UNKNOWN"
        task.created_at = datetime.fromtimestamp(moment, UTC)
        # Spread over the zones, as ECS's default placement does.
        in_zone = {
            zone: sum(1 for t in live if getattr(t, "availability_zone", None) == zone) for zone in behaviour.zones
        }
        task.availability_zone = min(behaviour.zones, key=lambda zone: (in_zone[zone], zone))
        fails = behaviour.fail_next_starts > 0
        if fails:
            behaviour.fail_next_starts -= 1
        ip = f"10.0.{next(self._ip_counter) // 250}.{next(self._ip_counter) % 250}"
        task.attachments = [
            {
                "id": task.id,
                "type": "ElasticNetworkInterface",
                "status": "ATTACHED",
                "details": [{"name": "privateIPv4Address", "value": ip}],
            }
        ]
        backend.tasks.setdefault(svc.cluster_name, {})[task.task_arn] = task
        jitter = self._random.uniform(-1, 1) * behaviour.start_jitter_seconds
        delay = behaviour.fail_after_seconds if fails else max(1.0, behaviour.start_seconds + jitter)
        pending_at = moment + behaviour.provisioning_seconds
        self.meta[task.task_arn] = _Meta(
            key, moment, pending_at + delay, fails, behaviour.never_healthy, ip=ip, pending_at=pending_at
        )

    def _unable_to_place(self, svc: Any, moment: float) -> None:
        """ECS's service event for a task it cannot place, repeated at most once a minute (ECS throttles it)."""
        last = self._placement_events.get(svc.arn)
        if last is not None and moment - last < PLACEMENT_EVENT_INTERVAL_SECONDS:
            return
        self._placement_events[svc.arn] = moment
        message = (
            f"(service {svc.name}) was unable to place a task because no container instance met all of its "
            "requirements. Reason: No Container Instances were found in your cluster. For more information, "
            "see the Troubleshooting section of the Amazon ECS Developer Guide."
        )
        self.post_event(svc, message, moment)

    def post_event(self, svc: Any, message: str, moment: float | None = None) -> None:
        """A service event, newest first and at most 100 kept, as DescribeServices returns them."""
        when = self.clock.now() if moment is None else moment
        event = {"id": str(next(self._event_ids)), "createdAt": datetime.fromtimestamp(when, UTC), "message": message}
        svc.events.insert(0, event)
        del svc.events[100:]

    def _begin_stop(self, task: Any, moment: float, reason: str) -> None:
        meta = self.meta.get(task.task_arn)
        task.desired_status = "STOPPED"
        task.stopped_reason = reason
        if _status_of(task) in ("PROVISIONING", "PENDING") or meta is None:
            self._mark_stopped(task, "ServiceSchedulerInitiated", reason or "Scaling activity initiated")
            return
        meta.stop_at = moment + self.behaviours[meta.service_key].drain_seconds

    def _stop_task(self, backend: Any, original: Callable[..., Task], *args: Any, **kwargs: Any) -> Task:
        """StopTask as ECS does it: a running task drains first; a stopped one is returned as it is."""
        cluster = args[0] if args else kwargs["cluster_str"]
        task_ref = args[1] if len(args) > 1 else kwargs["task_str"]
        task = next(
            (
                t
                for t in backend.tasks.get(cluster.split("/")[-1], {}).values()
                if t.task_arn.endswith(task_ref.split("/")[-1])
            ),
            None,
        )
        if task is not None and task.desired_status == "STOPPED":
            return task
        prior = task.last_status if task is not None else None
        task = original(backend, *args, **kwargs)
        arn = task.task_arn
        if self.is_protected(arn):
            self.observed.stopped_while_protected.append(arn)
        self.observed.stops[arn] = self.observed.stops.get(arn, 0) + 1
        meta = self.meta.get(arn)
        if meta is not None and prior == "RUNNING":
            # moto marks it STOPPED at once; real ECS keeps it RUNNING while it drains.
            task.last_status = "RUNNING"
            task.desired_status = "STOPPED"
            self._finished.discard(arn)
            meta.stop_at = self.clock.now() + self.behaviours[meta.service_key].drain_seconds
        self.reconcile()
        return task

    def _refresh_counts(self, svc: Service) -> None:
        tasks = self._service_tasks(svc)
        svc.running_count = sum(1 for t in tasks if _status_of(t) == "RUNNING")
        svc.pending_count = sum(1 for t in tasks if _status_of(t) in ("PROVISIONING", "PENDING"))
        if svc.deployments:
            deployment = svc.deployments[0]
            deployment.update(
                desiredCount=svc.desired_count, runningCount=svc.running_count, pendingCount=svc.pending_count
            )
            rollout = self.behaviours.get(f"{svc.cluster_name}:{svc.name}", Behaviour()).rollout_state
            deployment["rolloutState"] = rollout
            deployment["rolloutStateReason"] = "ECS deployment completed."

    def _observe(self) -> None:
        for key, svc in self.backend().services.items():
            if svc.status != "ACTIVE":
                continue
            tasks = self._service_tasks(svc)
            serving = sum(1 for t in tasks if self.is_serving(t))
            live = sum(1 for t in tasks if t.desired_status == "RUNNING")
            self.observed.min_serving[key] = min(self.observed.min_serving.get(key, serving), serving)
            self.observed.max_live[key] = max(self.observed.max_live.get(key, live), live)

    def is_serving(self, task: Any) -> bool:
        return (
            _status_of(task) == "RUNNING"
            and task.desired_status == "RUNNING"
            and getattr(task, "health_status", "UNKNOWN") == "HEALTHY"
        )

    # ------------------------------------------------------- alarms

    def set_alarm(self, name: str, state: str, reason: str) -> None:
        """A CloudWatch alarm changes state (moto's own alarm, as set_alarm_state would change it)."""
        from moto.cloudwatch.models import cloudwatch_backends

        cloudwatch_backends[self.account_id][self.region].set_alarm_state(name, reason, "{}", state)

    def delete_alarm(self, name: str) -> None:
        """A CloudWatch alarm is deleted (as DeleteAlarms would): DescribeAlarms no longer returns it."""
        from moto.cloudwatch.models import cloudwatch_backends

        cloudwatch_backends[self.account_id][self.region].delete_alarms([name])

    # ------------------------------------------------- task protection

    @staticmethod
    def datetime_at(epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, UTC)

    def set_started(self, task: Any, epoch: float) -> None:
        """Make a task look started at this time (and created its start time before)."""
        task.started_at = self.datetime_at(epoch)
        task.created_at = self.datetime_at(epoch - self.meta[task.task_arn].start_seconds)

    def protect(self, task_arn: str, seconds: float) -> None:
        """UpdateTaskProtection(protectionEnabled=True, expiresInMinutes=seconds / 60), as the task would call it."""
        self.protection[task_arn] = self.clock.now() + seconds

    def unprotect(self, task_arn: str) -> None:
        self.protection.pop(task_arn, None)

    def is_protected(self, task_arn: str) -> bool:
        return self.protection.get(task_arn, 0.0) > self.clock.now()

    def _make_get_task_protection(self) -> Callable[..., Any]:
        simulator = self

        def get_task_protection(response: EC2ContainerServiceResponse) -> Any:
            from moto.core.responses import ActionResult

            simulator._count("get_task_protection")
            simulator.reconcile()
            simulator._maybe_fail("get_task_protection")
            arns = list(response._get_param("tasks") or [])
            if len(arns) > 100:
                raise JsonRESTError("InvalidParameterException", "tasks can have at most 100 elements")
            protected = []
            for arn in arns:
                entry: dict[str, Any] = {"taskArn": arn, "protectionEnabled": simulator.is_protected(arn)}
                if entry["protectionEnabled"]:
                    entry["expirationDate"] = datetime.fromtimestamp(simulator.protection[arn], UTC)
                protected.append(entry)
            simulator._maybe_fail("get_task_protection", applied=True)
            return ActionResult({"protectedTasks": protected, "failures": []})

        return get_task_protection

    # ------------------------------------------------------ autoscaling

    def _clamp(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """RegisterScalableTarget clamps the current capacity into [Min, Max] at once."""
        resource_id = args[1] if len(args) > 1 else kwargs.get("r_id", "")
        target: Any = self.aas_backend().targets.get("ecs:service:DesiredCount", {}).get(resource_id)
        if target is None:
            return
        _, cluster, service = resource_id.split("/")
        svc = self.backend().services.get(f"{cluster}:{service}")
        if svc is None:
            return
        svc.desired_count = min(max(svc.desired_count, int(target.min_capacity)), int(target.max_capacity))

    def scalable_target(self, cluster: str, service: str) -> dict[str, Any] | None:
        target: Any = self.aas_backend().targets.get("ecs:service:DesiredCount", {}).get(f"service/{cluster}/{service}")
        if target is None:
            return None
        state: dict[str, Any] = target.suspended_state or {}
        return {
            "MinCapacity": int(target.min_capacity),
            "MaxCapacity": int(target.max_capacity),
            "SuspendedState": {
                k: bool(state.get(k, False))
                for k in ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")
            },
        }

    def autoscale(self, cluster: str, service: str, desired: int, kind: str = "dynamic") -> bool:
        """An Application Auto Scaling action, honouring the suspended flags and [Min, Max].

        It acts only through a scalable target: a service without one is never scaled by it (an operator's
        update-service is ``set_desired``).
        """
        svc = self.backend().services[f"{cluster}:{service}"]
        target = self.scalable_target(cluster, service)
        if target is None:
            return False
        flags = target["SuspendedState"]
        scaling_in = desired < svc.desired_count
        if kind == "scheduled" and flags["ScheduledScalingSuspended"]:
            return False
        if kind == "dynamic" and scaling_in and flags["DynamicScalingInSuspended"]:
            return False
        if kind == "dynamic" and not scaling_in and flags["DynamicScalingOutSuspended"]:
            return False
        desired = min(max(desired, target["MinCapacity"]), target["MaxCapacity"])
        svc.desired_count = desired
        return True

    def set_desired(self, cluster: str, service: str, desired: int) -> None:
        """An operator's update-service --desired-count, which ignores [Min, Max]."""
        self.backend().services[f"{cluster}:{service}"].desired_count = desired

    # ---------------------------------------------------------- inspect

    def service(self, cluster: str, service: str) -> Service:
        return self.backend().services[f"{cluster}:{service}"]

    def tasks(self, cluster: str, service: str) -> list[Any]:
        return self._service_tasks(self.service(cluster, service))

    # ------------------------------------------------------- elbv2 model

    def _make_target_health(self) -> Callable[..., list[FakeHealthStatus]]:
        simulator = self

        def describe_target_health(
            backend: Any, target_group_arn: str, targets: list[dict[str, Any]]
        ) -> list[FakeHealthStatus]:
            simulator._count("describe_target_health")
            simulator._maybe_fail("describe_target_health")
            simulator.reconcile()
            by_ip = {}
            for arn, meta in simulator.meta.items():
                task = simulator._task(arn)
                if task is None or _status_of(task) == "STOPPED":
                    continue
                if _status_of(task) == "RUNNING" and not meta.never_healthy:
                    state = "draining" if task.desired_status == "STOPPED" else "healthy"
                elif _status_of(task) == "RUNNING":
                    state = "unhealthy"
                else:
                    state = "initial"
                by_ip[meta.ip] = state
            wanted = [t["Id"] for t in targets] if targets else list(by_ip)
            port = str(targets[0].get("Port", 80)) if targets else "80"
            return [FakeHealthStatus(ip, port, port, by_ip.get(ip, "unused")) for ip in wanted]

        return describe_target_health


def _paginated_list_tasks(self: EC2ContainerServiceResponse) -> Any:
    """ListTasks as ECS does it: filter by serviceName and desiredStatus, 100 per page."""
    from moto.core.responses import ActionResult

    cluster = self._get_param("cluster", "default")
    service_name = self._get_param("serviceName")
    desired_status = self._get_param("desiredStatus")
    page_size = min(int(self._get_param("maxResults") or 100), 100)
    start = int(self._get_param("nextToken") or 0)
    tasks = self.ecs_backend.list_tasks(cluster, None, None, None, None, desired_status or "RUNNING")
    if service_name:
        name = service_name.split("/")[-1]
        tasks = [t for t in tasks if t.group == f"service:{name}"]
    arns = sorted(t.task_arn for t in tasks)
    page = arns[start : start + page_size]
    result: dict[str, Any] = {"taskArns": page}
    if start + page_size < len(arns):
        result["nextToken"] = str(start + page_size)
    return ActionResult(result)


def _paginated_list_services(self: EC2ContainerServiceResponse) -> Any:
    """ListServices as ECS pages it: 10 ARNs a page unless maxResults asks for up to 100."""
    from moto.core.responses import ActionResult

    cluster = self._get_param("cluster", "default")
    page_size = min(int(self._get_param("maxResults") or 10), 100)
    start = int(self._get_param("nextToken") or 0)
    arns = self.ecs_backend.list_services(cluster)
    result: dict[str, Any] = {"serviceArns": arns[start : start + page_size]}
    if start + page_size < len(arns):
        result["nextToken"] = str(start + page_size)
    return ActionResult(result)


# ------------------------------------------------------------------ harness


def fake_aws_environment() -> dict[str, str]:
    """Environment for moto: fake credentials and region, nothing real reachable."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def sim_client_config() -> Config:
    return Config(retries={"mode": "standard", "max_attempts": 3}, region_name=REGION)


@contextlib.contextmanager
def simulated_aws(clock: VirtualClock | None = None) -> Iterator[tuple[EcsSimulator, boto3.Session]]:
    """moto plus the scheduler extension, with a session for the engine's clients."""
    clock = clock or VirtualClock()
    with mock.patch.dict(os.environ, fake_aws_environment()), mock_aws(), EcsSimulator(clock) as sim:
        yield sim, boto3.Session(region_name=REGION)


def register_target(
    autoscaling: Any,
    cluster: str,
    service: str,
    minimum: int,
    maximum: int,
    suspended: dict[str, bool] | None = None,
) -> None:
    """Give the service an Application Auto Scaling target, through the given client."""
    extra: dict[str, Any] = {"SuspendedState": suspended} if suspended else {}
    autoscaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=f"service/{cluster}/{service}",
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=minimum,
        MaxCapacity=maximum,
        **extra,
    )


LOCK_TABLE = "ecs-task-recycle-locks"


def create_lock_table(session: boto3.Session, name: str = LOCK_TABLE) -> str:
    """The lock table as the template creates it: on-demand, key pk, the history index, TTL on expires_at."""
    dynamodb = session.client("dynamodb", config=sim_client_config())
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "history_of", "AttributeType": "S"},
            {"AttributeName": "ended_at", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "history",
                "KeySchema": [
                    {"AttributeName": "history_of", "KeyType": "HASH"},
                    {"AttributeName": "ended_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    return name


def create_alarm(cloudwatch: Any, name: str) -> None:
    """A real moto metric alarm, in OK; tests move it with set_alarm_state (see EcsSimulator.set_alarm)."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="created quiet")


def create_target_group(session: boto3.Session) -> str:
    """A real moto target group, so the ARN exists; its health comes from the simulator."""
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    elbv2 = session.client("elbv2")
    group = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")
    return str(group["TargetGroups"][0]["TargetGroupArn"])


def record_engine_calls() -> list[dict[str, Any]]:
    """Run representative recycles and return every API call the engine's clients made.

    Scenarios: a load-balanced service with a scalable target recycled end to end;
    a run killed midway and repaired by the next; a dry run. Each entry has the
    botocore service and operation names, the parameters, and the cluster and
    service that run was asked to recycle (for the IAM policy cross-check).
    """
    from recycler.aws.gateway import ServiceGateway
    from recycler.aws.services import fleet_services
    from recycler.hosts import control
    from recycler.hosts.handoff import HandOff
    from recycler.lock.store import DynamoLockStore
    from recycler.model.errors import AwsCallFailed
    from recycler.model.request import parse_event
    from recycler.model.runtime import LocalRuntime
    from recycler.model.settings import RecycleSettings
    from recycler.run.context import AwsClients, EngineSetup
    from recycler.run.engine import Recycler

    recorded: list[dict[str, Any]] = []
    cluster, service = "policy-cluster", "policy-service"
    clock = VirtualClock()
    with simulated_aws(clock) as (sim, session):
        ecs = session.client("ecs", config=sim_client_config())
        autoscaling = session.client("application-autoscaling", config=sim_client_config())
        elbv2 = session.client("elbv2", config=sim_client_config())
        dynamodb = session.client("dynamodb", config=sim_client_config())
        store = DynamoLockStore(dynamodb, create_lock_table(session))
        sim.create_service(ecs, cluster, service, 3, Behaviour(), True, create_target_group(session))
        register_target(autoscaling, cluster, service, 1, 3)
        # Tagged before the calls are recorded: the fleet selection below finds it by this tag.
        service_arn = ecs.describe_services(cluster=cluster, services=[service])["services"][0]["serviceArn"]
        ecs.tag_resource(resourceArn=service_arn, tags=[{"key": "recycle", "value": "weekly"}])

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            recorded.append(
                {
                    "service": model.service_model.service_name,
                    "operation": model.name,
                    "params": dict(params),
                    "target_cluster": cluster,
                    "target_service": service,
                }
            )

        cloudwatch = session.client("cloudwatch", config=sim_client_config())
        lambda_client = session.client("lambda", config=sim_client_config())
        events = session.client("events", config=sim_client_config())
        create_alarm(cloudwatch, "policy-5xx")
        for client in (ecs, autoscaling, elbv2, dynamodb, cloudwatch, lambda_client, events):
            client.meta.events.register("before-parameter-build.*.*", record)

        def engine(owner: str) -> Recycler:
            context = FakeLambdaContext(clock, 900.0, owner)
            runtime = LocalRuntime(clock, lambda: context.get_remaining_time_in_millis() / 1000.0)
            clients = AwsClients(ecs, autoscaling, elbv2=elbv2, cloudwatch=cloudwatch, events=events)
            return Recycler(EngineSetup(clients, clock, runtime, RecycleSettings(), owner, store))

        def run(owner: str, **event: Any) -> None:
            engine(owner).run(parse_event({"cluster_name": cluster, "service_name": service, **event}))

        run("dry-run", dry_run=True)
        run("full", wait_time=5, alarm_names=["policy-5xx"])
        clock.kill_at = clock.now() + 100
        with contextlib.suppress(LambdaKilled):
            run("killed", wait_time=5)
        clock.sleep(2000)
        run("repair", wait_time=5)
        # A cancel, while a run is live: the action tags the service, the run removes the tag.
        request = parse_event({"cluster_name": cluster, "service_name": service, "wait_time": 5})
        gateway = ServiceGateway(ecs, autoscaling, elbv2, request, cloudwatch)
        self_cancel = lambda: control.cancel(gateway, store, clock, "policy-check")  # noqa: E731
        sim.at(clock.now() - clock.start + 60, "cancel", self_cancel)
        engine("cancelled").run(request)
        control.status(gateway, store, clock)
        control.history(gateway, store)
        # A hand-off to the durable alias (moto has no such function: the call is what counts here).
        alias = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:ecs-task-recycle-durable:live"
        hand_off = HandOff(lambda_client, alias, request, "policy", {})
        with contextlib.suppress(AwsCallFailed):
            hand_off.start(clock.now())
        # A fleet's selection, by tag and by name.
        fleet_services(ecs, cluster, (), {"recycle": "weekly"})
        fleet_services(ecs, cluster, [service], {})
    return recorded
