"""A run in one process (the plain function, the CLI): its lock renewed on a heartbeat while it waits, so a live
run's lock never nears its expiry and a dead one's goes stale within the lease; an interrupt is a cancel."""

from __future__ import annotations

from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed

from dev.simulator import Behaviour
from recycler.aws.gateway import ServiceGateway
from recycler.hosts import control
from recycler.lock.record import Phase
from recycler.model.request import parse_event
from recycler.run.budget import HEARTBEAT_LEASE_SECONDS, HEARTBEAT_SECONDS, SLOWEST_CALL_SECONDS
from recycler.run.liveness import Liveness


def _event(**fields: Any) -> Any:
    return parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, **fields})


def _watch_the_lock(bed: Bed) -> dict[str, float]:
    """After every sleep of the run: the least time its held lock had left, and the oldest its last write was."""
    seen = {"least_left": float("inf"), "oldest_write": 0.0}
    sleep = bed.clock.sleep

    def watched(seconds: float) -> None:
        sleep(seconds)
        lock = bed.lock()
        if lock is not None and lock.phase != Phase.RELEASED:
            now = bed.clock.now()
            seen["least_left"] = min(seen["least_left"], lock.expires_at - now)
            seen["oldest_write"] = max(seen["oldest_write"], now - lock.updated_at)

    bed.clock.sleep = watched  # type: ignore[method-assign]
    return seen


def test_the_lease_outlives_two_beats_and_the_slowest_call() -> None:
    # A live run's lock is at most two beats old between its calls, and one call may retry for this long.
    assert HEARTBEAT_LEASE_SECONDS >= 2 * HEARTBEAT_SECONDS + SLOWEST_CALL_SECONDS
    # "Within a few minutes": a dead run's lock is stale this long after its last beat.
    assert HEARTBEAT_LEASE_SECONDS <= 300


def test_during_a_long_replacement_wait_the_lock_never_nears_its_expiry(bed: Bed) -> None:
    # GIVEN replacements that take 500 s to start and a 400 s pause, with the short lease of a live run
    bed.add_service(tasks=2, target=(1, 3), behaviour=Behaviour(start_seconds=500.0))
    engine, _ = bed.engine(timeout=None, lock_ttl=HEARTBEAT_LEASE_SECONDS, liveness=Liveness())
    seen = _watch_the_lock(bed)

    report = engine.run(_event(wait_time=400))

    # THEN it succeeded, and while it ran its lock always had more than the slowest call's time left
    assert report.status == "succeeded", report.error
    bed.assert_restored()
    assert seen["least_left"] >= HEARTBEAT_LEASE_SECONDS - 2 * HEARTBEAT_SECONDS
    assert seen["oldest_write"] <= 2 * HEARTBEAT_SECONDS


def test_a_dead_runs_lock_is_stale_within_the_lease_and_the_next_run_repairs_it(bed: Bed) -> None:
    # GIVEN a live run killed during its first replacement's long wait
    bed.add_service(tasks=3, target=(1, 3), behaviour=Behaviour(start_seconds=500.0))
    engine, _ = bed.engine(timeout=None, lock_ttl=HEARTBEAT_LEASE_SECONDS, liveness=Liveness())
    bed.clock.kill_at = bed.clock.now() + 800
    with pytest.raises(BaseException, match="killed"):
        engine.run(_event(wait_time=0))
    died = bed.clock.now()
    reads = ServiceGateway(bed.ecs, None, None, _event())

    # WHEN status asks at once, and again once the lease has run out
    live = control.status(reads, bed.store, bed.clock)
    bed.clock.sleep(HEARTBEAT_LEASE_SECONDS)
    dead = control.status(reads, bed.store, bed.clock)

    # THEN it said running, then stale within the lease of its death
    lock = bed.lock()
    assert lock is not None and lock.expires_at <= died + HEARTBEAT_LEASE_SECONDS
    assert (live.state, dead.state) == ("running", "stale")
    # AND the next run repairs the service from the lock before it recycles
    bed.clock.sleep(1000)
    bed.adopt_live_tasks_as_originals()
    second, _ = bed.engine(owner="run-2", timeout=None, lock_ttl=HEARTBEAT_LEASE_SECONDS, liveness=Liveness())
    report = second.run(_event(wait_time=0))
    assert report.status == "succeeded", report.error
    assert any("repaired expired lock of run-1" in action for action in report.restore_actions)
    bed.assert_restored()


def test_the_heartbeat_costs_about_one_lock_write_per_task(bed: Bed) -> None:
    # GIVEN the benchmark's service: 40 s starts, wait_time 30, ten tasks one at a time
    bed.add_service(tasks=10, target=(1, 20))
    engine, _ = bed.engine(timeout=None, lock_ttl=HEARTBEAT_LEASE_SECONDS, liveness=Liveness())
    report = engine.run(_event(wait_time=30))
    assert report.status == "succeeded", report.error
    beating = bed.sim.calls["update_item"]

    # WHEN the same recycle runs without a heartbeat
    bed.add_service(tasks=10, target=(1, 20), service="quiet")
    quiet, _ = bed.engine(owner="run-2", timeout=None, lock_ttl=900)
    report = quiet.run(parse_event({"cluster_name": CLUSTER, "service_name": "quiet", "wait_time": 30}))
    assert report.status == "succeeded", report.error

    # THEN the heartbeat added one UpdateItem per task, and one for the surge's wait (a task takes 70 s here:
    # one beat, and the batch's own renewal)
    extra = beating - bed.sim.calls["update_item"]
    assert 0 < extra <= 10 + 1


def test_an_interrupt_stops_the_run_as_a_cancel_does(bed: Bed) -> None:
    # GIVEN a live run interrupted (the CLI's Ctrl-C) 100 s after it starts, during its first replacement
    bed.add_service(tasks=3, target=(1, 3))
    at = bed.clock.now() + 100
    interrupted = Liveness(interrupted=lambda: "SIGINT" if bed.clock.now() >= at else None)
    engine, _ = bed.engine(timeout=None, lock_ttl=HEARTBEAT_LEASE_SECONDS, liveness=interrupted)
    stops = bed.record_stop_times()

    report = engine.run(_event(wait_time=30))

    # THEN it stopped no task after the interrupt, let the replacement in flight serve, restored, cancelled
    assert report.status == "cancelled" and "interrupted by SIGINT" in (report.error or "")
    assert all(when < at for when in stops.values())
    assert len(report.tasks_recycled) == 1 and report.restored is True
    bed.assert_restored()
    lock = bed.lock()
    assert lock is not None and lock.phase == Phase.RELEASED


def test_an_interrupt_before_the_lock_changes_nothing(bed: Bed) -> None:
    # GIVEN a run interrupted before it took its lock (Ctrl-C during the pre-flight)
    bed.add_service(tasks=3, target=(1, 3))
    before = bed.service_state()
    interrupted = Liveness(interrupted=lambda: "SIGINT")
    engine, _ = bed.engine(timeout=None, lock_ttl=HEARTBEAT_LEASE_SECONDS, liveness=interrupted)

    report = engine.run(_event())

    # THEN it is cancelled, and nothing changed: no surge, no lock item
    assert report.status == "cancelled" and "interrupted by SIGINT" in (report.error or "")
    bed.assert_nothing_changed(before)
    assert bed.lock() is None
