"""Shared fixtures: a clean fake-AWS environment, the simulated ECS cluster, and invariant checks."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# moto before boto3 clients (simulator imports moto first).
from dev import simulator  # noqa: E402
from dev.simulator import Behaviour, EcsSimulator, FakeLambdaContext, VirtualClock  # noqa: E402
from recycler.lock.record import LockRecord, Phase  # noqa: E402
from recycler.lock.store import DynamoLockStore, lock_key  # noqa: E402
from recycler.model.report import RecycleReport  # noqa: E402
from recycler.model.request import parse_event  # noqa: E402
from recycler.model.runtime import LocalRuntime  # noqa: E402
from recycler.model.settings import RecycleSettings  # noqa: E402
from recycler.run.context import AwsClients, EngineSetup  # noqa: E402
from recycler.run.engine import Recycler  # noqa: E402
from recycler.run.ports import RunPolicy  # noqa: E402

EVENTS = Path(__file__).resolve().parent / "events"
# Filled by every simulated engine run in the session; checked against the template's role at the end.
ENGINE_CALLS: list[dict[str, Any]] = []
# The cross-check's verdict: (line, is_failure), printed by pytest_terminal_summary.
IAM_SUMMARY: list[tuple[str, bool]] = []
CLUSTER = "demo-cluster"
# Backend operations that change ECS, Application Auto Scaling or the lock table, as the simulator records
# them (bed.sim.calls), whichever client made them: also the clients the handler builds for itself.
SIM_MUTATING = frozenset(
    {
        "update_service",
        "stop_task",
        "tag_resource",
        "untag_resource",
        "register_scalable_target",
        "put_item",
        "update_item",
        "delete_item",
    }
)
SERVICE = "web"
_KEEP_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "PYENV_ROOT",
    "PYENV_VERSION",
    "VIRTUAL_ENV",
    "SYSTEMROOT",
    "PYTHONPATH",
    "CI",
    "HYPOTHESIS_PROFILE",
)


@pytest.fixture(autouse=True)
def fake_aws_env() -> Iterator[None]:
    """No real credentials, profiles or endpoints can leak into a test."""
    kept = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env = {
        **kept,
        **simulator.fake_aws_environment(),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    with mock.patch.dict(os.environ, env, clear=True):
        yield


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


@dataclass
class Bed:
    """The simulated cluster plus the engine's clients."""

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
        if self.dynamodb is None:
            self.dynamodb = self.session.client("dynamodb", config=simulator.sim_client_config())
            simulator.create_lock_table(self.session)
            self.sim.count_client_calls(self.dynamodb, into=self.calls)
        self.store = DynamoLockStore(self.dynamodb, simulator.LOCK_TABLE)
        # The tests' own look at the table: not an engine call, not counted.
        self.inspector = DynamoLockStore(
            self.session.client("dynamodb", config=simulator.sim_client_config()), simulator.LOCK_TABLE
        )
        for client in (self.ecs, self.autoscaling, self.elbv2, self.dynamodb, self.cloudwatch):
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
    ) -> tuple[Recycler, FakeLambdaContext | None]:
        context = FakeLambdaContext(self.clock, timeout, owner) if timeout else None
        remaining: Callable[[], float | None] = (
            (lambda: context.get_remaining_time_in_millis() / 1000.0) if context else (lambda: None)
        )
        runtime = LocalRuntime(self.clock, remaining, logging.getLogger("ecs-task-recycle"))
        clients = AwsClients(self.ecs, self.autoscaling, self.elbv2, self.cloudwatch, sts or self.sts)
        setup = EngineSetup(clients, self.clock, runtime, settings or RecycleSettings(), owner, self.store)
        engine: Any = Recycler(setup, RunPolicy(lock_ttl_seconds=lock_ttl, admission=admission))
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

    # ------------------------------------------------------------ invariants

    def desired(self, service: str = SERVICE) -> int:
        return int(self.sim.service(CLUSTER, service).desired_count)

    def add_alarm(self, name: str) -> str:
        """A real CloudWatch alarm in moto, in OK."""
        with self.sim.unobserved():
            simulator.create_alarm(self.cloudwatch, name)
        return name

    def lock_key(self, service: str = SERVICE) -> str:
        return lock_key(self.sim.backend().clusters[CLUSTER].arn, service)

    def lock(self, service: str = SERVICE) -> LockRecord | None:
        """The service's lock item, read straight from the table (not counted as an engine call)."""
        with self.sim.unobserved():
            return self.inspector.read(self.lock_key(service))

    def plant_lock(self, record: LockRecord | dict[str, Any]) -> None:
        """Write a lock item as it is, unconditionally: another run's, a forged or a tampered one."""
        from boto3.dynamodb.types import TypeSerializer

        item = record.to_item() if isinstance(record, LockRecord) else record
        serialize = TypeSerializer().serialize
        with self.sim.unobserved():
            self.inspector.dynamodb.put_item(
                TableName=simulator.LOCK_TABLE, Item={k: serialize(v) for k, v in item.items() if v is not None}
            )

    def held(self, service: str = SERVICE) -> bool:
        """A run holds the service, or died holding it: the item is there and not released."""
        record = self.lock(service)
        return record is not None and record.phase != Phase.RELEASED

    def assert_restored(self, service: str = SERVICE, external_delta: int = 0) -> None:
        """After any run: scalable target equals the snapshot, desired = snapshot + others' change, no lock held."""
        snap = self.snapshots[service]
        assert self.sim.scalable_target(CLUSTER, service) == snap["target"]
        # Others may have scaled in past our surge; the restore never goes below zero.
        expected = max(0, snap["desired"] + external_delta)
        target = snap["target"]
        if target is not None:
            # The restore re-registers the target last, and Application Auto Scaling then clamps the
            # desired count into [Min, Max] at once: a scale-out that only our widened Max allowed goes.
            expected = min(max(expected, target["MinCapacity"]), target["MaxCapacity"])
        actual = self.desired(service)
        # Others scaled in to the surge or below it: the restore keeps one task rather than take a running service
        # to 0 (recycler.run.capacity).
        assert actual == expected or (snap["desired"] + external_delta <= 0 and actual == 1), (actual, expected)
        assert not self.held(service), self.lock(service)

    def service_state(self, service: str = SERVICE) -> dict[str, Any]:
        """The service as the simulated backend holds it: what a run that changed nothing leaves as it found it."""
        found: Any = self.sim.service(CLUSTER, service)
        tasks = self.sim.tasks(CLUSTER, service)
        return {
            "desired": found.desired_count,
            "task_definition": found.task_definition,
            "tags": sorted((t["key"], t["value"]) for t in found.tags or []),
            "scalable_target": self.sim.scalable_target(CLUSTER, service),
            "live_tasks": sorted(t.task_arn for t in tasks if t.desired_status == "RUNNING"),
            "serving_tasks": sorted(t.task_arn for t in tasks if self.sim.is_serving(t)),
        }

    def lock_items(self, table: str = simulator.LOCK_TABLE) -> list[dict[str, Any]]:
        with self.sim.unobserved():
            return list(self.inspector.dynamodb.scan(TableName=table)["Items"])

    def assert_nothing_changed(self, before: dict[str, Any], service: str = SERVICE) -> None:
        """No mutating call reached the backend, through any client (the handler's own too), no lock item was
        written, and the service is as it was."""
        changed = {op: n for op, n in self.sim.calls.items() if op in SIM_MUTATING}
        assert changed == {}
        assert self.lock_items() == []
        assert self.service_state(service) == before

    def assert_capacity_held(self, service: str = SERVICE) -> None:
        """With maintain_service_state: serving never below N, live never above N+1."""
        n = self.snapshots[service]["desired"]
        key = f"{CLUSTER}:{service}"
        assert self.sim.observed.min_serving[key] >= n
        assert self.sim.observed.max_live[key] <= n + 1

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

    def assert_each_original_stopped_at_most_once(self, service: str = SERVICE) -> None:
        originals = set(self.snapshots[service]["tasks"])
        for arn, count in self.sim.observed.stops.items():
            assert count == 1, f"{arn} was stopped {count} times"
            assert arn in originals, f"the run stopped {arn}, which it did not find at the start"

    def adopt_live_tasks_as_originals(self, service: str = SERVICE) -> None:
        """Tasks a killed run started are originals to the run that repairs it."""
        self.sim.reconcile()
        self.snapshots[service]["tasks"] = sorted(
            {*self.snapshots[service]["tasks"]}
            | {t.task_arn for t in self.sim.tasks(CLUSTER, service) if t.desired_status == "RUNNING"}
        )

    def assert_every_original_in_exactly_one_list(
        self, report: RecycleReport, originals: set[str] | None = None
    ) -> None:
        """Each task the run found is in exactly one of the report's lists: recycled, skipped, remaining, or
        stopped and not replaced. ``originals`` defaults to what the last run's pre-flight found; a run that
        stopped before it chose its tasks (a refusal, a failed read) lists none, and a dry run changes nothing."""
        listed = report.listed_arns()
        twice = sorted({arn for arn in listed if listed.count(arn) > 1})
        assert twice == [], f"in more than one list (or twice in one): {twice}"
        found = self.found if originals is None else originals
        if report.status == "dry_run":
            return
        if found is None or report.status == "handed_off":
            assert listed == [], report
            return
        assert set(listed) == found, (
            f"in no list: {sorted(found - set(listed))}; not an original: {sorted(set(listed) - found)}"
        )

    def originals_stopped(self, service: str = SERVICE) -> set[str]:
        return set(self.sim.observed.stops) & set(self.snapshots[service]["tasks"])


@pytest.fixture
def bed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    clock = VirtualClock()
    with simulator.simulated_aws(clock) as (sim, session):
        config = simulator.sim_client_config()
        ecs = session.client("ecs", config=config)
        autoscaling = session.client("application-autoscaling", config=config)
        elbv2 = session.client("elbv2", config=config)
        calls = sim.count_client_calls(ecs, autoscaling, elbv2)
        bed = Bed(sim, clock, session, ecs, autoscaling, elbv2, calls)
        # The handlers find the lock table as the template tells them; undone after the test.
        monkeypatch.setenv("LOCK_TABLE_NAME", simulator.LOCK_TABLE)
        yield bed


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line as JSON, the way Lambda's JSON log format would show it."""
    from recycler.observability.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every AWS call any engine run made in this session must be allowed by the template's role."""
    if not ENGINE_CALLS:
        return
    import iam_policy

    region, account = simulator.REGION, simulator.ACCOUNT_ID
    template = ROOT / "cloudformation.yaml"
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for recorded in ENGINE_CALLS:
        calls = iam_policy.calls_from_api(
            recorded["service"], recorded["operation"], recorded["params"], region=region, account=account
        )
        groups.setdefault((recorded["target_cluster"], recorded["target_service"]), []).extend(calls)
    violations: list[str] = []
    for (cluster, service), calls in sorted(groups.items()):
        scope = {
            "ArtifactBucket": "bucket",
            "ArtifactKey": "key.zip",
            "TargetClusterName": cluster,
            "TargetServiceNames": service,
        }
        violations += iam_policy.check_calls(
            template, calls, scope, pseudo={"AWS::Region": region, "AWS::AccountId": account}
        )
    if violations:
        IAM_SUMMARY.append((f"IAM cross-check: {len(violations)} engine calls the role would refuse:", True))
        IAM_SUMMARY.extend((f"  {violation}", True) for violation in violations[:20])
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        IAM_SUMMARY.append(
            (f"IAM cross-check: all {len(ENGINE_CALLS)} recorded engine calls are allowed by the role.", False)
        )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the cross-check's verdict. pytest calls this after ending the "[100%]" line, so it gets its own."""
    for line, failed in IAM_SUMMARY:
        terminalreporter.write_line(line, red=failed)
