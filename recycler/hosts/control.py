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

from typing import TYPE_CHECKING, Any

from recycler.aws.gateway import ServiceGateway
from recycler.lock.record import LATEST_TIME, LockRecord
from recycler.lock.store import DynamoLockStore, lock_key
from recycler.model.runtime import Clock, iso_seconds
from recycler.run.gates import CANCEL_TAG_KEY, CancelRequest, cancel_tag
from recycler.run.preflight import check_arn_matches

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import ServiceTypeDef


def status(reads: ServiceGateway, store: DynamoLockStore, clock: Clock) -> dict[str, Any]:
    service, lock = _service_and_lock(reads, store)
    now = clock.now()
    state = "idle" if lock is None or not (lock.is_live(now) or lock.is_stale(now)) else _state(lock, now)
    result: dict[str, Any] = {
        "action": "status",
        "state": state,
        "cluster": reads.request.cluster_name,
        "service": reads.request.service_name,
    }
    cancel = cancel_tag(service)
    if cancel is not None:
        result["cancel_requested"] = cancel.describe()
    if lock is None:
        return result
    progress = lock.progress
    result.update(
        owner=lock.owner,
        phase=lock.phase,
        started_at=iso_seconds(lock.started_at),
        progress={"recycled": progress.recycled, "total": progress.total, "batch": progress.batch},
        lock_expires_at=iso_seconds(lock.expires_at),
    )
    if state == "running":
        result["eta"] = _eta(lock)
    elif state == "stale":
        result["note"] = "the run that held the lock is gone; the next recycle repairs the service from the lock first"
    return result


def cancel(reads: ServiceGateway, store: DynamoLockStore, clock: Clock, requested_by: str) -> dict[str, Any]:
    service, lock = _service_and_lock(reads, store)
    now = clock.now()
    result: dict[str, Any] = {
        "action": "cancel",
        "cluster": reads.request.cluster_name,
        "service": reads.request.service_name,
    }
    if lock is None or not lock.is_live(now):
        result.update(state="idle", result="no recycle in progress: nothing to cancel, and no tag written")
        return result
    cancel_request = CancelRequest(requested_by, now, run=lock.owner)
    reads.tag_service(service["serviceArn"], CANCEL_TAG_KEY, cancel_request.to_tag_value())
    result.update(
        state="running",
        owner=lock.owner,
        result=f"cancel requested ({cancel_request.describe()}): the run stops no further task, lets the replacements "
        "in flight finish, restores the service and ends cancelled",
    )
    return result


def _service_and_lock(reads: ServiceGateway, store: DynamoLockStore) -> tuple[ServiceTypeDef, LockRecord | None]:
    service = reads.describe_service(include_tags=True)
    check_arn_matches(reads.request, service)
    key = lock_key(str(service.get("clusterArn", "")), str(service.get("serviceName", reads.request.service_name)))
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
