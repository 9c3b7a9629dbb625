"""Every time rule of a run, in one place: the plan's estimate and whether it fits (the hand-off and the dry
run), whether one more batch fits (plain and durable), the restore's reserve, the lock's TTLs and heartbeat, and the
durable run's admission (and the size of its result), without the durable SDK.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from recycler.aws.session import CLIENT_ATTEMPTS, CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS
from recycler.model.errors import PreflightError
from recycler.model.report import ReportPlan
from recycler.model.request import MAX_BATCH_SIZE, RecycleRequest
from recycler.model.settings import RecycleSettings
from recycler.run.preflight import INITIAL_REPLACEMENT_ESTIMATE_SECONDS, Preflight
from recycler.run.selection import Selection, checkpoint_batches

# The function's DurableConfig.ExecutionTimeout, which the template also sets here
# (read by recycler.hosts.environment, passed in as a number).
EXECUTION_TIMEOUT_ENV = "DURABLE_EXECUTION_TIMEOUT_SECONDS"
DEFAULT_EXECUTION_TIMEOUT_SECONDS = 86_400
MAX_EXECUTION_TIMEOUT_SECONDS = 31_622_400

# Step retries (recycler.hosts.durable.STEP_RETRY): three attempts, 2 s then 4 s apart.
STEP_ATTEMPTS = 3
STEP_RETRY_SECONDS = 2 + 4

# Allowances, per batch, for what the engine's own clock does not cover:
# Lambda resuming the function after a wait, and step retries.
RESUME_SECONDS = 5
PER_TASK_OVERHEAD_SECONDS = 2 * (STEP_RETRY_SECONDS + 2 * RESUME_SECONDS) + 3 * RESUME_SECONDS
START_OVERHEAD_SECONDS = 120

# GetDurableExecution keeps at most 256 KB of result; the email and the logs have the full report.
MAX_RESULT_BYTES = 200_000
RESULT_SAMPLE = 10


def batch_worst_case_seconds(request: RecycleRequest, settings: RecycleSettings) -> float:
    """The longest one batch can take: the replacement wait gives up after replacement_timeout_seconds."""
    return (
        settings.replacement_timeout_seconds
        + settings.poll_interval_seconds
        + request.wait_time
        + PER_TASK_OVERHEAD_SECONDS
    )


# The time one more batch needs, given the replacement estimate: the host's rule (RunPolicy.batch_fit).
BatchFit = Callable[[float, RecycleRequest, RecycleSettings], float]


def plain_batch_seconds(estimate: float, request: RecycleRequest, settings: RecycleSettings) -> float:
    """One more batch must fit: the slowest replacement so far with a margin, wait_time, and the restore."""
    return estimate + request.wait_time + settings.restore_reserve_seconds


def durable_batch_seconds(estimate: float, request: RecycleRequest, settings: RecycleSettings) -> float:
    """What one more batch must find left of the execution: its worst case and the restore.

    Lambda ends an execution at its ExecutionTimeout without running any of its
    code, so a batch cut short there would leave the service surged. The
    estimate never makes this smaller: the worst case is what must fit.
    """
    worst = batch_worst_case_seconds(request, settings)
    return max(worst, estimate + request.wait_time) + settings.restore_reserve_seconds


def next_batch_seconds(
    fit: BatchFit, estimate: float, request: RecycleRequest, settings: RecycleSettings, last_with_alarms: bool
) -> float:
    """What the next batch needs; the last must also leave time for the alarm watch that follows it."""
    needed = fit(estimate, request, settings)
    return needed + settings.alarm_watch_seconds if last_with_alarms else needed


def restore_still_fits(remaining: float | None, settings: RecycleSettings) -> bool:
    """Whether one more poll still leaves the restore its reserve (no deadline: always)."""
    return remaining is None or remaining - settings.poll_interval_seconds >= settings.restore_reserve_seconds


def estimated_seconds(batches: int, request: RecycleRequest, settings: RecycleSettings) -> float:
    """How long the plan should take, with no replacement measured yet (the plan's own estimate)."""
    surges = 1 if request.maintain_service_state and batches else 0
    per_replacement = INITIAL_REPLACEMENT_ESTIMATE_SECONDS + settings.poll_interval_seconds + PER_TASK_OVERHEAD_SECONDS
    return (
        START_OVERHEAD_SECONDS
        + (batches + surges) * per_replacement
        + batches * request.wait_time
        + settings.restore_reserve_seconds
    )


def check_duration_bound(
    preflight: Preflight,
    selection: Selection,
    request: RecycleRequest,
    settings: RecycleSettings,
    remaining: float,
    timeout: int,
) -> None:
    """Admit, before anything is changed, a recycle whose estimate fits what is left of the execution.

    The estimate admits the plan; before each batch the engine checks that the
    batch's worst case and the restore still fit (durable_batch_seconds), and otherwise
    stops, restores and reports incomplete with the event that carries on. The
    selection is the run's own (select() runs once per run).
    """
    tasks, batches = len(selection.chosen), len(selection.batches)
    if not batches:
        return
    estimate = (
        estimated_seconds(batches, request, settings)
        + alarm_watch_seconds(preflight, request, settings, batches)
        + checkpoint_hold_seconds(selection, request)
    )
    first = durable_batch_seconds(0.0, request, settings) + START_OVERHEAD_SECONDS
    if estimate <= remaining and first <= remaining:
        return
    longest = max(estimate, first)
    advice = [f"redeploy with DurableExecutionTimeout of at least {math.ceil(longest + (timeout - remaining))}"]
    if request.batch_size < MAX_BATCH_SIZE and estimate > remaining:
        advice.insert(0, "raise batch_size, or recycle fewer tasks at once with max_tasks")
    raise PreflightError(
        f"{tasks} tasks in {batches} batches of up to {request.batch_size} should take about {longest:.0f}s "
        f"({longest / 3600:.1f} h; {INITIAL_REPLACEMENT_ESTIMATE_SECONDS:.0f}s per batch of replacements, "
        f"wait_time {request.wait_time}s, restore reserve {settings.restore_reserve_seconds}s), more than the "
        f"{remaining:.0f}s left of this execution's ExecutionTimeout ({timeout}s). Nothing was changed: "
        f"{' or '.join(advice)}"
    )


def durable_plan_seconds(plan: ReportPlan, request: RecycleRequest, settings: RecycleSettings) -> float:
    """A service's durable worst case from its dry run's plan: what check_duration_bound admits it against (its
    estimate with the alarm watch and checkpoint holds, and at least its first batch's worst case)."""
    holds = sum(checkpoint["hold_seconds"] for checkpoint in plan["checkpoints"])
    return durable_worst_seconds(plan["batches"], bool(plan["alarms"]), holds, request, settings)


def selected_durable_seconds(tasks: int, alarms: bool, request: RecycleRequest, settings: RecycleSettings) -> float:
    """A service's durable worst case before any of its reads, from its task count: every task recycled (up to
    max_tasks), every checkpoint a hold of its own. A dry run's plan can only be shorter (ages leave tasks out,
    one batch can reach two checkpoints)."""
    batches = math.ceil(min(tasks, request.max_tasks or tasks) / request.batch_size)
    holds = min(len(request.checkpoint_percentages), batches) * request.checkpoint_delay_seconds
    return durable_worst_seconds(batches, alarms, holds, request, settings)


def durable_worst_seconds(
    batches: int, alarms: bool, hold_seconds: float, request: RecycleRequest, settings: RecycleSettings
) -> float:
    if not batches:
        return 0.0
    estimate = (
        estimated_seconds(batches, request, settings) + (settings.alarm_watch_seconds if alarms else 0) + hold_seconds
    )
    return max(estimate, durable_batch_seconds(0.0, request, settings) + START_OVERHEAD_SECONDS)


# A run in one process (the plain function, the CLI) renews its lock on a heartbeat while it waits: when the
# lock's last write is HEARTBEAT_SECONDS old, checked at least that often, so a live run's lock is never more
# than two beats old between its calls. The lease outlives that by the slowest call there can be between two
# beats (one retried to its limit, recycler.aws.session.CLIENT_CONFIG), so a live run never looks dead, and a
# dead one is seen stale (and repaired by the next run) this long after its last beat. A durable execution
# cannot beat while suspended: it keeps the long lease of lock_ttl_seconds.
HEARTBEAT_SECONDS = 30.0
SLOWEST_CALL_SECONDS = float(CLIENT_ATTEMPTS * (CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS))
HEARTBEAT_LEASE_SECONDS = 2 * HEARTBEAT_SECONDS + SLOWEST_CALL_SECONDS


def invocation_lock_ttl(remaining: float | None) -> float:
    """The lock's TTL when the host sets none: it dies shortly after the invocation could."""
    return (remaining if remaining is not None else 900.0) + 60.0


def run_lock_ttl(fixed: float | None, remaining: float | None) -> float:
    """The lock's TTL at a write: the host's fixed one, else the invocation's."""
    return fixed if fixed is not None else invocation_lock_ttl(remaining)


def lock_ttl_seconds(settings: RecycleSettings, request: RecycleRequest) -> float:
    """How long the lock outlives its last renewal.

    The engine renews it after every replacement. The longest stretch without
    a renewal is the first: the surge and the first replacement, each up to
    replacement_timeout_seconds. So a live run never looks abandoned, and the
    lock of a run that died expires this long after its last renewal.
    """
    per_replacement = settings.replacement_timeout_seconds + settings.poll_interval_seconds
    return float(
        2 * (per_replacement + PER_TASK_OVERHEAD_SECONDS) + request.wait_time + settings.restore_reserve_seconds
    )


def bounded_result(result: dict[str, Any]) -> dict[str, Any]:
    """The report as the execution's result, shortened if it would not fit GetDurableExecution's 256 KB."""
    if len(json.dumps(result, default=str)) <= MAX_RESULT_BYTES:
        return result
    return dict(_shortened(result))


def _shortened(result: Mapping[str, Any]) -> Mapping[str, Any]:
    short = dict(result)
    for key in ("tasks_recycled", "tasks_skipped", "tasks_remaining", "tasks_stopped_not_replaced"):
        items = result.get(key) or []
        short[key] = items[:RESULT_SAMPLE]
        short[f"{key}_count"] = len(items)
    short["truncated"] = f"task lists cut to {RESULT_SAMPLE} entries; the email has the full report"
    return short


# What a fleet's result keeps of each service when even its shortened reports do not fit.
_SERVICE_OUTLINE = ("service", "status", "task_total", "restored", "error", "error_type", "duration_seconds")


def bounded_fleet_result(result: Mapping[str, Any]) -> Mapping[str, Any]:
    """A fleet's report as the execution's result: each service's report shortened, then outlined, until it fits."""
    if len(json.dumps(result, default=str)) <= MAX_RESULT_BYTES:
        return result
    short = dict(result)
    services = result.get("services") or []
    short["services"] = [_shortened(s) for s in services]
    if len(json.dumps(short, default=str)) > MAX_RESULT_BYTES:
        short["services"] = [{k: s.get(k) for k in _SERVICE_OUTLINE} for s in services]
    short["truncated"] = "each service's report shortened; the email has the full report"
    return short


def plan_seconds(
    preflight: Preflight, selection: Selection, request: RecycleRequest, settings: RecycleSettings
) -> float:
    """How long the plan should take: each batch (and the surge) as long as the service's tasks have taken
    to start, plus a poll, wait_time after each batch, the checkpoints' holds, and the alarm watch after the last."""
    batches = len(selection.batches)
    surges = 1 if request.maintain_service_state and batches else 0
    start = preflight.fastest_start_seconds or INITIAL_REPLACEMENT_ESTIMATE_SECONDS
    return (
        (batches + surges) * (start + settings.poll_interval_seconds)
        + batches * request.wait_time
        + alarm_watch_seconds(preflight, request, settings, batches)
        + checkpoint_hold_seconds(selection, request)
    )


def checkpoint_hold_seconds(selection: Selection, request: RecycleRequest) -> int:
    """How long the run holds at its checkpoints: one hold per batch that reaches one."""
    return len(checkpoint_batches(selection, request.checkpoint_percentages)) * request.checkpoint_delay_seconds


def alarm_watch_seconds(preflight: Preflight, request: RecycleRequest, settings: RecycleSettings, batches: int) -> int:
    """How long the run watches its alarms after the last batch: only when it recycles and has alarms."""
    return settings.alarm_watch_seconds if batches and preflight.gating_alarms(request) else 0


@dataclass(frozen=True)
class PlanFit:
    """Whether the plan's estimate fits what the invocation has left (None: no deadline)."""

    fits: bool
    estimated_seconds: int
    available_seconds: int | None


def plan_fits(
    preflight: Preflight,
    selection: Selection,
    request: RecycleRequest,
    settings: RecycleSettings,
    remaining: float | None,
) -> PlanFit:
    """Whether the plan's estimate fits what this invocation has left after the restore's reserve.

    The same rule decides the hand-off and a dry run's time_budget check. No deadline (the CLI) always fits.
    """
    needed = plan_seconds(preflight, selection, request, settings)
    available = None if remaining is None else remaining - settings.restore_reserve_seconds
    return PlanFit(
        fits=available is None or needed <= available or not selection.batches,
        estimated_seconds=round(needed),
        available_seconds=None if available is None else round(available),
    )
