"""Following a fleet (recycler.hosts.follow_fleet): over when its run has ended, with that run's status; a run
that died (no service running for longer than an invocation lasts, and not ended) is said to have died."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dev.simulator import VirtualClock
from recycler.hosts.follow import iso_epoch
from recycler.hosts.follow_fleet import DEAD_AFTER_SECONDS, FleetFollower
from recycler.model.progress import LiveProgress
from recycler.model.runtime import iso_seconds


def _answer(clock: VirtualClock, states: list[str], ended: bool = False, status: str | None = None) -> dict[str, Any]:
    run = {
        "owner": "fleet-1",
        "started_at": iso_seconds(clock.start),
        "ended_at": iso_seconds(clock.now()) if ended else None,
        "status": status,
        "cancel_requested_by": None,
    }
    services = [
        {"service": f"svc-{i}", "state": state, "last_run": {"ended_at": iso_seconds(clock.now())}}
        for i, state in enumerate(states)
    ]
    return {"fleet": True, "services": services, "fleet_run": run}


def test_the_follow_shows_services_finished_and_ends_with_the_runs_status() -> None:
    clock = VirtualClock()
    script = [["running", "idle"], ["idle", "running"], ["idle", "idle"]]
    shown: list[LiveProgress] = []

    def ask() -> Mapping[str, Any]:
        states = script.pop(0)
        return _answer(clock, states, ended=not script, status="succeeded" if not script else None)

    followed = FleetFollower(ask, clock, shown.append).follow(since=clock.now())
    assert followed.status == "succeeded" and followed.message.startswith("fleet succeeded")
    assert [p.event for p in shown[:2]] == ["running: svc-0", "running: svc-1"]
    assert shown[-1].recycled == 2 and shown[-1].total == 2


def test_a_fleet_run_that_died_is_said_to_have_died() -> None:
    clock = VirtualClock()
    followed = FleetFollower(lambda: _answer(clock, ["idle", "stale"]), clock, lambda _: None).follow(None)
    assert followed.status == "failed" and "died" in followed.message
    assert DEAD_AFTER_SECONDS <= clock.elapsed <= DEAD_AFTER_SECONDS + 10
    assert iso_epoch(_answer(clock, [])["fleet_run"]["started_at"]) == clock.start
