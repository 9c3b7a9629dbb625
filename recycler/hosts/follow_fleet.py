"""Follow a fleet run from a terminal: ``--services … --follow`` (or ``--service-tags``), with or without
``--invoke``.

The fleet's status answers each service's state and the latest fleet run of the selection (``fleet_run``,
from the fleet's own item in the lock table). The bar counts the services: those finished since the fleet
started, of all; its event names the services running. The fleet is over when its run has ``ended_at``,
and the exit status is that run's status, as for one service.

A fleet run whose process died never marks its record ended; its services' locks go stale and the next
run repairs them. So when no selected service has been running for ``DEAD_AFTER_SECONDS`` (longer than a
plain invocation lasts) and the run has not ended, the follow gives up and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recycler.hosts.follow import (
    APPEAR_SECONDS,
    CLOCK_SKEW_SECONDS,
    POLL_SECONDS,
    RUNNING,
    Followed,
    StatusPoller,
    iso_epoch,
)
from recycler.model.progress import LiveProgress
from recycler.model.runtime import iso_seconds
from recycler.model.states import Status

# A plain invocation lasts at most 900 s; between two services of a live fleet no time passes.
DEAD_AFTER_SECONDS = 960


class FleetFollower(StatusPoller):
    """Polls the fleet's status until its run is over."""

    def follow(self, since: float | None) -> Followed:
        """Follow the fleet run started at or after ``since`` (None: the one going now, or the last one)."""
        asked_at = last_running = self.clock.now()
        while True:
            answer = self.ask_status()
            if self.print_line is not None:
                self.print_line(answer)
            run = answer.get("fleet_run") or {}
            started = iso_epoch(run.get("started_at"))
            ours = bool(run) and (since is None or (started is not None and started >= since - CLOCK_SKEW_SECONDS))
            services = [s for s in answer.get("services", []) if isinstance(s, Mapping)]
            running = [str(s.get("service")) for s in services if s.get("state") == RUNNING]
            if running:
                last_running = self.clock.now()
            if ours and run.get("ended_at"):
                return self._ended(run, services, answer)
            if ours:
                self.show(_progress(services, started, running))
            elif since is None and not running:
                return Followed(Status.SUCCEEDED, "no fleet run of this selection is going or on record", answer)
            now = self.clock.now()
            if not ours and since is not None and now - asked_at > APPEAR_SECONDS:
                message = (
                    f"no fleet run started since {iso_seconds(since)} appeared within {APPEAR_SECONDS}s: "
                    "read the function's log (aws logs tail) for why"
                )
                return Followed(None, message, answer)
            if ours and now - last_running > DEAD_AFTER_SECONDS:
                message = (
                    f"no service of the fleet has run for {DEAD_AFTER_SECONDS}s and its run ({run.get('owner')}) "
                    "has not ended: it died; the next run repairs each service"
                )
                return Followed(Status.FAILED, message, answer)
            self.clock.sleep(POLL_SECONDS)

    def _ended(self, run: Mapping[str, Any], services: list[Mapping[str, Any]], answer: Mapping[str, Any]) -> Followed:
        status = run.get("status")
        self.show(_progress(services, iso_epoch(run.get("started_at")), [], status))
        message = f"fleet {status}: {len(services)} services (each service's last_run has its outcome)"
        if run.get("cancel_requested_by"):
            message += f"; cancelled by {run['cancel_requested_by']}"
        return Followed(status, message, answer)


def _progress(
    services: list[Mapping[str, Any]], started: float | None, running: list[str], status: str | None = None
) -> LiveProgress:
    """The services finished since the fleet started, of all; the event names those running."""
    finished = sum(1 for s in services if _finished_since(s, started))
    event = f"running: {', '.join(running)}" if running else None
    return LiveProgress(recycled=finished, total=len(services) or None, event=event, status=status)


def _finished_since(service: Mapping[str, Any], started: float | None) -> bool:
    last = service.get("last_run") or {}
    ended = iso_epoch(last.get("ended_at"))
    return service.get("state") != RUNNING and ended is not None and started is not None and ended >= started
