"""The run's hold on its lock item: acquire, every later write as a step, renewal, takeover and release.

Each write is one conditional call (recycler.lock.store) inside one runtime
step, and the engine keeps only what the step returned, so a durable replay
rebuilds exactly the record the lock table holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from recycler.aws.gateway import retrying
from recycler.lock.record import RELEASED_RETENTION_SECONDS, LockRecord, Phase, Progress, Snapshot
from recycler.lock.store import DynamoLockStore
from recycler.model.errors import AwsCallFailed
from recycler.model.runtime import Clock, Runtime

# Log one line at this level: (level, message, fields).
Log = Callable[..., None]


@dataclass(frozen=True)
class Lease:
    """The run's time rule for its lock (recycler.run.budget): how long the lock outlives its last write, asked
    at each write, and how often a waiting run renews it (None: only at its own writes, as a durable execution,
    which cannot beat while suspended)."""

    ttl_seconds: Callable[[], float]
    heartbeat_seconds: float | None = None


class LockHolder:
    def __init__(
        self,
        store: DynamoLockStore | None,
        runtime: Runtime,
        clock: Clock,
        owner_id: str,
        lease: Lease,
        log: Log,
    ) -> None:
        # None only for a dry run, which never locks.
        self._store = store
        self.runtime = runtime
        self.clock = clock
        self.owner_id = owner_id
        self.lease = lease
        self.log = log
        # The lock item as last written: its phase says what the restore has left to do.
        self.record: LockRecord | None = None

    @property
    def store(self) -> DynamoLockStore:
        assert self._store is not None, "a dry run never locks"
        return self._store

    @property
    def current(self) -> LockRecord:
        assert self.record is not None
        return self.record

    def expiry(self) -> int:
        ttl = self.lease.ttl_seconds()
        return int(self.clock.now() + ttl)

    def acquire(
        self, key: str, seen: LockRecord | None, snapshot: Snapshot, total: int, run_key: str | None = None
    ) -> None:
        """Take the lock: only over no item, or over the idle item ``seen`` read before ``snapshot`` was taken."""

        def acquire() -> LockRecord:
            now = self.clock.now()
            record = LockRecord(
                key=key,
                owner=self.owner_id,
                version=(seen.version if seen else 0) + 1,
                expires_at=self.expiry(),
                phase=Phase.ACQUIRED,
                started_at=int(now),
                snapshot=snapshot,
                progress=Progress(total=total, updated_at=int(now)),
                updated_at=int(now),
                run_key=run_key,
            )
            return self.store.acquire(record, seen)

        self.record = LockRecord.from_dict(self.runtime.step("lock", lambda: acquire().to_dict()))

    def take_over(self, stale: LockRecord) -> None:
        """Take an expired lock over (compare-and-swap on its version) to finish its restore."""
        taken = self.runtime.step(
            "take over expired lock",
            lambda: self.store.take_over(stale, self.owner_id, self.expiry(), self.clock.now()).to_dict(),
        )
        self.record = LockRecord.from_dict(taken)

    def write(self, name: str, **changes: Any) -> LockRecord:
        """Record a change in the lock item before making it, and push its expiry forward.

        The write is conditional on owner and version: if the lock is no longer
        ours (this run was paused past its expiry and another run repaired the
        service and took over), it fails with LockLost and the run stops without
        touching the service again.
        """
        write = self._writer(changes)
        self.record = LockRecord.from_dict(self.runtime.step(name, lambda: write().to_dict()))
        return self.record

    def beat(self) -> None:
        """While the run waits: renew the lock once its last write is a heartbeat old (a run without a
        heartbeat, or holding no lock, does nothing). A beat that fails on AWS is logged, and the next one, or
        the run's next write, tries again; a lock another run has taken over stops the run (LockLost)."""
        every, record = self.lease.heartbeat_seconds, self.record
        if every is None or record is None or record.phase == Phase.RELEASED:
            return
        if self.clock.now() - record.updated_at < every:
            return
        try:
            self.write("heartbeat")
        except AwsCallFailed as e:
            self.log(logging.WARNING, f"The lock's heartbeat failed; the next one tries again: {e}")

    def record_phase(self, name: str, **changes: Any) -> str | None:
        """A restore's write: retried, and never raising on AWS errors; the error text if it never lands."""
        write = self._writer(changes)
        written = self.runtime.step(name, lambda: retrying(lambda: write().to_dict(), self.clock.sleep, self.log))
        if isinstance(written, str):
            return f"could not record the restore's progress in the lock table ({written}); nothing more was changed"
        self.record = LockRecord.from_dict(written)
        return None

    def release(self, name: str) -> str | None:
        """Leave the item idle (phase released) for TTL to remove; the error text if that never lands."""
        retention = RELEASED_RETENTION_SECONDS
        write = self._writer({"phase": Phase.RELEASED, "restore_from": None, "restore_to": None}, retention)
        released = self.runtime.step(name, lambda: retrying(lambda: write().to_dict(), self.clock.sleep, self.log))
        if isinstance(released, str):
            return released
        self.record = LockRecord.from_dict(released)
        return None

    def _writer(self, changes: Mapping[str, Any], expires_in: float | None = None) -> Callable[[], LockRecord]:
        """The write of ``changes`` to the lock as it is now (a step's function: it makes the JSON)."""
        current = self.current

        def write() -> LockRecord:
            now = self.clock.now()
            expires = int(now + expires_in) if expires_in is not None else self.expiry()
            return self.store.write(current, expires_at=expires, updated_at=int(now), **changes)

        return write
