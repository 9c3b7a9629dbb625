"""A second start of a run that is already going answers with that run, and is not refused by its lock.

Two kinds: a retried plain invocation whose durable execution already holds the lock (still a hand-off),
and a second start under the run_key of the run that holds it (already_running, with its progress).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from recycler.model.errors import LockHeld
from recycler.model.report import RecycleReport
from recycler.model.request import RecycleRequest
from recycler.model.states import Status
from recycler.run.ports import HandOffPort


class SecondStart:
    """Whether a run refused by the lock is a second start of the run holding it; if so, the report says so."""

    def __init__(
        self,
        request: RecycleRequest,
        hand_off: HandOffPort | None,
        report: RecycleReport,
        log: Callable[..., None],
    ) -> None:
        self.request = request
        self.hand_off = hand_off
        self.report = report
        self.log = log

    def already_handed_off(self) -> bool:
        """A retry of an invocation whose durable execution has started, and holds the lock: still a hand-off."""
        report, hand_off = self.report, self.hand_off
        holder = report.lock_holder
        if hand_off is None or self.request.dry_run or not hand_off.owns(holder["owner"] if holder else None):
            return False
        report.handed_off = hand_off.following(already_started=True).to_dict()
        report.status, report.lock_holder = Status.HANDED_OFF, None
        self.log(logging.INFO, f"Already handed off: the durable execution {report.handed_off['execution_name']} runs")
        return True

    def already_running(self, held: LockHeld) -> bool:
        """A second start of the run that holds the lock (the same run_key): not a refusal, that run's status."""
        holder, run_key, report = held.holder, self.request.run_key, self.report
        if run_key is None or holder is None or holder.get("run_key") != run_key:
            return False
        report.status, report.error, report.error_type = Status.ALREADY_RUNNING, None, None
        report.lock_holder = {
            "owner": holder["owner"],
            "phase": holder["phase"],
            "expires_at": holder["expires_at"],
            "run_key": run_key,
            "recycled": holder.get("recycled", 0),
            "total": holder.get("total", 0),
        }
        self.log(logging.INFO, f"Already running: run {run_key} holds the service ({holder['owner']})")
        return True
