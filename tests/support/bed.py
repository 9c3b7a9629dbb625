"""The test bed: the simulated ECS cluster (dev/simulator.py), the engine's clients, and an engine on them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# moto before boto3 clients (simulator imports moto first).
from dev import simulator
from dev.simulator import Behaviour, EcsSimulator, FakeLambdaContext, VirtualClock
from recycler.lock.record import LockRecord
from recycler.lock.store import DynamoLockStore
from recycler.model.report import RecycleReport
from recycler.model.request import parse_event
from recycler.model.runtime import TOOL_NAME, LocalRuntime
from recycler.model.settings import RecycleSettings
from recycler.run.context import AwsClients, EngineSetup
from recycler.run.engine import Recycler
from recycler.run.liveness import Liveness
from recycler.run.ports import RunPolicy

from .invariants import Invariants
from .names import CLUSTER, SERVICE

__all__ = ["CLUSTER", "ENGINE_CALLS", "EVENTS", "SERVICE", "Bed", "load_event"]

EVENTS = Path(__file__).resolve().parent.parent / "events"
# Filled by every simulated engine run in the session; checked against the template's role at the end.
ENGINE_CALLS: list[dict[str, Any]] = []


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


@dataclass
class Bed(Invariants):
    """The simulated cluster plus the engine's clients; its checks are in support.invariants."""

    sim: EcsSimulator
    clock: VirtualClock
    session: Any
    ecs: Any
    autoscaling: Any
    elbv2: Any
    calls: dict[str, int]
    snapshots: dict[str, Any] = field(default_factory=dict)
    recording: tuple[str, str] | None = None
    dynamodb: Any = None
    # Record the engine's calls for the session-end IAM cross-check.
    record_calls: bool = True
    cloudwatch: Any = None
    sts: Any = None
    # EventBridge: the run's events, put on moto's default bus (support.eventbridge reads them back).
    events: Any = None
    # Every task the last engine run found at its (last) pre-flight; None when it never got that far.
    found: set[str] | None = None

    def __post_init__(self) -> None:
        if self.sts is None:
            # Counted, so a test can tell the account is looked up only for a not-found error.
            self.sts = self.session.client("sts", config=simulator.sim_client_config())
            self.sim.count_client_calls(self.sts, into=self.calls)
        if self.cloudwatch is None:
            self.cloudwatch = self.session.client("cloudwatch", config=simulator.sim_client_config())
            self.sim.count_client_calls(self.cloudwatch, into=self.calls)
        if self.events is None:
            # Not counted: the calls per task the tests and the benchmark count are the service's.
            self.events = self.session.client("events", config=simulator.sim_client_config())
        if self.dynamodb is None:
            self.dynamodb = self.session.client("dynamodb", config=simulator.sim_client_config())
            simulator.create_lock_table(self.session)
            self.sim.count_client_calls(self.dynamodb, into=self.calls)
        self.store = DynamoLockStore(self.dynamodb, simulator.LOCK_TABLE)
        # The tests' own look at the table: not an engine call, not counted.
        self.inspector = DynamoLockStore(
            self.session.client("dynamodb", config=simulator.sim_client_config()), simulator.LOCK_TABLE
        )
        for client in (self.ecs, self.autoscaling, self.elbv2, self.dynamodb, self.cloudwatch, self.events):
            client.meta.events.register("before-parameter-build.*.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        """Every call an engine run makes, for the IAM policy cross-check at the end of the session."""
        if self.recording is not None:
            cluster, service = self.recording
            ENGINE_CALLS.append(
                {
                    "service": model.service_model.service_name,
                    "operation": model.name,
                    "params": dict(params),
                    "target_cluster": cluster,
                    "target_service": service,
                }
            )

    def add_service(
        self,
        tasks: int = 5,
        service: str = SERVICE,
        target: tuple[int, int] | None = None,
        suspended: dict[str, bool] | None = None,
        behaviour: Behaviour | None = None,
        health_check: bool = True,
        load_balancer: bool = False,
    ) -> str:
        tg = simulator.create_target_group(self.session) if load_balancer else None
        arn = self.sim.create_service(self.ecs, CLUSTER, service, tasks, behaviour, health_check, tg)
        if target:
            simulator.register_target(self.autoscaling, CLUSTER, service, target[0], target[1], suspended)
        self.calls.clear()
        self.sim.calls.clear()
        self.sim.observed = simulator.Observation()
        self.snapshots[service] = {
            "desired": self.sim.service(CLUSTER, service).desired_count,
            "target": self.sim.scalable_target(CLUSTER, service),
            "tasks": sorted(t.task_arn for t in self.sim.tasks(CLUSTER, service) if self.sim.is_serving(t)),
        }
        return arn

    def engine(
        self,
        owner: str = "run-1",
        timeout: float | None = 900.0,
        settings: RecycleSettings | None = None,
        lock_ttl: float | None = None,
        sts: Any = None,
        admission: Any = None,
        liveness: Liveness | None = None,
        progress: Any = None,
    ) -> tuple[Recycler, FakeLambdaContext | None]:
        context = FakeLambdaContext(self.clock, timeout, owner) if timeout else None
        remaining: Callable[[], float | None] = (
            (lambda: context.get_remaining_time_in_millis() / 1000.0) if context else (lambda: None)
        )
        runtime = LocalRuntime(self.clock, remaining, logging.getLogger(TOOL_NAME))
        clients = AwsClients(self.ecs, self.autoscaling, self.elbv2, self.cloudwatch, sts or self.sts, self.events)
        setup = EngineSetup(clients, self.clock, runtime, settings or RecycleSettings(), owner, self.store, progress)
        engine: Any = Recycler(setup, RunPolicy(lock_ttl_seconds=lock_ttl, admission=admission, liveness=liveness))
        run = engine.run

        def recorded_run(request: Any) -> RecycleReport:
            self.recording = (request.cluster_name, request.service_name) if self.record_calls else None
            self.found = None
            try:
                return run(request)  # type: ignore[no-any-return]
            finally:
                self.recording = None
                selection = engine.last_run.selection if engine.last_run else None
                if selection is not None:
                    young = {arn for arn, _ in selection.left_alone}
                    self.found = {*selection.chosen, *young, *selection.beyond_max}

        engine.run = recorded_run
        return engine, context

    def run(
        self,
        service: str = SERVICE,
        owner: str = "run-1",
        timeout: float | None = 900.0,
        settings: RecycleSettings | None = None,
        **event: Any,
    ) -> RecycleReport:
        engine, _ = self.engine(owner, timeout, settings)
        return engine.run(parse_event({"cluster_name": CLUSTER, "service_name": service, **event}))

    def add_alarm(self, name: str) -> str:
        """A real CloudWatch alarm in moto, in OK."""
        with self.sim.unobserved():
            simulator.create_alarm(self.cloudwatch, name)
        return name

    def expired_lock_item(self, **overrides: Any) -> dict[str, Any]:
        """A dead run's lock item, surged 3 -> 4 under a 2..6 target; overrides merge two levels deep."""
        now = int(self.clock.now())
        item: dict[str, Any] = {
            "pk": self.lock_key(),
            "tool": "ecs-task-recycle",
            "owner": "run-0",
            "version": 7,
            "expires_at": now - 10,
            "phase": "surged",
            "started_at": now - 600,
            "progress": {"recycled": 1, "total": 3, "batch": 1, "updated_at": now - 60},
            "snapshot": {
                "desired_count": 3,
                "surge": True,
                "surge_size": 1,
                "target": {
                    "min": 2,
                    "max": 6,
                    "suspended": {
                        "DynamicScalingInSuspended": False,
                        "DynamicScalingOutSuspended": False,
                        "ScheduledScalingSuspended": False,
                    },
                },
            },
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(item.get(key), dict):
                merged = dict(item[key])
                for inner, inner_value in value.items():
                    merged[inner] = (
                        {**merged[inner], **inner_value}
                        if isinstance(inner_value, dict) and merged.get(inner)
                        else inner_value
                    )
                item[key] = merged
            else:
                item[key] = value
        return item

    def plant_lock(self, record: LockRecord | dict[str, Any]) -> None:
        """Write a lock item as it is, unconditionally: another run's, a forged or a tampered one."""
        from boto3.dynamodb.types import TypeSerializer

        item = record.to_item() if isinstance(record, LockRecord) else record
        serialize = TypeSerializer().serialize
        with self.sim.unobserved():
            self.inspector.dynamodb.put_item(
                TableName=simulator.LOCK_TABLE, Item={k: serialize(v) for k, v in item.items() if v is not None}
            )

    def record_stop_times(self) -> dict[str, float]:
        """When each task was stopped (the first time StopTask reached it), filled in as the run goes."""
        times: dict[str, float] = {}
        real = self.sim._stop_task

        def recording(backend: Any, original: Any, *args: Any, **kwargs: Any) -> Any:
            task = real(backend, original, *args, **kwargs)
            times.setdefault(task.task_arn, self.clock.now())
            return task

        self.sim._stop_task = recording  # type: ignore[method-assign]
        return times

    def adopt_live_tasks_as_originals(self, service: str = SERVICE) -> None:
        """Tasks a killed run started are originals to the run that repairs it."""
        self.sim.reconcile()
        self.snapshots[service]["tasks"] = sorted(
            {*self.snapshots[service]["tasks"]}
            | {t.task_arn for t in self.sim.tasks(CLUSTER, service) if t.desired_status == "RUNNING"}
        )


@contextmanager
def simulated_bed(clock: VirtualClock) -> Iterator[Bed]:
    """A bed on the simulated cluster, on ``clock`` (a fleet's tests give one its threads share)."""
    with simulator.simulated_aws(clock) as (sim, session):
        config = simulator.sim_client_config()
        ecs = session.client("ecs", config=config)
        autoscaling = session.client("application-autoscaling", config=config)
        elbv2 = session.client("elbv2", config=config)
        calls = sim.count_client_calls(ecs, autoscaling, elbv2)
        yield Bed(sim, clock, session, ecs, autoscaling, elbv2, calls)
