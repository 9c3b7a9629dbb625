"""A fleet's report: each service's own report, the totals, what was never started, and the fleet's status.

Its to_dict is the JSON the fleet's email, metrics and events read (FLEET.md): ``"fleet": true`` tells it from
a single run's report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from recycler.model.report import HandOffReport, NotificationResult, RecycleReport
from recycler.model.states import Status

# The fleet's status is its worst service's outcome, in this order; a refused service counts as failed (it
# was not recycled), and one another run of the same key is still recycling is not done yet.
_WORST_FIRST = (Status.FAILED, Status.INCOMPLETE, Status.CANCELLED)
_COUNTS_AS = {
    Status.REFUSED: Status.FAILED,
    Status.ALREADY_RUNNING: Status.INCOMPLETE,
    Status.HANDED_OFF: Status.INCOMPLETE,
}


def fleet_status(outcomes: Iterable[Status | str], stopped_by: Status | None = None) -> Status:
    """succeeded only when every service succeeded (dry_run when each was a dry run); else the worst outcome.

    ``stopped_by``: why services were left unstarted (an alarm: failed, a cancel, the time: incomplete)."""
    seen = {_COUNTS_AS.get(Status(outcome), Status(outcome)) for outcome in outcomes}
    if stopped_by is not None:
        seen.add(stopped_by)
    for worst in _WORST_FIRST:
        if worst in seen:
            return worst
    if seen == {Status.DRY_RUN}:
        return Status.DRY_RUN
    return Status.SUCCEEDED


def whole_service_estimate(estimates: Iterable[int], parallel: int) -> int:
    """The fleet's duration from its services' estimates: each service runs whole on one of ``parallel`` lanes,
    in the fleet's order, on the lane free first; the longest lane. That is the sum / parallel, rounded up to
    whole services (a service is never split across lanes)."""
    lanes = [0] * max(1, parallel)
    for seconds in estimates:
        lanes[lanes.index(min(lanes))] += seconds
    return max(lanes)


class FleetSelection(TypedDict):
    """How the event selected the fleet: by names (as given) or by tags."""

    services: NotRequired[list[str]]
    service_tags: NotRequired[dict[str, str]]


class FleetRunJson(TypedDict):
    """The latest fleet run of a selection, as a fleet's status answers it (``ended_at`` None: going)."""

    owner: str
    started_at: str
    ended_at: str | None
    status: str | None
    cancel_requested_by: str | None


class FleetAnswer(TypedDict):
    """A fleet's status, history or cancel: each service's own answer, and what a cancel of the fleet reached."""

    fleet: bool
    cluster: str
    services: list[Mapping[str, Any]]
    fleet_cancel: NotRequired[str]
    # A status's: the latest fleet run of the selection (None: none for a week).
    fleet_run: NotRequired[FleetRunJson | None]


def fleet_answer(cluster: str, answers: Iterable[Mapping[str, Any]], fleet_cancel: str | None = None) -> FleetAnswer:
    answer: FleetAnswer = {"fleet": True, "cluster": cluster, "services": list(answers)}
    if fleet_cancel is not None:
        answer["fleet_cancel"] = fleet_cancel
    return answer


class FleetPlan(TypedDict):
    """A fleet dry run's estimate, and (in the standard function) whether the recycle would be handed off."""

    estimated_seconds: int
    estimate_basis: str
    would_hand_off: NotRequired[bool]


class FleetTotals(TypedDict):
    """The services by outcome (only outcomes that occur), and the tasks recycled of the total."""

    services: dict[str, int]
    tasks_recycled: int
    task_total: int


@dataclass
class FleetReport:
    """What a fleet run returns: the fleet's status and totals, and each service's own report (as JSON)."""

    cluster: str
    selection: FleetSelection
    max_parallel_services: int
    on_service_failure: str
    started_at: str | None = None
    duration_seconds: float = 0.0
    # Each service's own report, in the fleet's order.
    services: list[RecycleReport] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    # Why services were left unstarted, as the fleet's status counts it (None: none was, or only on failure).
    stopped_by: Status | None = None
    error: str | None = None
    error_type: str | None = None
    # A dry run's: the fleet's estimate from each service's plan, and whether the recycle would be handed off.
    estimated_seconds: int | None = None
    would_hand_off: bool | None = None
    notification: NotificationResult | None = None
    # A fleet too long for the plain invocation: the durable execution it was handed to, whole.
    handed_off: HandOffReport | None = None
    status: Status = Status.SUCCEEDED

    def settle(self) -> None:
        """The status, from the services' outcomes and why any were left unstarted."""
        self.status = fleet_status((s.status for s in self.services), self.stopped_by)
        if self.handed_off is not None:
            self.status = Status.HANDED_OFF

    def explain(self) -> None:
        """The fleet's error: why it stopped, else which services did not succeed (each report has the detail)."""
        if self.status in (Status.SUCCEEDED, Status.DRY_RUN, Status.HANDED_OFF):
            return
        if self.error is None:
            failing = [s for s in self.services if s.status not in (Status.SUCCEEDED, Status.DRY_RUN)]
            self.error = "; ".join(f"{s.service} {s.status}: {s.error}" for s in failing[:5])
            self.error_type = failing[0].error_type if failing else None
        elif self.error_type is None:
            self.error_type = "FleetStopped"

    @property
    def region(self) -> str | None:
        return next((s.region for s in self.services if s.region), None)

    def totals(self) -> FleetTotals:
        outcomes = Counter(str(s.status) for s in self.services)
        return {
            "services": dict(sorted(outcomes.items())),
            "tasks_recycled": sum(len(s.tasks_recycled) for s in self.services),
            "task_total": sum(s.task_total or 0 for s in self.services),
        }

    def to_dict(self) -> dict[str, Any]:
        data = {
            "fleet": True,
            "status": str(self.status),
            "cluster": self.cluster,
            "region": self.region,
            "started_at": self.started_at,
            "duration_seconds": self.duration_seconds,
            "selection": self.selection,
            "max_parallel_services": self.max_parallel_services,
            "on_service_failure": self.on_service_failure,
            "totals": self.totals(),
            "services": [s.to_dict() for s in self.services],
            "not_started": list(self.not_started),
            "error": self.error,
            "error_type": self.error_type,
        }
        if self.estimated_seconds is not None:
            plan: FleetPlan = {
                "estimated_seconds": self.estimated_seconds,
                "estimate_basis": "each service's plan, run whole on one of max_parallel_services lanes in the "
                "fleet's order (the sum / max_parallel_services, rounded up to whole services)",
            }
            if self.would_hand_off is not None:
                plan["would_hand_off"] = self.would_hand_off
            data["plan"] = plan
        if self.handed_off is not None:
            data["handed_off"] = self.handed_off
        if self.notification is not None:
            data["notification"] = self.notification
        return data


def seconds_between(start: float, end: float) -> float:
    return round(max(0.0, end - start), 3)
