"""Benchmark the recycle on the simulated cluster's virtual clock (runs in seconds).

Prints, per scenario: virtual duration against the inherent minimum (the surge's
start time, then each replacement's start time plus wait_time), AWS API calls
per recycled task, and the minimum serving capacity seen.

    python bench/bench_recycle.py            # 10 tasks and 120 tasks
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import simulator
from config import RecycleSettings, parse_event
from recycle import LocalRuntime, Recycler

START_SECONDS = 40.0
DRAIN_SECONDS = 30.0
WAIT_TIME = 30


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

    @property
    def ratio(self) -> float:
        return self.virtual_seconds / self.minimum_seconds if self.minimum_seconds else 0.0

    @property
    def calls_per_task(self) -> float:
        return self.api_calls / self.recycled if self.recycled else float("nan")


def run(tasks: int, lambda_timeout: float | None = 900.0) -> Result:
    clock = simulator.VirtualClock()
    with simulator.simulated_aws(clock) as (sim, session):
        ecs = session.client("ecs", config=simulator.sim_client_config())
        autoscaling = session.client("application-autoscaling", config=simulator.sim_client_config())
        behaviour = simulator.Behaviour(start_seconds=START_SECONDS, drain_seconds=DRAIN_SECONDS)
        sim.create_service(ecs, "bench", "web", tasks, behaviour)
        autoscaling.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId="service/bench/web",
            ScalableDimension="ecs:service:DesiredCount",
            MinCapacity=1,
            MaxCapacity=tasks + 10,
        )
        calls = sim.count_client_calls(ecs, autoscaling)
        sim.observed = simulator.Observation()
        context = simulator.FakeLambdaContext(clock, lambda_timeout or 10**9)
        runtime = LocalRuntime(clock, lambda: context.get_remaining_time_in_millis() / 1000.0)
        engine = Recycler(ecs, autoscaling, clock, runtime, RecycleSettings(), owner_id="bench")
        started = clock.now()
        report = engine.run(parse_event({"cluster_name": "bench", "service_name": "web", "wait_time": WAIT_TIME}))
        elapsed = clock.now() - started
        recycled = len(report.tasks_recycled)
        minimum = START_SECONDS + recycled * (START_SECONDS + WAIT_TIME)
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
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="*", default=[10, 120])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("ecs-task-recycle").setLevel(logging.CRITICAL)
    print(
        f"Simulated service: {START_SECONDS:.0f}s start, {DRAIN_SECONDS:.0f}s drain, wait_time {WAIT_TIME}s, "
        "900s Lambda budget, poll 5s"
    )
    print(
        f"{'tasks':>6} {'status':>11} {'recycled':>9} {'remain':>7} {'virtual s':>10} {'minimum s':>10} "
        f"{'ratio':>6} {'calls/task':>11} {'min serving':>12} {'max live':>9}"
    )
    failures = []
    for n in args.tasks:
        r = run(n)
        print(
            f"{r.tasks:>6} {r.status:>11} {r.recycled:>9} {r.remaining:>7} {r.virtual_seconds:>10.0f} "
            f"{r.minimum_seconds:>10.0f} {r.ratio:>6.3f} {r.calls_per_task:>11.1f} "
            f"{r.min_serving:>12} {r.max_live:>9}"
        )
        if r.min_serving < n:
            failures.append(f"{n} tasks: serving capacity fell to {r.min_serving}")
        if r.ratio > 1.10:
            failures.append(f"{n} tasks: time ratio {r.ratio:.3f} > 1.10")
        if r.recycled + r.remaining != n:
            failures.append(f"{n} tasks: {r.recycled} recycled + {r.remaining} remaining != {n}")
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
