"""Follow a run from a terminal, as ``kubectl rollout status`` follows a rollout: ``--invoke F --follow``.

The run's own function answers ``action: status`` every few seconds; each answer moves the bar (or is
printed as one JSON line), until the run is over. Then the exit status says how it ended.

A run started here may not hold its lock yet at the first answer (Lambda queues an asynchronous
start), so the follower waits for a run that started at or after it asked, for up to
``APPEAR_SECONDS``. Following with nothing started (``--follow`` alone) reports the run that is going,
or, when none is, how the last one ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recycler.model.progress import LiveProgress, ProgressSink
from recycler.model.runtime import Clock, iso_seconds
from recycler.model.states import Status

logger = logging.getLogger(__name__)

# How the CLI exits for each outcome: a script gates on it. 130 is the shell's own code for Ctrl-C.
EXIT_CODES: Mapping[str, int] = {
    Status.SUCCEEDED: 0,
    Status.DRY_RUN: 0,
    Status.HANDED_OFF: 0,
    # A second start of a run that is going: that run is followed, or asked about, as the one asked for.
    Status.ALREADY_RUNNING: 0,
    Status.FAILED: 1,
    Status.REFUSED: 2,
    Status.INCOMPLETE: 3,
    Status.CANCELLED: 130,
}
# A status answer this old or older is from a run before the one started here.
APPEAR_SECONDS = 180
POLL_SECONDS = 5
# The operator's clock and Lambda's may differ by this much: a run started this long before the invoke is ours.
CLOCK_SKEW_SECONDS = 30
# The function's answer to status, read back: a run holds the lock, none does, or one died holding it.
RUNNING, IDLE, STALE = "running", "idle", "stale"


def exit_code(status: str | None) -> int:
    """The CLI's exit status for an outcome; anything unknown is a failure."""
    return EXIT_CODES.get(str(status), 1)


def iso_epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def progress_of(answer: Mapping[str, Any], now: float) -> LiveProgress:
    """What a status answer says of the run's progress (its lock's fields are at the top of the answer)."""
    counts = answer.get("progress") or {}
    eta = iso_epoch(answer.get("eta"))
    return LiveProgress(
        recycled=counts.get("recycled"),
        total=counts.get("total") or None,
        batch=counts.get("batch"),
        eta_seconds=None if eta is None else max(0.0, eta - now),
        event=answer.get("cancel_requested") and f"cancel requested: {answer['cancel_requested']}",
    )


@dataclass(frozen=True)
class Followed:
    """How a followed run ended: its outcome (None: it could not be told), and what to say about it."""

    status: str | None
    message: str
    last_answer: Mapping[str, Any]


class StatusPoller:
    """Asks for status until what it follows is over: what each answer moves (a bar), or prints."""

    def __init__(
        self,
        ask_status: Callable[[], Mapping[str, Any]],
        clock: Clock,
        show: ProgressSink,
        print_line: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.ask_status = ask_status
        self.clock = clock
        self.show = show
        # Without a bar, each answer as a JSON line.
        self.print_line = print_line


class Follower(StatusPoller):
    """Polls status until the run it follows is over."""

    def follow(self, since: float | None, run_key: str | None = None) -> Followed:
        """Follow the run started at or after ``since`` (None: the one going now, or the last one), or the one
        already running under the same ``run_key`` (a second start of it answers already_running)."""
        seen_running = False
        asked_at = self.clock.now()
        while True:
            answer = self.ask_status()
            if self.print_line is not None:
                self.print_line(answer)
            state = answer.get("state")
            started = iso_epoch(answer.get("started_at"))
            ours = since is None or (started is not None and started >= since - CLOCK_SKEW_SECONDS)
            if run_key is not None and answer.get("run_key") == run_key:
                ours, since = True, min(since or started or asked_at, started or asked_at)
            if state == RUNNING and ours:
                seen_running = True
                self.show(progress_of(answer, self.clock.now()))
            elif state == STALE and (seen_running or since is None):
                return Followed(Status.FAILED, "the run died holding the lock; the next run repairs it", answer)
            elif state == IDLE:
                ended = self._ended(answer, since, seen_running)
                if ended is not None:
                    return ended
            if since is not None and not seen_running and self.clock.now() - asked_at > APPEAR_SECONDS:
                message = (
                    f"no run started since {iso_seconds(since)} appeared within {APPEAR_SECONDS}s: "
                    "read the function's log (aws logs tail) for why"
                )
                return Followed(None, message, answer)
            self.clock.sleep(POLL_SECONDS)

    def _ended(self, answer: Mapping[str, Any], since: float | None, seen_running: bool) -> Followed | None:
        """The run is over when the last run recorded is the one followed; None while it has not shown up yet."""
        last = answer.get("last_run") or {}
        started = iso_epoch(last.get("started_at"))
        if since is not None and (started is None or started < since - CLOCK_SKEW_SECONDS):
            return None
        if since is None and not seen_running and not last:
            return Followed(Status.SUCCEEDED, "no recycle is running, and none is on record", answer)
        status = last.get("status")
        self.show(LiveProgress(recycled=last.get("recycled"), total=last.get("total"), status=status))
        said = f"recycle {status}: {last.get('recycled')}/{last.get('total')} tasks recycled"
        return Followed(status, said + (f"; {last['error']}" if last.get("error") else ""), answer)
