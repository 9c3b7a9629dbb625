"""What a run asks of the host it runs in, as protocols: the run calls them, a host (recycler.hosts) implements
them, so the run never imports a host."""

from __future__ import annotations

from typing import Any, Protocol

from recycler.run.preflight import Preflight
from recycler.run.selection import Selection

# Where the plain function finds the durable alias to hand a long run to (named in a dry run's refusal).
HANDOFF_ENV = "DURABLE_FUNCTION_ALIAS_ARN"


class HandOffPort(Protocol):
    """The plain function's hand-off of a plan too long for one invocation to the durable function."""

    def decide(self, preflight: Preflight, selection: Selection) -> dict[str, Any]:
        """Whether the plan fits this invocation; JSON, for the dry-run plan and the step."""
        ...

    def start(self, run_started_at: float) -> dict[str, Any]:
        """Start the durable execution; the report's handed_off."""
        ...

    def owns(self, lock_owner: str | None) -> bool:
        """Whether a lock's owner is the durable execution this invocation starts."""
        ...

    def following(self, already_started: bool) -> dict[str, Any]:
        """The report's handed_off for an execution already started."""
        ...
