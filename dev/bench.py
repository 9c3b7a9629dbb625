"""Benchmark the recycle on the simulated cluster's virtual clock (runs in seconds).

Prints, per scenario: virtual duration against the inherent minimum (the surge's
start time, then each replacement's start time plus wait_time), AWS API calls
per recycled task, and the minimum serving capacity seen. Every scenario has
targets (time ratio, serving >= N, live <= N + batch_size, a ceiling on API calls
per recycled task); a missed one is printed and the exit status is 1.

It also runs a fleet of 3 x 3 in one plain invocation (dev/bench_fleet.py), the
long-running mode, the durable function under the SDK's DurableFunctionTestRunner
on the same simulated cluster, with its invocations and an estimate of the billed
compute (dev/bench_durable.py): 200 tasks at batch_size 10 always (about 5 s of
real time); 200 tasks at batch_size 1 (about 30 s) and 1,000 tasks at batch_size
10 (about 50 s) with --durable; and two fleets as durable executions
(dev/bench_durable_fleet.py): 20 services x 5 tasks, 5 at once (about 15 s), and
100 x 10 at batch_size 5, 10 at once (about 70 s).

    python -m dev.bench                 # the plain scenarios and fleet, 200 tasks durable by 10, the durable fleets
    python -m dev.bench --durable       # ... and the two slow durable rows
    python -m dev.bench --calls         # ... with each plain scenario's API calls by operation
    python -m dev.bench --durable-tasks 500 --durable-batch-size 20   # ... and one durable row of that size
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev import simulator
from dev.bench_common import (
    BATCH_ONE_CALLS,
    DRAIN_SECONDS,
    START_SECONDS,
    WAIT_TIME,
    bench_service,
    by_operation,
)
from dev.bench_durable import DURABLE_DEFAULT, DURABLE_SLOW, DurableScenario, durable_section
from dev.bench_durable_fleet import durable_fleet_section
from dev.bench_fleet import fleet_section
from recycler.lock.store import DynamoLockStore
from recycler.model.request import parse_event
from recycler.model.runtime import LocalRuntime
from recycler.model.settings import RecycleSettings
from recycler.run.budget import HEARTBEAT_LEASE_SECONDS
from recycler.run.context import AwsClients, EngineSetup
from recycler.run.engine import Recycler
from recycler.run.liveness import Liveness
from recycler.run.ports import RunPolicy


@dataclass(frozen=True)
class Scenario:
    tasks: int
    batch_size: int = 1
    jitter: float = 0.0
    # Time against the inherent minimum must stay at or below this.
    ratio_target: float = 1.10
    # The run must recycle every task within one plain invocation.
    must_finish: bool = False
    # API calls per recycled task (every attempt, the lock table's included) must stay at or below this.
    calls_ceiling: float = 11.0


# The lock's heartbeat (recycler.run.budget.HEARTBEAT_SECONDS, 30 s): one UpdateItem in each 70 s replacement
# at batch_size 1, beside the batch's own renewal (at a 60 s heartbeat it would be none at these timings).
HEARTBEAT_CALLS = 1.0

# Plain invocations (900 s), 40 s start, 30 s drain, wait_time 30, the heartbeat on as in the plain host. The
# ceilings sit a little above what was measured (10.5, 11.5, 14.9, 2.9, 2.1): they catch a regression. With
# starts of 40 +/- 10 s each replacement takes about two more polls than at a fixed 40 s: the first poll
# waits for the fastest start seen, about 30 s, and the rest follow every 5 s (DescribeServices and
# DescribeTasks each; ListTasks only until the replacement is known).
SCENARIOS = (
    Scenario(10, calls_ceiling=BATCH_ONE_CALLS),
    Scenario(120, calls_ceiling=BATCH_ONE_CALLS + HEARTBEAT_CALLS),
    Scenario(10, jitter=10.0, calls_ceiling=14.5 + HEARTBEAT_CALLS),
    Scenario(50, batch_size=5, ratio_target=1.05, must_finish=True, calls_ceiling=3.0),
    Scenario(100, batch_size=10, ratio_target=1.05, must_finish=True, calls_ceiling=2.2),
)


@dataclass
class Result:
    tasks: int
    status: str
    recycled: int
    remaining: int
    virtual_seconds: float
    minimum_seconds: float
    api_calls: int
    min_serving: int
    max_live: int
    calls_by_operation: dict[str, int] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.virtual_seconds / self.minimum_seconds if self.minimum_seconds else 0.0

    @property
    def calls_per_task(self) -> float:
        return self.api_calls / self.recycled if self.recycled else float("nan")


def inherent_minimum(sim: simulator.EcsSimulator, started: float, batches: int) -> float:
    """Nothing can go faster: each batch of tasks the run launched (the surge first) needed its slowest
    start, and each batch of replacements its wait_time. Tasks launched together are one batch."""
    batch_starts: dict[float, float] = {}
    for meta in sim.meta.values():
        if meta.launched_at >= started:
            seconds = meta.running_at - meta.launched_at
            batch_starts[meta.launched_at] = max(batch_starts.get(meta.launched_at, 0.0), seconds)
    launched = [batch_starts[at] for at in sorted(batch_starts)]
    return sum(launched[: batches + 1]) + batches * WAIT_TIME


def run(tasks: int, lambda_timeout: float | None = 900.0, jitter: float = 0.0, batch_size: int = 1) -> Result:
    clock = simulator.VirtualClock()
    with simulator.simulated_aws(clock) as (sim, session):
        ecs, autoscaling = bench_service(sim, session, tasks, jitter)
        dynamodb = session.client("dynamodb", config=simulator.sim_client_config())
        store = DynamoLockStore(dynamodb, simulator.create_lock_table(session))
        # Every call the run makes, the lock table's included.
        calls = sim.count_client_calls(ecs, autoscaling, dynamodb)
        context = simulator.FakeLambdaContext(clock, lambda_timeout or 10**9)
        runtime = LocalRuntime(clock, lambda: context.get_remaining_time_in_millis() / 1000.0)
        setup = EngineSetup(AwsClients(ecs, autoscaling), clock, runtime, RecycleSettings(), "bench", store)
        # As the plain host runs it: a short lease, renewed on a heartbeat while the run waits.
        engine = Recycler(setup, RunPolicy(lock_ttl_seconds=HEARTBEAT_LEASE_SECONDS, liveness=Liveness()))
        started = clock.now()
        event = {"cluster_name": "bench", "service_name": "web", "wait_time": WAIT_TIME, "batch_size": batch_size}
        report = engine.run(parse_event(event))
        elapsed = clock.now() - started
        recycled = len(report.tasks_recycled)
        minimum = inherent_minimum(sim, started, len({t.batch for t in report.tasks_recycled}))
        return Result(
            tasks,
            report.status,
            recycled,
            len(report.tasks_remaining),
            elapsed,
            minimum,
            sum(calls.values()),
            sim.observed.min_serving["bench:web"],
            sim.observed.max_live["bench:web"],
            dict(calls),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--durable",
        action="store_true",
        help="also run the slow durable rows: 200 tasks at batch_size 1 (about 30 s of real time) and 1,000 tasks "
        "at batch_size 10 (about 50 s); 200 tasks at batch_size 10 always runs",
    )
    parser.add_argument(
        "--durable-tasks", type=int, help="also run one durable row of this many tasks (default 200 with the next)"
    )
    parser.add_argument(
        "--durable-batch-size", type=int, help="the batch_size of that extra durable row (default 10 with the previous)"
    )
    parser.add_argument("--calls", action="store_true", help="print each plain scenario's API calls by operation")
    args = parser.parse_args()
    durable = list(DURABLE_DEFAULT + (DURABLE_SLOW if args.durable else ()))
    if args.durable_tasks is not None or args.durable_batch_size is not None:
        extra = DurableScenario(args.durable_tasks or 200, args.durable_batch_size or 10)
        if all((d.tasks, d.batch_size) != (extra.tasks, extra.batch_size) for d in durable):
            durable.append(extra)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("ecs-task-recycle").setLevel(logging.CRITICAL)
    print(
        f"Simulated service: {START_SECONDS:.0f}s start, {DRAIN_SECONDS:.0f}s drain, wait_time {WAIT_TIME}s, "
        "900s Lambda budget, poll 5s"
    )
    print(
        f"{'tasks':>6} {'batch':>6} {'start s':>8} {'status':>11} {'recycled':>9} {'remain':>7} {'virtual s':>10} "
        f"{'minimum s':>10} {'ratio':>6} {'calls/task':>11} {'min serving':>12} {'max live':>9}"
    )
    failures = []
    for scenario in SCENARIOS:
        n, batch = scenario.tasks, scenario.batch_size
        r = run(n, jitter=scenario.jitter, batch_size=batch)
        start = f"{START_SECONDS:.0f}" + (f"±{scenario.jitter:.0f}" if scenario.jitter else "")
        print(
            f"{r.tasks:>6} {batch:>6} {start:>8} {r.status:>11} {r.recycled:>9} {r.remaining:>7} "
            f"{r.virtual_seconds:>10.0f} {r.minimum_seconds:>10.0f} {r.ratio:>6.3f} {r.calls_per_task:>11.1f} "
            f"{r.min_serving:>12} {r.max_live:>9}"
        )
        if args.calls:
            print(f"{'':>6} calls: {by_operation(r.calls_by_operation)}")
        label = f"{n} tasks, batch {batch}" + (f", starts {start} s" if scenario.jitter else "")
        if r.min_serving < n:
            failures.append(f"{label}: serving capacity fell to {r.min_serving}")
        if r.max_live > n + batch:
            failures.append(f"{label}: {r.max_live} live tasks, more than N + batch_size")
        if r.ratio > scenario.ratio_target:
            failures.append(f"{label}: time ratio {r.ratio:.3f} > {scenario.ratio_target}")
        if r.recycled + r.remaining != n:
            failures.append(f"{label}: {r.recycled} recycled + {r.remaining} remaining != {n}")
        if scenario.must_finish and (r.status != "succeeded" or r.recycled != n):
            failures.append(f"{label}: {r.status} with {r.recycled} recycled, in one plain invocation")
        if not r.calls_per_task <= scenario.calls_ceiling:
            failures.append(
                f"{label}: {r.calls_per_task:.2f} API calls per recycled task > {scenario.calls_ceiling} "
                f"({by_operation(r.calls_by_operation)})"
            )
    failures += fleet_section()
    failures += durable_section(durable)
    failures += durable_fleet_section()
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
