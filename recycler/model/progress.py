"""What a run says about its progress as it goes, for a person watching it (the CLI's bar, ``--follow``).

The run reports partial updates (only what it just learned); a display folds them into the latest
``LiveProgress``. Nothing here decides anything: a run behaves the same with no one watching.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveProgress:
    """The latest known state of a run, as a person following it sees it. None: not known yet."""

    recycled: int | None = None
    total: int | None = None
    batch: int | None = None
    batches: int | None = None
    # The service's running and desired counts at the last poll.
    serving: int | None = None
    desired: int | None = None
    # Seconds until the run should end, from the plan's estimate and the replacements seen so far.
    eta_seconds: float | None = None
    # The last thing worth a person's attention: a task skipped, an alarm, a placement failure.
    event: str | None = None
    # The outcome, once there is one (succeeded, failed, cancelled, ...).
    status: str | None = None

    @property
    def percent_complete(self) -> int | None:
        if self.recycled is None or not self.total:
            return None
        return min(100, int(100 * self.recycled / self.total))

    def updated(self, update: LiveProgress) -> LiveProgress:
        """This progress with every field the update knows replaced."""
        known = {f.name: getattr(update, f.name) for f in dataclasses.fields(update)}
        return dataclasses.replace(self, **{name: value for name, value in known.items() if value is not None})


# Where a run sends its updates; a host without a display gives none.
ProgressSink = Callable[[LiveProgress], None]
