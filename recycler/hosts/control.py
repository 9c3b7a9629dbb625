"""Operator control of a run in flight: ``status`` (read the lock, change nothing) and ``cancel``.

Both read the service (for its cluster ARN, which keys the lock item) and the
lock item. Neither touches desired count or the scalable target.

- **status** says whether a recycle runs (``running``), none does (``idle``), or
  one died holding the lock (``stale``: the next run repairs it), with the
  owner, when it started, its progress, the lock's expiry and an ETA.
- **cancel** writes the ``ecs-task-recycle:cancel`` tag (who asked, and when)
  when a recycle is running; the run sees it on its next poll, stops no further
  task, lets the replacements in flight finish, restores, removes the tag and
  ends ``cancelled``. With nothing running it says so and writes no tag.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

from recycler.aws.gateway import ServiceGateway
from recycler.lock.record import LATEST_TIME, LockRecord
from recycler.lock.store import DynamoLockStore, lock_key
from recycler.model.runtime import Clock, iso_seconds
from recycler.run.gates import CANCEL_TAG_KEY, CancelRequest, cancel_tag
from recycler.run.preflight import check_arn_matches

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import ServiceTypeDef


STALE_NOTE = "the run that held the lock is gone; the next recycle repairs the service from the lock first"


@dataclass(frozen=True)
class LockView:
    """What status says of the lock it found: the run's owner, phase, start, progress and expiry."""

    owner: str
    phase: str
    started_at: str
    progress: dict[str, int]
    lock_expires_at: str


class StatusAnswer(TypedDict):
    """``action: status`` as the handler returns it; the lock's fields only when there is a lock."""

    action: Literal["status"]
    state: str
    cluster: str
    service: str
    cancel_requested: NotRequired[str]
    owner: NotRequired[str]
    phase: NotRequired[str]
    started_at: NotRequired[str]
    progress: NotRequired[dict[str, int]]
    lock_expires_at: NotRequired[str]
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


@dataclass(frozen=True)
class StatusResult:
    """``action: status``: whether a recycle runs, and what its lock says."""

    state: str
    cluster: str
    service: str
    cancel_requested: str | None = None
    lock: LockView | None = None
    # Only while running (and None before the first batch).
    eta: str | None = None

    def to_dict(self) -> StatusAnswer:
        data: StatusAnswer = {
            "action": "status",
            "state": self.state,
            "cluster": self.cluster,
            "service": self.service,
        }
        if self.cancel_requested is not None:
            data["cancel_requested"] = self.cancel_requested
        if self.lock is None:
            return data
        lock = self.lock
        data["owner"], data["phase"], data["started_at"] = lock.owner, lock.phase, lock.started_at
        data["progress"], data["lock_expires_at"] = lock.progress, lock.lock_expires_at
        if self.state == "running":
            data["eta"] = self.eta
        elif self.state == "stale":
            data["note"] = STALE_NOTE
        return data


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
    if lock is None:
        return result
    progress = lock.progress
    view = LockView(
        owner=lock.owner,
        phase=lock.phase,
        started_at=iso_seconds(lock.started_at),
        progress={"recycled": progress.recycled, "total": progress.total, "batch": progress.batch},
        lock_expires_at=iso_seconds(lock.expires_at),
    )
    if state == "running":
        return replace(result, lock=view, eta=_eta(lock))
    return replace(result, lock=view)


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
    key = lock_key(str(service.get("clusterArn", "")), str(service.get("serviceName", gateway.request.service_name)))
    return service, store.read(key)


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
