"""What can stop a run gracefully: the service's CloudWatch alarms, and an operator's cancel.

Neither aborts a replacement in flight: the run stops no further task, lets the
replacements already started finish (so capacity is back to N), restores, and
ends as ``failed`` (an alarm, named with its StateReason) or ``cancelled``.

- **Alarms**: the event's ``alarm_names``, plus the service's own deployment
  alarms (``deploymentConfiguration.alarms`` when enabled) unless
  ``use_service_alarms`` is false. One that is in ALARM, or does not exist,
  refuses the run before anything changes: a typo must never silently disable
  the gate. During the run they are read on every poll and before every batch,
  up to 100 names in one DescribeAlarms call.
- **Cancel**: the service tag ``ecs-task-recycle:cancel``, ``by=<who> at=<when>``,
  read with the service on the polls the run makes anyway. A tag older than the
  run is stale: it is removed and reported, and does not cancel the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recycler.aws import ServiceReads
from recycler.errors import AlarmTriggered, PreflightError, RecycleCancelled
from recycler.runtime import iso_seconds

CANCEL_TAG_KEY = "ecs-task-recycle:cancel"
# ECS tag values allow letters, digits, spaces and + - = . _ : / @ only.
_TAG_SAFE = frozenset("+-=._:/@ ")
_TAG_VALUE = re.compile(r"by=(?P<by>.*?)(?: run=(?P<run>\S*))? at=(?P<at>\S*)", re.ASCII | re.DOTALL)
# A tag value holds at most 256 characters: the requester and the run's id are clipped to fit.
_WHO_MAX, _RUN_MAX = 100, 100


def _tag_safe(text: str, limit: int) -> str:
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in _TAG_SAFE) else "-" for ch in text)[:limit]


@dataclass(frozen=True)
class CancelRequest:
    by: str
    # Epoch seconds; 0 when the tag's time cannot be read (then it is stale).
    at: float
    # The lock owner of the run it cancels. With it, no clock decides: a requester's clock that runs
    # behind would otherwise date the cancel before the run's start, and it would be taken for stale.
    run: str | None = None

    def to_tag_value(self) -> str:
        run = f" run={_tag_safe(self.run, _RUN_MAX).replace(' ', '-')}" if self.run else ""
        return f"by={_tag_safe(self.by, _WHO_MAX)}{run} at={iso_seconds(self.at)}"

    @classmethod
    def from_tag_value(cls, value: str) -> CancelRequest:
        # The requester may hold spaces ("cli user@host"): everything between by= and the last " at=".
        match = _TAG_VALUE.fullmatch(value.strip())
        by, run, when = (match.group("by"), match.group("run"), match.group("at")) if match else ("unknown", None, "")
        try:
            at = datetime.fromisoformat(when).timestamp()
        except ValueError:
            at = 0.0
        return cls(by.strip() or "unknown", at, run or None)

    def applies_to(self, run_started: float, owner: str) -> bool:
        """A cancel names the run it is for; one that names none (written by hand) is for this run when
        asked for at or after its start. Any other is stale."""
        if self.run is not None:
            return self.run == _tag_safe(owner, _RUN_MAX).replace(" ", "-")
        return self.at >= run_started

    def describe(self) -> str:
        when = iso_seconds(self.at) if self.at else "an unknown time"
        return f"requested by {self.by} at {when}"


def cancel_tag(service: dict[str, Any]) -> CancelRequest | None:
    value = next((t.get("value") for t in service.get("tags", []) if t.get("key") == CANCEL_TAG_KEY), None)
    return CancelRequest.from_tag_value(str(value)) if value is not None else None


class Gates:
    """The checks a run makes before each batch and on each poll. Each returns the reason to stop, or None."""

    def __init__(self, reads: ServiceReads, alarm_names: tuple[str, ...], run_started: float, owner: str) -> None:
        self.reads = reads
        self.alarm_names = alarm_names
        self.run_started = run_started
        self.owner = owner

    def refuse_unless_alarms_are_quiet(self) -> None:
        """Before anything changes: every alarm must exist, and none be in ALARM."""
        problems = alarm_problems(self.reads, self.alarm_names)
        if problems:
            raise PreflightError(problems[0])

    def stop_reason(self, service: dict[str, Any]) -> dict[str, str] | None:
        """A cancel on the service (read with its tags), else an alarm in ALARM, else None. JSON for checkpoints."""
        cancel = cancel_tag(service)
        if cancel is not None and cancel.applies_to(self.run_started, self.owner):
            return {"kind": "cancel", "detail": cancel.describe()}
        if self.alarm_names:
            firing = self._firing(self.reads.alarm_states(self.alarm_names))
            if firing is not None:
                return {"kind": "alarm", "detail": f"alarm {firing['alarm']!r} went into ALARM: {firing['reason']}"}
        return None

    @staticmethod
    def _firing(states: dict[str, dict[str, str]]) -> dict[str, str] | None:
        for name, state in states.items():
            if state["state"] == "ALARM":
                return {"alarm": name, "reason": state["reason"]}
        return None


def alarm_problems(reads: ServiceReads, names: tuple[str, ...]) -> list[str]:
    """Why these alarms would refuse a run, the missing ones first; empty when all exist and none is in ALARM.

    The run refuses on the first; a dry run lists them all.
    """
    if not names:
        return []
    states = reads.alarm_states(names)
    missing = [name for name in names if name not in states]
    problems = [
        f"alarm {name!r} does not exist (a misspelt alarm would never stop the run); "
        f"{len(missing)} of {len(names)} alarms missing"
        for name in missing
    ]
    return problems + [
        f"alarm {name!r} is already in ALARM: {state['reason']}"
        for name, state in states.items()
        if state["state"] == "ALARM"
    ]


def stop_error(reason: dict[str, str]) -> Exception:
    """The exception that ends a run for this reason, after the restore."""
    if reason["kind"] == "cancel":
        return RecycleCancelled(f"cancelled ({reason['detail']}); no further task was stopped")
    return AlarmTriggered(f"{reason['detail']}; no further task was stopped")


def service_alarm_names(service: dict[str, Any]) -> tuple[str, ...]:
    """The service's deployment alarms, when ECS applies them (enable true)."""
    alarms = (service.get("deploymentConfiguration") or {}).get("alarms") or {}
    return tuple(alarms.get("alarmNames") or ()) if alarms.get("enable") else ()


def remove_cancel_tag(reads: ServiceReads, service_arn: str) -> dict[str, Any]:
    """The cancel has been honoured (or was stale): the tag goes."""
    reads.call(reads.ecs.untag_resource, resourceArn=service_arn, tagKeys=[CANCEL_TAG_KEY])
    return {}
