"""A fleet run's record in the lock table: where a cancel of the whole fleet reaches it.

Each service's run has its own lock item, and a fleet's ``cancel`` reaches the services in flight through
theirs. Between them no service holds one: in the fleet's first seconds, before its first service has
taken its lock, and in the instant between two services. So a fleet run writes one item of its own when it
starts, key ``fleet#<cluster>#<selection digest>`` (the same selection, the same item: the latest fleet run
of it), with its owner. ``cancel`` with the same selection marks it, and the fleet reads it before it
starts each service. The run marks it ended when it ends, so a later cancel finds no fleet going and a
later run starts clean; ``expires_at`` (the table's TTL) tidies it away after a week.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recycler.aws.gateway import aws_errors, error_code
from recycler.model.errors import AwsCallFailed
from recycler.model.fleet import FleetRequest
from recycler.model.fleet_report import FleetRunJson
from recycler.model.runtime import Clock, iso_seconds

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

FLEET_RECORD_RETENTION_SECONDS = 7 * 86_400
_CONDITION_FAILED = "ConditionalCheckFailedException"


def fleet_record_key(request: FleetRequest) -> str:
    return f"fleet#{request.template.cluster_name}#{request.digest()}"


@dataclass(frozen=True)
class FleetCancel:
    """What a cancel of a fleet found: the fleet run going (its owner), or none."""

    owner: str | None

    def to_answer(self) -> str:
        if self.owner is None:
            return "no fleet run of this selection is going: each service's answer says what was cancelled"
        return f"requested: fleet run {self.owner} starts no further service"


@dataclass(frozen=True)
class FleetRun:
    owner: str
    started_at: int
    ended_at: int | None = None
    status: str | None = None
    cancel_requested_by: str | None = None

    def to_dict(self) -> FleetRunJson:
        return {
            "owner": self.owner,
            "started_at": iso_seconds(self.started_at),
            "ended_at": None if self.ended_at is None else iso_seconds(self.ended_at),
            "status": self.status,
            "cancel_requested_by": self.cancel_requested_by,
        }


@dataclass(frozen=True)
class FleetRecord:
    """One fleet run's item in the lock table (every method is one call)."""

    dynamodb: DynamoDBClient
    table_name: str
    key: str

    def begin(self, owner: str, now: float) -> None:
        """This run is the fleet of its selection now: an earlier run's item (and its cancel) is replaced."""
        with aws_errors("PutItem"):
            self.dynamodb.put_item(
                TableName=self.table_name,
                Item={
                    "pk": {"S": self.key},
                    "fleet_owner": {"S": owner},
                    "started_at": {"N": str(int(now))},
                    "expires_at": {"N": str(int(now) + FLEET_RECORD_RETENTION_SECONDS)},
                },
            )

    def read(self) -> FleetRun | None:
        """The latest fleet run of this selection, going or ended; None when there has been none (for a week)."""
        with aws_errors("GetItem"):
            item = self.dynamodb.get_item(TableName=self.table_name, Key={"pk": {"S": self.key}}, ConsistentRead=True)
        found = item.get("Item") or {}
        if "fleet_owner" not in found:
            return None
        ended = found.get("ended_at", {}).get("N")
        return FleetRun(
            owner=found["fleet_owner"].get("S", ""),
            started_at=int(found.get("started_at", {}).get("N", "0")),
            ended_at=None if ended is None else int(ended),
            status=found.get("fleet_status", {}).get("S"),
            cancel_requested_by=found.get("cancel_requested_by", {}).get("S"),
        )

    def latest(self) -> FleetRunJson | None:
        """The latest fleet run of this selection, as a fleet's status answers it."""
        run = self.read()
        return None if run is None else run.to_dict()

    def cancelled_by(self, owner: str) -> str | None:
        """Who cancelled this run of the fleet, if anyone has."""
        run = self.read()
        return run.cancel_requested_by if run is not None and run.owner == owner else None

    def request_cancel(self, requested_by: str, now: float) -> FleetCancel:
        """Mark the fleet run going (not one that ended) as cancelled."""
        try:
            with aws_errors("UpdateItem"):
                response = self.dynamodb.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": self.key}},
                    UpdateExpression="SET cancel_requested_by = :who, cancel_requested_at = :now",
                    ConditionExpression="attribute_exists(fleet_owner) AND attribute_not_exists(ended_at)",
                    ExpressionAttributeValues={":who": {"S": requested_by}, ":now": {"N": str(int(now))}},
                    ReturnValues="ALL_NEW",
                )
        except AwsCallFailed as e:
            if error_code(e) != _CONDITION_FAILED:
                raise
            return FleetCancel(None)
        return FleetCancel(response.get("Attributes", {}).get("fleet_owner", {}).get("S"))

    def end(self, owner: str, now: float, status: str) -> None:
        """This run of the fleet is over, and how it ended (unless a later run of the selection replaced it)."""
        try:
            with aws_errors("UpdateItem"):
                self.dynamodb.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": self.key}},
                    UpdateExpression="SET ended_at = :now, fleet_status = :status",
                    ConditionExpression="fleet_owner = :owner",
                    ExpressionAttributeValues={
                        ":now": {"N": str(int(now))},
                        ":status": {"S": status},
                        ":owner": {"S": owner},
                    },
                )
        except AwsCallFailed as e:
            if error_code(e) != _CONDITION_FAILED:
                raise


class CancelWatch:
    """This fleet run's cancel, as each service's admission asks for it: read at most once a second, so the
    services admitted together (when a wave of them ends at once) share one read. A cancel once seen stays."""

    REUSE_SECONDS = 1.0

    def __init__(self, record: FleetRecord, owner: str, clock: Clock) -> None:
        self.record, self.owner, self.clock = record, owner, clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._cancelled_by: str | None = None

    def cancelled_by(self) -> str | None:
        with self._lock:
            now = self.clock.now()
            fresh = self._read_at is not None and now - self._read_at < self.REUSE_SECONDS
            if self._cancelled_by is None and not fresh:
                self._cancelled_by, self._read_at = self.record.cancelled_by(self.owner), now
            return self._cancelled_by
