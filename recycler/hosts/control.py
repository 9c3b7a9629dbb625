"""Operator control of a run in flight: ``status`` and ``history`` (read the lock table, change nothing) and
``cancel``.

Each reads the service (for its cluster ARN, which keys the lock item) and the
lock table. None touches desired count or the scalable target.

- **status** says whether a recycle runs (``running``), none does (``idle``), or
  one died holding the lock (``stale``: the next run repairs it), with the
  owner, when it started, its progress (``percent_complete`` and ``tasks_to_go``, as an instance refresh
  gives PercentageComplete and InstancesToUpdate), the age of the lock's last write, the lock's expiry and
  an ETA. Idle, it says how the last run went (``last_run``, from the run history).
- **history** lists the service's last 20 runs, newest first (recycler.lock.history).
- **cancel** writes the ``ecs-task-recycle:cancel`` tag (who asked, and when)
  when a recycle is running; the run sees it on its next poll, stops no further
  task, lets the replacements in flight finish, restores, removes the tag and
  ends ``cancelled``. With nothing running it says so and writes no tag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

from recycler.aws.gateway import ServiceGateway
from recycler.lock.history import HISTORY_LIMIT, RunEntry, RunEntryJson, RunHistory
from recycler.lock.record import LATEST_TIME, LockRecord
from recycler.lock.store import DynamoLockStore, lock_key
from recycler.model.errors import RecycleError
from recycler.model.runtime import TOOL_NAME, Clock, iso_seconds
from recycler.run.gates import CANCEL_TAG_KEY, CancelRequest, cancel_tag
from recycler.run.service_checks import check_arn_matches

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import ServiceTypeDef


logger = logging.getLogger(TOOL_NAME)

STALE_NOTE = "the run that held the lock is gone; the next recycle repairs the service from the lock first"


@dataclass(frozen=True)
class LockView:
    """What status says of the lock it found: the run's owner, phase, start, progress and expiry."""

    owner: str
    phase: str
    started_at: str
    progress: dict[str, int]
    lock_expires_at: str
    # While a run holds the lock (or died holding it): how far it has got, and how recently it wrote.
    pace: Pace | None = None
    # The run's run_key, when it was started with one: a follower of a second start recognises its run by it.
    run_key: str | None = None


@dataclass(frozen=True)
class Pace:
    """How far the run holding the lock has got, as an instance refresh says it (PercentageComplete,
    InstancesToUpdate), how long ago it last wrote its lock, and when it should be done."""

    percent_complete: int
    tasks_to_go: int
    heartbeat_age_seconds: int
    # Only while running (and None before the first batch).
    eta: str | None = None

    @classmethod
    def of(cls, lock: LockRecord, now: float, running: bool) -> Pace:
        progress = lock.progress
        done = min(progress.recycled, progress.total)
        # Rounded down: 100 only once every task is recycled.
        percent = done * 100 // progress.total if progress.total else 0
        # Every write (a heartbeat too) stamps updated_at; an item from before that field has its progress time.
        last_write = max(lock.updated_at, progress.updated_at, lock.started_at)
        eta = _eta(lock) if running else None
        return cls(percent, progress.total - done, max(int(now - last_write), 0), eta)


class StatusAnswer(TypedDict):
    """``action: status`` as the handler returns it; the lock's fields only when there is a lock."""

    action: Literal["status"]
    state: str
    cluster: str
    service: str
    cancel_requested: NotRequired[str]
    last_run: NotRequired[RunEntryJson]
    owner: NotRequired[str]
    phase: NotRequired[str]
    started_at: NotRequired[str]
    progress: NotRequired[dict[str, int]]
    lock_expires_at: NotRequired[str]
    run_key: NotRequired[str]
    percent_complete: NotRequired[int]
    tasks_to_go: NotRequired[int]
    heartbeat_age_seconds: NotRequired[int]
    eta: NotRequired[str | None]
    note: NotRequired[str]


class CancelAnswer(TypedDict):
    """``action: cancel`` as the handler returns it."""

    action: Literal["cancel"]
    cluster: str
    service: str
    state: str
    owner: NotRequired[str]
    result: str


class HistoryAnswer(TypedDict):
    """``action: history`` as the handler returns it: each run as ``last_run`` shows it."""

    action: Literal["history"]
    cluster: str
    service: str
    runs: list[RunEntryJson]


@dataclass(frozen=True)
class StatusResult:
    """``action: status``: whether a recycle runs, and what its lock says."""

    state: str
    cluster: str
    service: str
    cancel_requested: str | None = None
    lock: LockView | None = None
    # Only while idle: the last run the history has (None: none it has, or the history could not be read).
    last_run: RunEntry | None = None

    def to_dict(self) -> StatusAnswer:
        data: StatusAnswer = {
            "action": "status",
            "state": self.state,
            "cluster": self.cluster,
            "service": self.service,
        }
        if self.cancel_requested is not None:
            data["cancel_requested"] = self.cancel_requested
        if self.last_run is not None:
            data["last_run"] = self.last_run.to_dict()
        if self.lock is None:
            return data
        lock = self.lock
        data["owner"], data["phase"], data["started_at"] = lock.owner, lock.phase, lock.started_at
        data["progress"], data["lock_expires_at"] = lock.progress, lock.lock_expires_at
        if lock.run_key is not None:
            data["run_key"] = lock.run_key
        pace = lock.pace
        if pace is not None:
            data["percent_complete"], data["tasks_to_go"] = pace.percent_complete, pace.tasks_to_go
            data["heartbeat_age_seconds"] = pace.heartbeat_age_seconds
        if self.state == "running":
            data["eta"] = pace.eta if pace is not None else None
        elif self.state == "stale":
            data["note"] = STALE_NOTE
        return data


@dataclass(frozen=True)
class HistoryResult:
    """``action: history``: the service's last runs, newest first."""

    cluster: str
    service: str
    runs: tuple[RunEntry, ...]

    def to_dict(self) -> HistoryAnswer:
        return {
            "action": "history",
            "cluster": self.cluster,
            "service": self.service,
            "runs": [run.to_dict() for run in self.runs],
        }


@dataclass(frozen=True)
class CancelResult:
    """``action: cancel``: whether a cancel was asked for, and of whom."""

    state: str
    cluster: str
    service: str
    result: str
    owner: str | None = None

    def to_dict(self) -> CancelAnswer:
        if self.owner is None:
            # The same keys in the same order, without the owner.
            return {
                "action": "cancel",
                "cluster": self.cluster,
                "service": self.service,
                "state": self.state,
                "result": self.result,
            }
        return {
            "action": "cancel",
            "cluster": self.cluster,
            "service": self.service,
            "state": self.state,
            "owner": self.owner,
            "result": self.result,
        }


def status(gateway: ServiceGateway, store: DynamoLockStore, clock: Clock) -> StatusResult:
    service, lock = _service_and_lock(gateway, store)
    now = clock.now()
    state = "idle" if lock is None or not (lock.is_live(now) or lock.is_stale(now)) else _state(lock, now)
    cancel = cancel_tag(service)
    result = StatusResult(
        state,
        gateway.request.cluster_name,
        gateway.request.service_name,
        cancel_requested=cancel.describe() if cancel is not None else None,
    )
    if state == "idle":
        result = replace(result, last_run=_last_run(store, _key(gateway, service)))
    if lock is None:
        return result
    progress = lock.progress
    view = LockView(
        owner=lock.owner,
        phase=lock.phase,
        started_at=iso_seconds(lock.started_at),
        progress={"recycled": progress.recycled, "total": progress.total, "batch": progress.batch},
        lock_expires_at=iso_seconds(lock.expires_at),
        run_key=lock.run_key,
    )
    if state == "idle":
        return replace(result, lock=view)
    return replace(result, lock=replace(view, pace=Pace.of(lock, now, running=state == "running")))


def history(gateway: ServiceGateway, store: DynamoLockStore) -> HistoryResult:
    service, _ = _service_and_lock(gateway, store)
    runs = RunHistory(store.dynamodb, store.table_name).latest(_key(gateway, service), HISTORY_LIMIT)
    return HistoryResult(gateway.request.cluster_name, gateway.request.service_name, tuple(runs))


def cancel(gateway: ServiceGateway, store: DynamoLockStore, clock: Clock, requested_by: str) -> CancelResult:
    service, lock = _service_and_lock(gateway, store)
    now = clock.now()
    cluster, service_name = gateway.request.cluster_name, gateway.request.service_name
    if lock is None or not lock.is_live(now):
        return CancelResult(
            "idle", cluster, service_name, "no recycle in progress: nothing to cancel, and no tag written"
        )
    cancel_request = CancelRequest(requested_by, now, run=lock.owner)
    gateway.tag_service(service["serviceArn"], CANCEL_TAG_KEY, cancel_request.to_tag_value())
    return CancelResult(
        "running",
        cluster,
        service_name,
        f"cancel requested ({cancel_request.describe()}): the run stops no further task, lets the replacements "
        "in flight finish, restores the service and ends cancelled",
        owner=lock.owner,
    )


def _service_and_lock(gateway: ServiceGateway, store: DynamoLockStore) -> tuple[ServiceTypeDef, LockRecord | None]:
    service = gateway.describe_service(include_tags=True)
    check_arn_matches(gateway.request, service)
    return service, store.read(_key(gateway, service))


def _key(gateway: ServiceGateway, service: ServiceTypeDef) -> str:
    return lock_key(str(service.get("clusterArn", "")), str(service.get("serviceName", gateway.request.service_name)))


def _last_run(store: DynamoLockStore, key: str) -> RunEntry | None:
    """The newest run of the history; None when it has none, or cannot be read (status still answers)."""
    try:
        runs = RunHistory(store.dynamodb, store.table_name).latest(key, 1)
    except RecycleError as e:
        logger.warning(f"The last run is not shown: the history could not be read ({e})")
        return None
    return runs[0] if runs else None


def _state(lock: LockRecord, now: float) -> str:
    return "running" if lock.is_live(now) else "stale"


def _eta(lock: LockRecord) -> str | None:
    """When the run should be done, from the pace of its batches so far (None before the first batch)."""
    progress = lock.progress
    if not progress.batch or not progress.recycled or progress.updated_at <= lock.started_at:
        return None
    per_task = (progress.updated_at - lock.started_at) / progress.recycled
    eta = progress.updated_at + per_task * max(progress.total - progress.recycled, 0)
    # A pace that ends past 2100 is no estimate, and a far one cannot even be formatted.
    return iso_seconds(eta) if eta < LATEST_TIME else None
