"""Which tasks a run recycles, and in which batches: oldest first, balanced across availability zones.

- Originals that started at or after ``started_before`` are left alone, each with a
  note; that is what makes an incomplete run resumable (the event that carries on
  sets it to the run's start, so no task the run started is taken again).
- So are originals younger than ``min_task_age_seconds``, when the user asks for it.
- ``max_tasks`` takes the oldest of the rest; the others are left for a later run.
- A batch of more than one takes its tasks round-robin over the zones, those
  holding the most remaining originals first, oldest first within each zone, so
  that no zone loses more than its share at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from recycler.model.request import utc_text


@dataclass(frozen=True)
class TaskInfo:
    """One running original: its ARN, when it started (epoch seconds) and its availability zone."""

    arn: str
    started_at: float | None
    zone: str | None


@dataclass(frozen=True)
class Selection:
    batches: tuple[tuple[str, ...], ...]
    # (task ARN, why it is left alone): started at or after started_before, or younger than min_task_age_seconds
    left_alone: tuple[tuple[str, str], ...]
    # Eligible, but beyond max_tasks: left for a later run.
    beyond_max: tuple[str, ...]
    # How many of left_alone started at or after started_before (the others are too young).
    after_started_before: int = 0

    @property
    def chosen(self) -> tuple[str, ...]:
        return tuple(arn for batch in self.batches for arn in batch)


def oldest_first(tasks: Sequence[TaskInfo]) -> list[TaskInfo]:
    # A task whose start time is unknown sorts first: its age cannot prove it young.
    return sorted(tasks, key=lambda t: (t.started_at if t.started_at is not None else float("-inf"), t.arn))


def select(
    tasks: Sequence[TaskInfo],
    now: float,
    batch_size: int,
    min_task_age_seconds: int,
    max_tasks: int | None,
    *,
    started_before: float | None = None,
) -> Selection:
    alone: list[tuple[str, str]] = []
    late = 0
    eligible: list[TaskInfo] = []
    for task in oldest_first(tasks):
        age = now - task.started_at if task.started_at is not None else None
        if task.started_at is not None and started_before is not None and task.started_at >= started_before:
            late += 1
            note = f"started {utc_text(task.started_at)}, at or after started_before ({utc_text(started_before)})"
            alone.append((task.arn, note))
        elif age is not None and age < min_task_age_seconds:
            alone.append(
                (task.arn, f"started {age:.0f}s ago, younger than min_task_age_seconds ({min_task_age_seconds}s)")
            )
        else:
            eligible.append(task)
    chosen = eligible if max_tasks is None else eligible[:max_tasks]
    beyond = () if max_tasks is None else tuple(t.arn for t in eligible[max_tasks:])
    return Selection(tuple(batches_of(chosen, batch_size)), tuple(alone), beyond, late)


def batches_of(tasks: Sequence[TaskInfo], batch_size: int) -> list[tuple[str, ...]]:
    """Tasks (oldest first) cut into batches; beyond one task a batch goes round the zones, fullest first."""
    if batch_size == 1:
        return [(task.arn,) for task in tasks]
    queues: dict[str | None, deque[TaskInfo]] = {}
    for task in tasks:
        queues.setdefault(task.zone, deque()).append(task)
    order = {task.arn: index for index, task in enumerate(tasks)}
    batches: list[tuple[str, ...]] = []
    while any(queues.values()):
        # Zones with the most originals left first; on a tie, the one whose oldest is oldest.
        zones = sorted((z for z, q in queues.items() if q), key=lambda z: (-len(queues[z]), order[queues[z][0].arn]))
        batch: list[str] = []
        while len(batch) < batch_size and any(queues[z] for z in zones):
            for zone in zones:
                if queues[zone] and len(batch) < batch_size:
                    batch.append(queues[zone].popleft().arn)
        batches.append(tuple(batch))
    return batches


def checkpoint_batches(selection: Selection, percentages: Sequence[int]) -> dict[int, int]:
    """The batch after which each checkpoint is reached: its number, and the highest percentage reached there
    (two checkpoints one batch passes are one hold). A percentage counts the run's chosen tasks, as instance
    refresh counts the instances it replaces; a task passed over (protected) counts as passed."""
    total, done, pending = len(selection.chosen), 0, list(percentages)
    reached: dict[int, int] = {}
    for number, batch in enumerate(selection.batches, start=1):
        done += len(batch)
        while pending and done * 100 >= pending[0] * total:
            reached[number] = pending.pop(0)
    return reached
