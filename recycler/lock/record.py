"""The run lock: one DynamoDB item per service, only ever written with a condition.

The item is the single source of truth about a run: who owns the service, until
when, what the service looked like before the run changed anything (the
snapshot), and how far the run has got in changing and restoring it (the
phase). Every write is conditional, so two runs can never both believe they
own a service:

- acquire: a PutItem that succeeds only when there is no item, or when the
  item is exactly the idle (released) one this run read before it took its
  snapshot (compare-and-swap on the version);
- every later write (phase changes, renewals, progress, release): an UpdateItem
  on ``owner = me AND version = v`` that sets ``version = v + 1``. The version
  is the fencing token: a run paused past its expiry, whose lock another run
  has taken over, fails its next write and stops (LockLost);
- a stale lock (expired, not released) is taken over the same way, on the
  exact version that was read, and its restore is resumed from the recorded
  phase.

Release keeps the item, in phase ``released``, so the version keeps counting
across runs and the next acquire can compare-and-swap on it (a deleted item
would reset the fencing token). TTL removes idle items after
RELEASED_RETENTION_SECONDS; until then they tell ``status`` how the last run went.

Nothing read from the item is trusted blindly: every field is type- and
range-checked when it is read (LockCorrupt), and the values a repair would
apply are checked against the live service before they are applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from recycler.aws.gateway import SUSPENDED_FLAGS
from recycler.model.errors import LockCorrupt
from recycler.model.request import RUN_KEY, RUN_KEY_RULE
from recycler.model.runtime import TOOL_NAME
from recycler.model.states import DESIRED_PENDING, PHASES, Phase

LOCK_TABLE_ENV = "LOCK_TABLE_NAME"
RELEASED_RETENTION_SECONDS = 7 * 86_400
# Flags a surge switches on, so that scale-in and scheduled actions cannot undo it.
SURGE_SUSPENDS = ("DynamicScalingInSuspended", "ScheduledScalingSuspended")
# ECS runs at most 5,000 tasks per service: a snapshot beyond that is not one this tool wrote.
MAX_DESIRED_COUNT = 5_000
MAX_SURGE = 100
# 2020-01-01 and 2100-01-01 UTC in epoch seconds. Every time this tool writes lies between: one outside is forged
# or from a broken clock, and a far one cannot even be shown (year 19391 is out of datetime's range).
EARLIEST_TIME = 1_577_836_800
LATEST_TIME = 4_102_444_800


@dataclass(frozen=True)
class Snapshot:
    """What the service looked like before the run changed anything."""

    desired_count: int
    surge: bool
    has_target: bool = False
    min_capacity: int = 0
    max_capacity: int = 0
    suspended: tuple[bool, bool, bool] = (False, False, False)
    # How many tasks the surge adds.
    surge_size: int = 1

    def suspended_state(self) -> dict[str, bool]:
        return dict(zip(SUSPENDED_FLAGS, self.suspended, strict=True))

    def flags_to_suspend(self) -> tuple[str, ...]:
        """The suspension flags the surge switches on: those that were off. Only these are undone."""
        state = self.suspended_state()
        return tuple(flag for flag in SURGE_SUSPENDS if not state[flag])

    def widened_max(self) -> int | None:
        """The MaxCapacity the surge needs, when it is above the snapshot's; else None."""
        needed = self.desired_count + self.surge_size
        return needed if self.has_target and needed > self.max_capacity else None

    def changes_target(self) -> bool:
        return self.has_target and self.surge and bool(self.flags_to_suspend() or self.widened_max() is not None)


@dataclass(frozen=True)
class Progress:
    recycled: int = 0
    total: int = 0
    batch: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class LockRecord:
    """One lock item, validated."""

    key: str
    owner: str
    version: int
    expires_at: int
    phase: Phase
    started_at: int
    snapshot: Snapshot | None = None
    restore_from: int | None = None
    restore_to: int | None = None
    progress: Progress = field(default_factory=Progress)
    # The stale lock this run took over and repaired, if any.
    taken_over_from: str | None = None
    # When the item was last written: every write stamps it, a heartbeat's too, so status can tell its age.
    # 0 on an item written before it was kept.
    updated_at: int = 0
    # The event's run_key: a second start of the same run is told it is already running.
    run_key: str | None = None

    def is_live(self, now: float) -> bool:
        return self.phase != Phase.RELEASED and self.expires_at > now

    def is_stale(self, now: float) -> bool:
        return self.phase != Phase.RELEASED and self.expires_at <= now

    # ------------------------------------------------------ JSON (checkpoints)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LockRecord:
        snapshot = data.get("snapshot")
        return cls(
            **{
                **data,
                "snapshot": None
                if snapshot is None
                else Snapshot(**{**snapshot, "suspended": tuple(snapshot["suspended"])}),
                "progress": Progress(**data.get("progress") or {}),
                "phase": Phase(data["phase"]),
            }
        )

    # ------------------------------------------------------------ DynamoDB

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": self.key,
            "tool": TOOL_NAME,
            "owner": self.owner,
            "version": self.version,
            "expires_at": self.expires_at,
            "phase": self.phase,
            "started_at": self.started_at,
            "progress": asdict(self.progress),
            "updated_at": self.updated_at,
        }
        if self.snapshot is not None:
            s = self.snapshot
            item["snapshot"] = {
                "desired_count": s.desired_count,
                "surge": s.surge,
                "surge_size": s.surge_size,
                "target": {"min": s.min_capacity, "max": s.max_capacity, "suspended": s.suspended_state()}
                if s.has_target
                else None,
            }
        if self.restore_from is not None and self.restore_to is not None:
            item["restore"] = {"from": self.restore_from, "to": self.restore_to}
        if self.taken_over_from:
            item["taken_over_from"] = self.taken_over_from
        if self.run_key:
            item["run_key"] = self.run_key
        return item

    @classmethod
    def from_item(cls, key: str, item: Mapping[str, Any]) -> LockRecord:
        """Parse and check an item. Anything this tool would not have written is LockCorrupt."""
        check = _Checker(key)
        if item.get("pk") != key:
            check.fail("pk", "does not match the service")
        phase = Phase(check.choice(item, "phase", PHASES))
        snapshot = None
        raw_snapshot = item.get("snapshot")
        if raw_snapshot is not None or phase != Phase.RELEASED:
            snapshot = check.snapshot(raw_snapshot)
        restore_from = restore_to = None
        if phase == Phase.RESTORING:
            restore = check.mapping(item.get("restore"), "restore")
            restore_from = check.integer(restore, "from", 1, MAX_DESIRED_COUNT + MAX_SURGE, "restore.from")
            # Never to 0: a restore only ever takes away what a surge added to at least one task.
            restore_to = check.integer(restore, "to", 1, restore_from, "restore.to")
            assert snapshot is not None
            if restore_from - restore_to > snapshot.surge_size:
                check.fail("restore", f"would remove {restore_from - restore_to} tasks, more than the surge added")
        raw_progress = check.mapping(item.get("progress") or {}, "progress")
        progress = Progress(
            recycled=check.integer(raw_progress, "recycled", 0, 10**6, "progress.recycled", default=0),
            total=check.integer(raw_progress, "total", 0, 10**6, "progress.total", default=0),
            batch=check.integer(raw_progress, "batch", 0, 10**6, "progress.batch", default=0),
            # 0: no progress recorded yet.
            updated_at=check.time(raw_progress, "updated_at", "progress.updated_at", unset=0),
        )
        if phase != Phase.RELEASED:
            assert snapshot is not None
            check.run_invariants(phase, snapshot, progress)
        taken_over = item.get("taken_over_from")
        run_key = item.get("run_key")
        if run_key is not None and not (isinstance(run_key, str) and RUN_KEY.fullmatch(run_key)):
            check.fail("run_key", RUN_KEY_RULE)
        return cls(
            key=key,
            owner=check.text(item, "owner"),
            version=check.integer(item, "version", 1, 2**53),
            expires_at=check.time(item, "expires_at"),
            phase=phase,
            started_at=check.time(item, "started_at"),
            snapshot=snapshot,
            restore_from=restore_from,
            restore_to=restore_to,
            progress=progress,
            taken_over_from=check.text({"t": taken_over}, "t", "taken_over_from") if taken_over else None,
            updated_at=check.time(item, "updated_at", unset=0),
            run_key=run_key,
        )

    # ------------------------------------------------------------ the restore it asks for

    def desired_restore(self, current: int, surge_landed: bool = False) -> tuple[int, list[str]]:
        """The desiredCount a restore from this lock goes back to, given the live one, and what others changed.

        Pure, so the pre-flight can weigh a repair before taking the lock over. ``surge_landed``: this very
        run saw its surge's UpdateService succeed (a repair never has).
        """
        assert self.snapshot is not None
        s = self.snapshot
        surged = s.desired_count + s.surge_size
        if self.phase == Phase.RESTORING:
            assert self.restore_from is not None and self.restore_to is not None
            if current in (self.restore_from, self.restore_to):
                return self.restore_to, []
            return current, [
                f"desiredCount became {current} while the restore from {self.restore_from} to "
                f"{self.restore_to} was under way; left as it is"
            ]
        if self.phase == Phase.SURGING and not surge_landed:
            # A run that died around its surge: the UpdateService may or may not have landed.
            if current in (surged, s.desired_count):
                return s.desired_count, []
            return current, [
                f"desiredCount is {current}, neither {s.desired_count} nor the surged {surged}: another actor "
                f"changed it, and whether the surge landed cannot be told, so it is left as it is (at most "
                f"{s.surge_size} above what they set)"
            ]
        target = max(current - s.surge_size, 0)
        if current == surged:
            return target, []
        return target, [
            f"desiredCount was changed by another actor during the run (expected {surged}, found "
            f"{current}); removed only the {s.surge_size} task(s) this run added ({current} -> {target}) "
            "and kept their change"
        ]


class _Checker:
    """Type and range checks for one item; the first failure is LockCorrupt naming the attribute."""

    def __init__(self, key: str) -> None:
        self.key = key

    def fail(self, name: str, problem: str) -> None:
        raise LockCorrupt(
            f"the lock item of {self.key} is not one this tool wrote ({name} {problem}); nothing was applied. "
            "Check the service's desiredCount and scalable target by hand, then delete the item"
        )

    def mapping(self, value: Any, name: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(name, "is missing or not a map")
        return value  # type: ignore[no-any-return]

    def text(self, item: Mapping[str, Any], name: str, label: str | None = None) -> str:
        value = item.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= 256:
            self.fail(label or name, "is not a short string")
        return str(value)

    def choice(self, item: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
        value = item.get(name)
        if value not in allowed:
            self.fail(name, f"is not one of {', '.join(allowed)}")
        return str(value)

    def integer(
        self,
        item: Mapping[str, Any],
        name: str,
        low: int,
        high: int,
        label: str | None = None,
        default: int | None = None,
    ) -> int:
        value = item.get(name, default)
        if isinstance(value, Decimal) and value == value.to_integral_value():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(label or name, f"is not a whole number from {low} to {high}")
        return int(value)

    def time(self, item: Mapping[str, Any], name: str, label: str | None = None, unset: int | None = None) -> int:
        """Epoch seconds from 2020 to 2100 (or the ``unset`` value, when given)."""
        if unset is not None and item.get(name, unset) == unset:
            return unset
        value: Any = item.get(name)
        if isinstance(value, Decimal) and value == value.to_integral_value():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not EARLIEST_TIME <= value < LATEST_TIME:
            self.fail(label or name, "is not a time (epoch seconds) from 2020-01-01 to 2100-01-01")
        return int(value)

    def run_invariants(self, phase: Phase, snapshot: Snapshot, progress: Progress) -> None:
        """What every lock a run of this tool holds satisfies, whatever its types and ranges."""
        if phase in DESIRED_PENDING:
            if not snapshot.surge:
                self.fail("snapshot.surge", f"is false, yet the phase is {phase}")
            # A run that surged found at least one task wanted (it refuses a service at desiredCount 0).
            if snapshot.desired_count < 1:
                self.fail("snapshot.desired_count", f"is 0, yet the phase is {phase}")
        # A run locks only when it has tasks to recycle, and surges by at most one batch of them.
        if snapshot.surge_size > progress.total:
            self.fail(
                "snapshot.surge_size", f"is {snapshot.surge_size}, more than the {progress.total} tasks of the run"
            )

    def boolean(self, item: Mapping[str, Any], name: str, label: str) -> bool:
        value = item.get(name)
        if not isinstance(value, bool):
            self.fail(label, "is not true or false")
        return bool(value)

    def snapshot(self, raw: Any) -> Snapshot:
        snap = self.mapping(raw, "snapshot")
        desired = self.integer(snap, "desired_count", 0, MAX_DESIRED_COUNT, "snapshot.desired_count")
        surge = self.boolean(snap, "surge", "snapshot.surge")
        surge_size = self.integer(snap, "surge_size", 1, MAX_SURGE, "snapshot.surge_size")
        target = snap.get("target")
        if target is None:
            return Snapshot(desired_count=desired, surge=surge, surge_size=surge_size)
        target = self.mapping(target, "snapshot.target")
        minimum = self.integer(target, "min", 0, MAX_DESIRED_COUNT, "snapshot.target.min")
        maximum = self.integer(target, "max", 0, MAX_DESIRED_COUNT, "snapshot.target.max")
        if minimum > maximum:
            self.fail("snapshot.target", f"has Min {minimum} above Max {maximum}")
        flags = self.mapping(target.get("suspended"), "snapshot.target.suspended")
        suspended = tuple(self.boolean(flags, flag, f"snapshot.target.suspended.{flag}") for flag in SUSPENDED_FLAGS)
        return Snapshot(
            desired_count=desired,
            surge=surge,
            has_target=True,
            min_capacity=minimum,
            max_capacity=maximum,
            suspended=(suspended[0], suspended[1], suspended[2]),
            surge_size=surge_size,
        )
