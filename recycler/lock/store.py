"""The lock table: one DynamoDB item per service, and every write to it conditional.

See recycler.lock.record for what the item holds and why the writes are shaped as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from recycler.aws.gateway import aws_errors, error_code
from recycler.lock.record import LOCK_TABLE_ENV, LockRecord, Phase
from recycler.model.errors import AwsCallFailed, LockHeld, LockHolderFacts, LockLost
from recycler.model.runtime import iso_seconds

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serialize = TypeSerializer().serialize
# The attributes every write sets; the others it sets, or removes when the record no longer has them.
_ALWAYS_SET = ("owner", "version", "expires_at", "phase", "started_at", "progress", "updated_at")
_deserialize = TypeDeserializer().deserialize


def holder_facts(record: LockRecord | None) -> LockHolderFacts | None:
    """Who holds a lock, as a refused run reports it; the snapshot's desired count is what it counts from."""
    if record is None:
        return None
    return {
        "owner": record.owner,
        "phase": record.phase,
        "expires_at": iso_seconds(record.expires_at),
        "snapshot_desired_count": record.snapshot.desired_count if record.snapshot else None,
        "run_key": record.run_key,
        "recycled": record.progress.recycled,
        "total": record.progress.total,
    }


def lock_key(cluster_arn: str, service_name: str) -> str:
    """One item per service: the cluster ARN carries the partition, region and account."""
    return f"{cluster_arn}/{service_name}"


class DynamoLockStore:
    """The lock table. Every method is one conditional call.

    A failed condition returns the item that failed it (``ReturnValuesOnConditionCheckFailure``,
    as Powertools' idempotency store asks), so telling who holds the lock needs no second
    read; the read stays only for a response without the item (a call against no item at all).
    """

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name

    def read(self, key: str) -> LockRecord | None:
        with self._table_call("GetItem"):
            response = self.dynamodb.get_item(TableName=self.table_name, Key={"pk": {"S": key}}, ConsistentRead=True)
        item = response.get("Item")
        if not item:
            return None
        return LockRecord.from_item(key, {k: _deserialize(v) for k, v in item.items()})

    def acquire(self, record: LockRecord, seen: LockRecord | None) -> LockRecord:
        """Create the run's lock: only over no item, or over the idle item read before the snapshot.

        ``record.version`` must be the seen version + 1. Repeating a call whose
        response was lost finds our own item and returns it.
        """
        names = {"#pk": "pk", "#v": "version", "#o": "owner"}
        values: dict[str, Any] = {":me": {"S": record.owner}, ":next": {"N": str(record.version)}}
        condition = "attribute_not_exists(#pk) OR (#o = :me AND #v = :next)"
        if seen is not None:
            # Only over the idle item the pre-flight read: never over one a run has taken since.
            condition += " OR (#v = :seen AND #p = :released)"
            names["#p"] = "phase"
            values[":seen"] = {"N": str(seen.version)}
            values[":released"] = {"S": Phase.RELEASED}
        try:
            self._put(record, condition, names, values)
        except _ConditionFailed as failed:
            holder = self._holder(record.key, failed)
            if holder is not None and holder.owner == record.owner and holder.version == record.version:
                return holder
            raise LockHeld(
                f"another run ({holder.owner if holder else 'unknown'}) took the lock on "
                f"{record.key.rsplit('/', 1)[-1]} first",
                holder_facts(holder),
            ) from None
        return record

    def take_over(self, stale: LockRecord, owner: str, expires_at: int, now: float) -> LockRecord:
        """Take a stale lock over (compare-and-swap on its version) to repair what its run left."""
        record = replace(
            stale,
            owner=owner,
            version=stale.version + 1,
            expires_at=expires_at,
            taken_over_from=stale.owner,
            updated_at=int(now),
        )
        names = {"#v": "version", "#e": "expires_at", "#p": "phase"}
        values = {
            ":seen": {"N": str(stale.version)},
            ":now": {"N": str(int(now))},
            ":released": {"S": Phase.RELEASED},
        }
        condition = "#v = :seen AND #e <= :now AND #p <> :released"
        try:
            self._update(record, condition, names, values)
        except _ConditionFailed as failed:
            holder = self._holder(stale.key, failed)
            if holder is not None and holder.owner == owner and holder.version == record.version:
                return holder
            raise LockHeld(
                f"another run ({holder.owner if holder else 'unknown'}) took over the expired lock on "
                f"{stale.key.rsplit('/', 1)[-1]} first",
                holder_facts(holder),
            ) from None
        return record

    def write(self, current: LockRecord, **changes: Any) -> LockRecord:
        """Change our own lock: conditional on owner and version, which it bumps (the fencing token)."""
        record = replace(current, version=current.version + 1, **changes)
        names = {"#o": "owner", "#v": "version"}
        values = {":me": {"S": current.owner}, ":v": {"N": str(current.version)}}
        try:
            self._update(record, "#o = :me AND #v = :v", names, values)
        except _ConditionFailed as failed:
            holder = self._holder(current.key, failed)
            if holder is not None and _same_write(holder, record):
                # Our own write landed and only its response was lost.
                return holder
            raise LockLost(
                f"this run's lock on {current.key.rsplit('/', 1)[-1]} is gone (now "
                f"{'held by ' + holder.owner if holder and holder.phase != Phase.RELEASED else 'released'}); "
                "another run has taken over the service, so this one stops without touching it again"
            ) from None
        return record

    def _holder(self, key: str, failed: _ConditionFailed) -> LockRecord | None:
        """The item that failed the condition, as the error returned it; read only when it did not."""
        if failed.item is None:
            return self.read(key)
        return LockRecord.from_item(key, {k: _deserialize(v) for k, v in failed.item.items()})

    @contextmanager
    def _table_call(self, operation: str) -> Iterator[None]:
        """aws_errors, naming the table, its region and the setting when the table does not exist."""
        try:
            with aws_errors(operation):
                yield
        except AwsCallFailed as e:
            if error_code(e) != "ResourceNotFoundException":
                raise
            region = getattr(getattr(self.dynamodb, "meta", None), "region_name", None) or "(unknown)"
            raise AwsCallFailed(
                f"{operation} failed: lock table '{self.table_name}' not found in region {region}: create it (the "
                f"template does) or set {LOCK_TABLE_ENV} (recycle.lock_table_name in input.json) to the stack's "
                "LockTableName output"
            ) from e.__cause__

    @contextmanager
    def _conditional(self, operation: str) -> Iterator[None]:
        """_table_call, except that a failed condition is told apart from every other error."""
        try:
            with self._table_call(operation):
                yield
        except AwsCallFailed as e:
            if error_code(e) == "ConditionalCheckFailedException":
                cause = e.__cause__
                item = cause.response.get("Item") if isinstance(cause, ClientError) else None
                raise _ConditionFailed(operation, item if isinstance(item, dict) else None) from cause
            raise

    def _put(self, record: LockRecord, condition: str, names: dict[str, str], values: dict[str, Any]) -> None:
        item = {k: _serialize(v) for k, v in record.to_item().items() if v is not None}
        with self._conditional("PutItem"):
            self.dynamodb.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )

    def _update(self, record: LockRecord, condition: str, names: dict[str, str], values: dict[str, Any]) -> None:
        """Write every attribute of the record (SET) and drop those it no longer has (REMOVE)."""
        item = record.to_item()
        sets, removes = [], []
        for index, name in enumerate(_ALWAYS_SET):
            names[f"#a{index}"] = name
            values[f":a{index}"] = _serialize(item[name])
            sets.append(f"#a{index} = :a{index}")
        for index, name in enumerate(("snapshot", "restore", "taken_over_from")):
            names[f"#b{index}"] = name
            if item.get(name) is None:
                removes.append(f"#b{index}")
            else:
                values[f":b{index}"] = _serialize(item[name])
                sets.append(f"#b{index} = :b{index}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        with self._conditional("UpdateItem"):
            self.dynamodb.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": record.key}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )


def _same_write(holder: LockRecord, intended: LockRecord) -> bool:
    """The item is this very write, landed (the expiry and the time it was written may differ: they were
    computed at the first attempt)."""
    return replace(holder, expires_at=intended.expires_at, updated_at=intended.updated_at) == intended


class _ConditionFailed(Exception):
    """The write's condition did not hold: someone else's item is there (``item``, when DynamoDB sent it)."""

    def __init__(self, operation: str, item: dict[str, Any] | None) -> None:
        super().__init__(operation)
        self.item = item or None
