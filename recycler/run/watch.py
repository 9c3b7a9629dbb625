"""The replacement watch: a new task of this service, tracked by identity until it serves.

``services_stable`` alone is not enough: right after StopTask the old task is
still RUNNING while it drains, so the counts can match before the replacement
has even started. A replacement is a task whose ARN the service did not have
before, RUNNING, HEALTHY when the task definition has health checks, healthy
in every target group, with the service stable (one deployment, running =
desired). Replacements that stop before serving are counted as failed starts.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from recycler.model.errors import PlacementFailed, ReplacementFailed, ReplacementTimeout, TimeBudgetExhausted
from recycler.model.progress import LiveProgress
from recycler.run.budget import restore_still_fits
from recycler.run.context import RunContext
from recycler.run.gates import Gates, StopReason
from recycler.run.preflight import INITIAL_REPLACEMENT_ESTIMATE_SECONDS, Preflight, TargetGroup, epoch

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import ServiceTypeDef, TaskTypeDef
    from mypy_boto3_elbv2.type_defs import TargetDescriptionTypeDef

STOP_REASON = "Stopped by ecs-task-recycle (one-at-a-time restart)"
# What ECS's service event says when it cannot place a task (no capacity, no matching instance).
PLACEMENT_FAILURE = "was unable to place a task"
# How much longer than the slowest replacement seen so far the next one may take.
ESTIMATE_SAFETY_FACTOR = 1.5


@dataclass
class WatchState:
    """A replacement wait's state between polls (a durable checkpoint holds it as JSON), and, once done, what
    served: ``new_task_arns`` in the order they were first seen serving, ``seconds`` after ``since`` they all
    served with the service stable, and ``started_seconds``, when ECS started the first of them."""

    since: float
    count: int
    done: bool = False
    failures: int = 0
    failed_arns: list[str] = field(default_factory=list)
    # When each new task was first seen serving, in seconds after since.
    serving: dict[str, float] = field(default_factory=dict)
    new_seen: int = 0
    last_new_at: float = 0.0
    candidate: str | None = None
    stop: StopReason | None = None
    # The replacements, once all are known and none is stopping (describing them is then enough).
    tracked: list[str] = field(default_factory=list)
    failed_count_seen: int | None = None
    new_task_arns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    started_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": None if self.stop is None else self.stop.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WatchState:
        stop = data.get("stop")
        return cls(**{**data, "stop": None if stop is None else StopReason.from_dict(stop)})


class ReplacementWatch:
    def __init__(self, context: RunContext, preflight: Preflight, gates: Gates | None = None) -> None:
        self.context = context
        self.gateway = context.gateway
        # Alarms and cancel, noted on every poll; the batch loop stops once the replacements in flight serve.
        self.gates = gates
        self.runtime = context.runtime
        self.clock = context.clock
        self.settings = context.settings
        self.log = context.log
        self.health_checked = preflight.health_checked
        self.target_groups = preflight.target_groups
        # Every task the service had, and each replacement as it serves: none of them is a new one.
        self.known_arns: set[str] = set(preflight.all_task_arns)
        self.start_seconds_seen: list[float] = []
        # The fastest the service's tasks have started: when the first poll after a stop is worth making.
        self.min_start_seconds: float | None = preflight.fastest_start_seconds

    def served(self, replacements: WatchState) -> None:
        """Replacements serve: they are known from now on, and how long they took sets the next estimates.

        The budget's estimate learns from ``seconds`` (until they served, as polled); the first
        poll's timing from ``started_seconds``, when ECS started them (a poll can only overshoot that).
        """
        self.known_arns.update(replacements.new_task_arns)
        self.start_seconds_seen.append(replacements.seconds)
        started = replacements.started_seconds or replacements.seconds
        fastest = self.min_start_seconds
        self.min_start_seconds = started if fastest is None else min(fastest, started)

    def estimate(self) -> float:
        """How long the next replacement may take: the slowest so far, with a margin."""
        if not self.start_seconds_seen:
            return INITIAL_REPLACEMENT_ESTIMATE_SECONDS
        return max(self.start_seconds_seen) * ESTIMATE_SAFETY_FACTOR

    def wait(self, name: str, since: float, count: int = 1) -> WatchState:
        """Wait until `count` tasks this service did not have before are up and serving (the tasks they
        replace drained): the state once done says which, and how long they took."""
        poll = self.settings.poll_interval_seconds
        # Replacements have taken at least this long so far; polling earlier only costs API calls.
        if self.min_start_seconds is not None and self.min_start_seconds > 2 * poll:
            self.runtime.sleep(f"{name} head start", int(self.min_start_seconds))
        initial = WatchState(since=since, count=count)
        # The runtime keeps the state as its to_dict() JSON between polls (a durable replay rebuilds it from that).
        return self.runtime.wait_until(name, self._check_new_tasks, initial, poll)

    def _check_new_tasks(self, state: WatchState) -> WatchState:
        elapsed = self.clock.now() - state.since
        service = self.gateway.describe_service(include_tags=True)
        self.context.tell(LiveProgress(serving=service.get("runningCount"), desired=service.get("desiredCount")))
        if self.gates is not None and state.stop is None:
            state.stop = self.gates.stop_reason(service)
        # Once the replacements are all known and none is stopping, describing them is enough: ListTasks
        # (a page per 100 tasks) is only needed while one may still appear, or replace one that failed.
        tracked = state.tracked
        listed = tracked if len(tracked) >= state.count else self.gateway.list_task_arns()
        new_arns = [a for a in listed if a not in self.known_arns]
        new_tasks = self.gateway.describe_tasks(new_arns) if new_arns else []
        staying = [t["taskArn"] for t in new_tasks if t.get("desiredStatus") == "RUNNING"]
        state.tracked = staying if len(staying) == len(new_tasks) >= state.count else []
        self._count_failures(service, new_tasks, state)
        failed = set(state.failed_arns)
        serving = {t["taskArn"] for t in new_tasks if t["taskArn"] not in failed and self._is_serving(t)}
        # When each was first seen serving (one that stopped serving meanwhile no longer counts).
        state.serving = {arn: state.serving.get(arn, elapsed) for arn in serving}
        if len(serving) >= state.count and self._is_stable(service):
            order = sorted(state.serving, key=lambda arn: (state.serving[arn], arn))[: state.count]
            started = [epoch(t.get("startedAt")) - state.since for t in new_tasks if t["taskArn"] in order]
            state.started_seconds = min((s for s in started if s > 0), default=None)
            state.done, state.new_task_arns, state.seconds = True, order, elapsed
            return state
        if len(new_arns) > state.new_seen:
            state.new_seen, state.last_new_at = len(new_arns), elapsed
        pending = [t for t in new_tasks if t["taskArn"] not in serving and t["taskArn"] not in failed]
        state.candidate = f"{pending[0]['taskArn']} ({pending[0].get('lastStatus')})" if pending else None
        self._check_placement(service, state, elapsed)
        self._check_timeout(state, len(serving), elapsed)
        return state

    def _check_timeout(self, state: WatchState, serving: int, elapsed: float) -> None:
        """Too long without every replacement serving, or too little time left for the restore: give up."""
        if elapsed >= self.settings.replacement_timeout_seconds:
            limit, candidate = self.settings.replacement_timeout_seconds, state.candidate or "none started"
            message = (
                f"{serving} of {state.count} replacements healthy within {limit}s (waiting for: {candidate})"
                if state.count > 1
                else f"no healthy replacement within {limit}s (candidate: {candidate})"
            )
            if state.stop is not None:
                message += f"; meanwhile {state.stop.detail}"
            raise ReplacementTimeout(message)
        if not restore_still_fits(self.runtime.remaining_seconds(), self.settings):
            raise TimeBudgetExhausted(
                "the time budget ran out while waiting for a replacement; stopping here so the restore still fits"
            )

    def _count_failures(self, service: ServiceTypeDef, new_tasks: list[TaskTypeDef], state: WatchState) -> None:
        """Replacements that stopped before serving (TaskFailedToStart and the like): give up after too many."""
        failed = [t for t in new_tasks if _failed_replacement(t)]
        failed += [
            t
            for t in self._newly_failed(service, state)
            # A failed task without createdAt counts as this wait's: better than missing a failure.
            if _failed_replacement(t) and epoch(t.get("createdAt"), missing=float("inf")) >= state.since - 1
        ]
        for task in failed:
            if task["taskArn"] in state.failed_arns:
                continue
            state.failed_arns = [*state.failed_arns, task["taskArn"]]
            state.failures += 1
            reason = task.get("stoppedReason") or task.get("stopCode") or "no reason given"
            self.log(
                logging.WARNING,
                f"Replacement task failed to start: {reason}",
                task_arn=task["taskArn"],
                failures=state.failures,
            )
            if state.failures >= self.settings.max_failed_replacements:
                raise ReplacementFailed(
                    f"{state.failures} replacement tasks stopped before becoming healthy; "
                    f"{ReplacementFailed.REASON}{reason}"
                )

    def _check_placement(self, service: ServiceTypeDef, state: WatchState, elapsed: float) -> None:
        """ECS keeps saying it cannot place a task, and no new task has appeared for placement_timeout_seconds."""
        since = state.since
        unplaced = [
            e
            for e in service.get("events", [])
            if PLACEMENT_FAILURE in str(e.get("message", "")) and epoch(e.get("createdAt")) >= since - 1
        ]
        stalled = elapsed - state.last_new_at
        if unplaced and stalled >= self.settings.placement_timeout_seconds:
            raise PlacementFailed(
                f"ECS could not place a task for {stalled:.0f}s (placement_timeout_seconds "
                f"{self.settings.placement_timeout_seconds}): {unplaced[0].get('message')}"
            )

    def _newly_failed(self, service: ServiceTypeDef, state: WatchState) -> list[TaskTypeDef]:
        """Failed starts that vanished between two polls: the deployment's failedTasks counter moved."""
        failed_count = sum(int(d.get("failedTasks", 0)) for d in service.get("deployments", []))
        previous = state.failed_count_seen
        state.failed_count_seen = failed_count
        if previous is None or failed_count <= previous:
            return []
        stopped = [
            a
            for a in self.gateway.list_task_arns(desired_status="STOPPED")
            if a not in self.known_arns and a not in state.failed_arns
        ]
        return self.gateway.describe_tasks(stopped) if stopped else []

    def _is_serving(self, task: TaskTypeDef) -> bool:
        if task.get("lastStatus") != "RUNNING" or task.get("desiredStatus") != "RUNNING":
            return False
        if self.health_checked and task.get("healthStatus") != "HEALTHY":
            return False
        return all(self._healthy_in_target_group(task, tg) for tg in self.target_groups)

    def _healthy_in_target_group(self, task: TaskTypeDef, target_group: TargetGroup) -> bool:
        if self.gateway.elbv2 is None:
            return True
        target_id = _task_ip(task)
        targets: list[TargetDescriptionTypeDef] = []
        if target_id:
            target: TargetDescriptionTypeDef = {"Id": target_id}
            if target_group.port:
                target["Port"] = int(target_group.port)
            targets.append(target)
        states = self.gateway.target_health(target_group.arn, targets)
        # Bridge/host networking has no task IP: then every registered target must be healthy.
        return bool(states) and all(s == "healthy" for s in states)

    @staticmethod
    def _is_stable(service: ServiceTypeDef) -> bool:
        deployments = service.get("deployments", [])
        return len(deployments) == 1 and service.get("runningCount") == service.get("desiredCount")


def _failed_replacement(task: TaskTypeDef) -> bool:
    """A replacement that ECS gave up on: it failed to start, crashed, or failed its health checks.

    A new task stopped by scale-in (or by this tool) is not a failure.
    """
    if task.get("desiredStatus") != "STOPPED" and task.get("lastStatus") != "STOPPED":
        return False
    if task.get("stoppedReason") == STOP_REASON:
        return False
    reason = str(task.get("stoppedReason") or "").lower()
    return task.get("stopCode") in ("TaskFailedToStart", "EssentialContainerExited") or "health check" in reason


def _task_ip(task: TaskTypeDef) -> str | None:
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return str(detail.get("value"))
    return None
