"""The fleet's benchmark row: 3 services of 3 tasks, one at a time, in one plain invocation.

It goes through the plain host as the Lambda function runs it (its fit check, each service's own run, the
fleet's report), on the simulator's virtual clock. The inherent minimum is the sum of the services': each
batch the runs launched (their surges included) needed its slowest start, and each batch its wait_time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dev import simulator
from dev.bench_common import WAIT_TIME, bench_service, service_minimums
from recycler.hosts import plain
from recycler.hosts.config import parse_config
from recycler.model.fleet import parse_fleet_event

SERVICES, TASKS = 3, 3
# The target: within 1.05 x the sum of the services' minimums.
RATIO_TARGET = 1.05


@dataclass(frozen=True)
class FleetResult:
    status: str
    recycled: int
    virtual_seconds: float
    minimum_seconds: float
    min_serving: dict[str, int]
    max_live: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.virtual_seconds / self.minimum_seconds if self.minimum_seconds else 0.0


def run_fleet() -> FleetResult:
    clock = simulator.VirtualClock()
    names = [f"svc{i}" for i in range(1, SERVICES + 1)]
    with simulator.simulated_aws(clock) as (sim, session):
        for name in names:
            bench_service(sim, session, TASKS, name=name)
        config = parse_config(
            {
                "awsCredentials": {"region_name": simulator.REGION},
                "recycle": {"poll_interval_seconds": 5, "lock_table_name": simulator.create_lock_table(session)},
            }
        )
        context = simulator.FakeLambdaContext(clock, 900.0, "bench-fleet")
        request = parse_fleet_event(
            {"cluster_name": "bench", "services": names, "wait_time": WAIT_TIME, "hand_off": False}
        )
        started = clock.now()
        report: dict[str, Any] = plain.run_recycle(
            request,
            config,
            session=session,
            clock=clock,
            remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000.0,
            owner_id="bench-fleet",
        )
        elapsed = clock.now() - started
        keys = [f"bench:{name}" for name in names]
        return FleetResult(
            str(report["status"]),
            int(report["totals"]["tasks_recycled"]),
            elapsed,
            sum(service_minimums(sim, started, WAIT_TIME).values()),
            {k: sim.observed.min_serving[k] for k in keys},
            {k: sim.observed.max_live[k] for k in keys},
        )


def fleet_section() -> list[str]:
    """Print the fleet row; what missed its target."""
    r = run_fleet()
    print(f"\nFleet (plain invocation, one service at a time): {SERVICES} services x {TASKS} tasks")
    heading = f"{'status':>11} {'recycled':>9} {'virtual s':>10} {'minimum s':>10} {'ratio':>6}"
    print(f"{heading} {'min serving':>12} {'max live':>9}")
    print(
        f"{r.status:>11} {r.recycled:>9} {r.virtual_seconds:>10.0f} {r.minimum_seconds:>10.0f} {r.ratio:>6.3f} "
        f"{min(r.min_serving.values()):>12} {max(r.max_live.values()):>9}"
    )
    label = f"fleet {SERVICES} x {TASKS}"
    failures = []
    if r.status != "succeeded" or r.recycled != SERVICES * TASKS:
        failures.append(f"{label}: {r.status} with {r.recycled} recycled")
    if r.ratio > RATIO_TARGET:
        failures.append(f"{label}: time ratio {r.ratio:.3f} > {RATIO_TARGET}")
    for key, serving in r.min_serving.items():
        if serving < TASKS or r.max_live[key] > TASKS + 1:
            failures.append(f"{label}: {key} served {serving}, {r.max_live[key]} live (N = {TASKS})")
    return failures
