"""The run history: one item per run in the lock table, beside (never in) the service's lock item.

The lock item is overwritten by every run, so it cannot say how the last ones went. Each run that wrote the
lock (took it, or took a stale one over to repair it) writes one history item when it ends, after its
restore: key ``<lock key>#run#<owner>`` (a retried write lands on the same item), ``history_of`` the lock
key and ``ended_at`` epoch seconds, the keys of the table's sparse ``history`` index (only history items
carry ``history_of``, so the lock items are not in it), and ``expires_at`` 90 days on, the table's TTL
attribute, so the history tidies itself away. A run that never wrote the lock (refused, a dry run, one
with nothing to recycle, a hand-off) writes nothing at all, as before.

The index is read newest first. Index reads are eventually consistent: a run that ended a second ago may
not be listed yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from recycler.aws.gateway import aws_errors
from recycler.model.errors import clip
from recycler.model.report import RecycleReport
from recycler.model.runtime import TOOL_NAME, iso_seconds
from recycler.observability import logs

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import QueryInputTypeDef

HISTORY_INDEX = "history"
HISTORY_RETENTION_SECONDS = 90 * 86_400
# The runs `action: history` returns, as DescribeInstanceRefreshes pages them.
HISTORY_LIMIT = 20
# An error as long as a page of text is kept to its start: the logs have the rest.
MAX_ERROR_CHARACTERS = 1_000

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


class RunEntryJson(TypedDict):
    """A run as status's last_run and history show it."""

    owner: str
    requested_by: str
    started_at: str
    ended_at: str
    status: str
    recycled: int
    total: int | None
    error: str | None
    error_type: str | None


@dataclass(frozen=True)
class RunEntry:
    """One run as the history keeps it: who ran it, when, how it ended, how far it got, and why it stopped."""

    owner: str
    requested_by: str
    started_at: int
    ended_at: int
    status: str
    recycled: int
    total: int | None = None
    error: str | None = None
    error_type: str | None = None

    @classmethod
    def of(cls, report: RecycleReport, owner: str, requested_by: str | None, started: float, ended: float) -> RunEntry:
        """The entry of a run from its report; the error masked (it may quote a credential) and clipped."""
        error = logs.mask(clip(report.error, MAX_ERROR_CHARACTERS)) if report.error else None
        return cls(
            owner=owner,
            requested_by=requested_by or owner,
            started_at=int(started),
            ended_at=int(ended),
            status=str(report.status),
            recycled=len(report.tasks_recycled),
            total=report.task_total,
            error=error,
            error_type=report.error_type,
        )

    def to_dict(self) -> RunEntryJson:
        """As status and history show it: the times in ISO 8601 UTC."""
        return {
            **asdict(self),  # type: ignore[typeddict-item]
            "started_at": iso_seconds(self.started_at),
            "ended_at": iso_seconds(self.ended_at),
        }

    def to_item(self, key: str) -> dict[str, Any]:
        return {
            "pk": f"{key}#run#{self.owner}",
            "history_of": key,
            "tool": TOOL_NAME,
            "expires_at": self.ended_at + HISTORY_RETENTION_SECONDS,
            **{name: value for name, value in asdict(self).items() if value is not None},
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> RunEntry | None:
        """The entry an item holds; None for one this tool did not write as history (it is left out)."""
        text = {name: item.get(name) for name in ("owner", "requested_by", "status")}
        numbers = {name: _whole(item.get(name)) for name in ("started_at", "ended_at", "recycled")}
        if not all(isinstance(value, str) for value in text.values()) or None in numbers.values():
            return None
        optional = {name: item.get(name) for name in ("error", "error_type") if isinstance(item.get(name), str)}
        return cls(**text, **numbers, total=_whole(item.get("total")), **optional)  # type: ignore[arg-type]


class RunHistory:
    """The history items of the lock table: one PutItem per run, and a Query of the index newest first."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name

    def record(self, key: str, entry: RunEntry) -> None:
        """Write the run's item (unconditionally: the key is the run's own, and a retry writes the same)."""
        item = {name: _serialize(value) for name, value in entry.to_item(key).items()}
        with aws_errors("PutItem"):
            self.dynamodb.put_item(TableName=self.table_name, Item=item)

    def latest(self, key: str, limit: int = HISTORY_LIMIT) -> list[RunEntry]:
        """The service's last ``limit`` runs, newest first.

        A Query's Limit caps the items read per page, not the runs found: pages are followed through
        LastEvaluatedKey until ``limit`` runs are found or the index has no more.
        """
        runs: list[RunEntry] = []
        query: QueryInputTypeDef = {
            "TableName": self.table_name,
            "IndexName": HISTORY_INDEX,
            "KeyConditionExpression": "#h = :key",
            "ExpressionAttributeNames": {"#h": "history_of"},
            "ExpressionAttributeValues": {":key": {"S": key}},
            "ScanIndexForward": False,
        }
        while len(runs) < limit:
            query["Limit"] = limit - len(runs)
            with aws_errors("Query"):
                page = self.dynamodb.query(**query)
            for raw in page.get("Items", []):
                entry = RunEntry.from_item({name: _deserialize(value) for name, value in raw.items()})
                if entry is not None:
                    runs.append(entry)
            last = page.get("LastEvaluatedKey")
            if not last:
                break
            query["ExclusiveStartKey"] = last
        return runs[:limit]


def _whole(value: Any) -> int | None:
    """A whole number as DynamoDB returns it (a Decimal), else None."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None
