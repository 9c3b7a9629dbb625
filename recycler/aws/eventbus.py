"""PutEvents on the account's default event bus: what a run says for EventBridge rules to route.

Best effort by design: an event that does not land is a missed notification, never a reason to stop or
fail a run that is changing a service. So `put` answers why it failed instead of raising.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from botocore.exceptions import BotoCoreError, ClientError

# The account's default bus: the template allows events:PutEvents on it only.
DEFAULT_BUS = "default"


class EventEntry(TypedDict):
    """One PutEvents entry as the API takes it."""

    Source: str
    DetailType: str
    Detail: str
    EventBusName: str
    Resources: NotRequired[list[str]]


@dataclass(frozen=True)
class BusEvent:
    """One PutEvents entry: its detail already JSON."""

    source: str
    detail_type: str
    detail: str
    resources: tuple[str, ...] = ()

    def entry(self) -> EventEntry:
        entry: EventEntry = {
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": self.detail,
            "EventBusName": DEFAULT_BUS,
        }
        if self.resources:
            entry["Resources"] = list(self.resources)
        return entry


class EventBus:
    """The default bus of the account its client reaches (the function's own, as the lock table's)."""

    def __init__(self, client: Any) -> None:
        # Any: boto3-stubs for EventBridge are not among the project's type stubs.
        self.events = client

    def put(self, events: Sequence[BusEvent]) -> str | None:
        """None when EventBridge accepted every event; else why not. Never raises."""
        try:
            answer = self.events.put_events(Entries=[event.entry() for event in events])
        except ClientError as e:
            error = e.response.get("Error", {})
            return f"PutEvents failed: {error.get('Code', 'Unknown')}: {error.get('Message', '')}"
        except BotoCoreError as e:
            return f"PutEvents failed: {e}"
        failed = int(answer.get("FailedEntryCount") or 0)
        if failed:
            codes = sorted({str(e.get("ErrorCode")) for e in answer.get("Entries", []) if e.get("ErrorCode")})
            return f"PutEvents refused {failed} of {len(events)} events ({', '.join(codes) or 'no error code'})"
        return None
