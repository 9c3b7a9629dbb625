"""What a run asks of the host it runs in: the host's policy and its hand-off, as a record and a protocol. The run
calls them, a host (recycler.hosts) fills them in, so the run never imports a host."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from recycler.model.report import HandOffReport
from recycler.run.budget import BatchFit, PlanFit, plain_batch_seconds
from recycler.run.liveness import Liveness
from recycler.run.preflight import Preflight
from recycler.run.selection import Selection

# Where the plain function finds the durable alias to hand a long run to (named in a dry run's refusal).
HANDOFF_ENV = "DURABLE_FUNCTION_ALIAS_ARN"


@dataclass(frozen=True)
class HandOffDecision:
    """Whether the run goes to the durable function, and why: a step's result, and the dry-run plan's hand_off."""

    would_hand_off: bool
    estimated_seconds: int
    available_seconds: int | None
    durable_alias: str
    execution_name: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HandOffDecision:
        return cls(**data)


@dataclass(frozen=True)
class HandedOff:
    """The report's handed_off: the durable execution, and how to follow it."""

    execution_name: str
    durable_alias: str
    already_started: bool
    follow: str
    # The Invoke's status code: said only when this invocation started the execution.
    status_code: int | None = None

    def to_dict(self) -> HandOffReport:
        data: HandOffReport = {
            "execution_name": self.execution_name,
            "durable_alias": self.durable_alias,
            "already_started": self.already_started,
            "follow": self.follow,
        }
        if not self.already_started:
            data["status_code"] = self.status_code
        return data


class HandOffPort(Protocol):
    """The plain function's hand-off of a plan too long for one invocation to the durable function."""

    def decide(self, fit: PlanFit) -> HandOffDecision:
        """Whether to hand off, given whether the plan fits this invocation (recycler.run.budget.plan_fits)."""
        ...

    def start(self, run_started_at: float) -> HandedOff:
        """Start the durable execution; the report's handed_off."""
        ...

    def owns(self, lock_owner: str | None) -> bool:
        """Whether a lock's owner is the durable execution this invocation starts."""
        ...

    def following(self, already_started: bool) -> HandedOff:
        """The report's handed_off for an execution already started."""
        ...


# The host's own admission rule, given the pre-flight and the run's selection before anything is changed
# (the durable run bounds its worst-case duration here). Raises PreflightError to refuse.
Admission = Callable[[Preflight, Selection], None]


@dataclass(frozen=True)
class RunPolicy:
    """What differs per host: its time rules, what the operator can do when its time runs out, its hand-off."""

    # How long the lock outlives its last renewal. None: the runtime's budget (budget.invocation_lock_ttl).
    lock_ttl_seconds: float | None = None
    # The time one more batch needs, given the replacement estimate (the durable host counts the worst case).
    batch_fit: BatchFit = plain_batch_seconds
    admission: Admission | None = None
    out_of_time_hint: str = "use the long-running (durable) function, which has no 15-minute limit"
    # Set by the plain handler when the template gave it the durable alias.
    hand_off: HandOffPort | None = None
    # Who asked for the run, as its history item says (None: its lock owner).
    requested_by: str | None = None
    # A run in one process (the plain function, the CLI): its heartbeat while it waits, and its interrupt.
    liveness: Liveness | None = None
