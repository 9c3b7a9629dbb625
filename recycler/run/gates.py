"""What can stop a run gracefully: the service's CloudWatch alarms, and an operator's cancel.

Neither aborts a replacement in flight: the run stops no further task, lets the
replacements already started finish (so capacity is back to N), restores, and
ends as ``failed`` (an alarm, named with its StateReason) or ``cancelled``.

- **Alarms**: the event's ``alarm_names``, plus the service's own deployment
  alarms (``deploymentConfiguration.alarms`` when enabled) unless
  ``use_service_alarms`` is false. One that is in ALARM, or does not exist,
  refuses the run before anything changes: a typo must never silently disable
  the gate. During the run they are read on every poll and before every batch,
  up to 100 names in one DescribeAlarms call; one deleted by then stops the run
  as one in ALARM does, for the same reason.
- **Interrupt**: the host's own (the CLI's Ctrl-C or SIGTERM, recycler.run.liveness) is a cancel too.
- **Cancel**: the service tag ``ecs-task-recycle:cancel``, ``by=<who> run=<owner>
  at=<when>``, read with the service on the polls the run makes anyway. A tag that
  names another run, or was already on the service when the run began and is
  older than it, is stale: it is removed and reported, and does not cancel the
  run. Any other tag that appears during the run cancels it, whatever its value
  (an operator may write one by hand): the value only says who asked and when.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from recycler.aws.gateway import ServiceGateway
from recycler.model.errors import AlarmTriggered, PreflightError, RecycleCancelled, clip
from recycler.model.runtime import NoResult, iso_seconds
from recycler.run.context import RunContext

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import ServiceTypeDef

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
    # The tag's value as read, when it is not in the by=… at=… shape: then it is all there is to show.
    unparsed: str | None = None

    def to_tag_value(self) -> str:
        run = f" run={_tag_safe(self.run, _RUN_MAX).replace(' ', '-')}" if self.run else ""
        return f"by={_tag_safe(self.by, _WHO_MAX)}{run} at={iso_seconds(self.at)}"

    @classmethod
    def from_tag_value(cls, value: str) -> CancelRequest:
        # The requester may hold spaces ("cli user@host"): everything between by= and the last " at=".
        match = _TAG_VALUE.fullmatch(value.strip())
        if match is None:
            return cls("unknown", 0.0, None, value)
        try:
            at = datetime.fromisoformat(match.group("at")).timestamp()
        except ValueError:
            at = 0.0
        return cls(match.group("by").strip() or "unknown", at, match.group("run") or None)

    def applies_to(self, run_started: float, owner: str) -> bool:
        """A cancel names the run it is for; one that names none (written by hand) is for this run when
        asked for at or after its start. Any other is stale."""
        if self.run is not None:
            return self.run == _tag_safe(owner, _RUN_MAX).replace(" ", "-")
        return self.at >= run_started

    def describe(self) -> str:
        if self.unparsed is not None:
            return f"requested with the hand-written value {clip(self.unparsed)!r}"
        when = iso_seconds(self.at) if self.at else "an unknown time"
        return f"requested by {self.by} at {when}"


def _cancel_value(service: ServiceTypeDef) -> str | None:
    value = next((t.get("value") for t in service.get("tags", []) if t.get("key") == CANCEL_TAG_KEY), None)
    return str(value) if value is not None else None


def cancel_tag(service: ServiceTypeDef) -> CancelRequest | None:
    value = _cancel_value(service)
    return CancelRequest.from_tag_value(value) if value is not None else None


@dataclass(frozen=True)
class StopReason:
    """Why a run stops gracefully (an operator's cancel, or an alarm), as a step or a wait's state carries it."""

    kind: Literal["cancel", "alarm"]
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> StopReason:
        kind = data["kind"]
        return cls("cancel" if kind == "cancel" else "alarm", data["detail"])


class Gates:
    """The checks a run makes before each batch and on each poll. Each returns the reason to stop, or None."""

    def __init__(
        self,
        context: RunContext,
        alarm_names: tuple[str, ...],
        tag_at_start: str | None = None,
        interrupted: Callable[[], str | None] | None = None,
    ) -> None:
        self.gateway = context.gateway
        self.alarm_names = alarm_names
        self.run_started = context.started
        self.owner = context.owner_id
        # The cancel tag's value when the run read the service before taking its lock (None: no tag).
        self.tag_at_start = tag_at_start
        # The host's interrupt (the CLI's Ctrl-C or SIGTERM): a cancel, asked for in the run's own process.
        self.interrupted = interrupted

    def interrupt(self) -> StopReason | None:
        """The host's interrupt, as the cancel it is."""
        reason = self.interrupted() if self.interrupted is not None else None
        return StopReason("cancel", f"interrupted by {reason}") if reason else None

    def refuse_unless_alarms_are_quiet(self) -> None:
        """Before anything changes: every alarm must exist, and none be in ALARM."""
        problems = alarm_problems(self.gateway, self.alarm_names)
        if problems:
            raise PreflightError(problems[0])

    def stop_reason(self, service: ServiceTypeDef) -> StopReason | None:
        """An interrupt or a cancel on the service (read with its tags), else an alarm in ALARM, else None."""
        interrupt = self.interrupt()
        if interrupt is not None:
            return interrupt
        cancel = cancel_tag(service)
        if cancel is not None and self._cancels_this_run(cancel, _cancel_value(service)):
            return StopReason("cancel", cancel.describe())
        if self.alarm_names:
            states = self.gateway.alarm_states(self.alarm_names)
            firing = self._firing(states)
            if firing is not None:
                return StopReason("alarm", f"alarm {firing['alarm']!r} went into ALARM: {firing['reason']}")
            # Deleted since the pre-flight: a gate that can no longer fire must stop the run, not switch off.
            gone = next((name for name in self.alarm_names if name not in states), None)
            if gone is not None:
                return StopReason("alarm", f"alarm {gone!r} no longer exists")
        return None

    def _cancels_this_run(self, cancel: CancelRequest, value: str | None) -> bool:
        """A tag naming a run is for that run alone. Any other that was not there at the start is new, so it
        is for this run whatever it says: an operator's hand-written value must not be ignored."""
        if cancel.run is None and value != self.tag_at_start:
            return True
        return cancel.applies_to(self.run_started, self.owner)

    @staticmethod
    def _firing(states: dict[str, dict[str, str]]) -> dict[str, str] | None:
        for name, state in states.items():
            if state["state"] == "ALARM":
                return {"alarm": name, "reason": state["reason"]}
        return None


def alarm_problems(gateway: ServiceGateway, names: tuple[str, ...]) -> list[str]:
    """Why these alarms would refuse a run, the missing ones first; empty when all exist and none is in ALARM.

    The run refuses on the first; a dry run lists them all.
    """
    if not names:
        return []
    states = gateway.alarm_states(names)
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


def stop_error(reason: StopReason) -> Exception:
    """The exception that ends a run for this reason, after the restore."""
    if reason.kind == "cancel":
        return RecycleCancelled(f"cancelled ({reason.detail}); no further task was stopped")
    return AlarmTriggered(f"{reason.detail}; no further task was stopped")


def remove_cancel_tag(gateway: ServiceGateway, service_arn: str) -> NoResult:
    """The cancel has been honoured (or was stale): the tag goes."""
    gateway.untag_service(service_arn, CANCEL_TAG_KEY)
    return {}
