"""A fleet of three services on the bed, for the plain and the durable fleet's tests."""

from __future__ import annotations

from dev.simulator import Behaviour
from support.bed import Bed

NAMES = ["svc-a", "svc-b", "svc-c"]


def add_services(bed: Bed, tasks: int = 2, failing: str | None = None) -> None:
    """The three services; the failing one's replacements then fail to start."""
    behaviours = {name: Behaviour() for name in NAMES}
    for name in NAMES:
        bed.add_service(tasks=tasks, service=name, target=(1, 6), behaviour=behaviours[name])
    if failing is not None:
        behaviours[failing].fail_next_starts = 99


def surged_counts(bed: Bed) -> list[int]:
    """How many services are surged (desired above what it was) at every moment the simulator observes."""
    counts: list[int] = []
    observe = bed.sim._observe

    def observing() -> None:
        observe()
        counts.append(sum(1 for n in NAMES if bed.desired(n) > bed.snapshots[n]["desired"]))

    bed.sim._observe = observing  # type: ignore[method-assign]
    return counts
