"""The benchmark's durable fleet rows: a fleet as one durable execution (the SDK's map over its services),
under the SDK's test runner on the simulator's clock.

The services' branches run at once, in the SDK's threads. Time stands still while the handler runs and jumps
to the earliest wake-up once every branch has suspended (``durable_runner(..., concurrent=True)``), so waits
that overlap in real life overlap here too.

Targets (issue 19):
- 20 services x 5 tasks, max_parallel_services 5: at most 1.05 x the inherent minimum, which is the sum of
  the services' minimums / 5, rounded up to whole services (each service's minimum as the single-service
  rows measure it: each batch it launched needed its slowest start, and each batch its wait_time);
- 100 services x 10 tasks, batch_size 5, parallel 10: within the template's default ExecutionTimeout, and no
  more API calls per task than a single service of the same shape in the durable function;
- both: serving >= N and live <= N + batch_size for every service at every moment, and never more services
  surged at once than max_parallel_services.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from unittest import mock

from dev import simulator
from dev.bench_common import WAIT_TIME, bench_service, by_operation, count_client_calls, service_minimums
from dev.bench_durable import EVENT_OPERATIONS, run_durable
from dev.durable_support import Meter, durable_runner, fast_checkpoint_shutdown
from recycler.hosts import durable, execution_name
from recycler.hosts.config import parse_config
from recycler.run.budget import DEFAULT_EXECUTION_TIMEOUT_SECONDS


@dataclass(frozen=True)
class DurableFleetScenario:
    services: int
    tasks: int
    batch_size: int
    parallel: int
    # Time against the fleet's inherent minimum must stay at or below this (None: the ExecutionTimeout only).
    ratio_target: float | None = None
    # API calls per task may not exceed a single service's of the same shape.
    calls_within_single: bool = False

    @property
    def label(self) -> str:
        return f"durable fleet {self.services} x {self.tasks}, batch {self.batch_size}, {self.parallel} in parallel"


DURABLE_FLEET = (
    DurableFleetScenario(20, 5, 1, 5, ratio_target=1.05),
    DurableFleetScenario(100, 10, 5, 10, calls_within_single=True),
)


@dataclass
class DurableFleetResult:
    status: str
    recycled: int
    virtual_seconds: float
    minimum_seconds: float
    invocations: int
    most_surged: int
    min_serving: dict[str, int]
    max_live: dict[str, int]
    real_seconds: float
    client_calls: dict[str, int] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.virtual_seconds / self.minimum_seconds if self.minimum_seconds else float("nan")

    @property
    def calls_per_task(self) -> float:
        # As the single-service durable rows count them: the run's EventBridge events apart.
        recycle = sum(n for name, n in self.client_calls.items() if name not in EVENT_OPERATIONS)
        return recycle / self.recycled if self.recycled else float("nan")


def surged_services(sim: simulator.EcsSimulator, desired: int) -> list[int]:
    """How many services are surged (desired above N) at every moment the simulator observes."""
    counts: list[int] = []
    observe = sim._observe

    def observing() -> None:
        observe()
        services = sim.backend().services.values()
        counts.append(sum(1 for svc in services if svc.status == "ACTIVE" and svc.desired_count > desired))

    sim._observe = observing  # type: ignore[method-assign]
    return counts


def run_durable_fleet(scenario: DurableFleetScenario) -> DurableFleetResult:
    clock = simulator.VirtualClock()
    names = [f"svc{i:03d}" for i in range(1, scenario.services + 1)]
    quiet = {"LOG_LEVEL": "CRITICAL"}  # the handler configures logging on every invocation
    with mock.patch.dict(os.environ, quiet), simulator.simulated_aws(clock) as (sim, session):
        sim.serialize_calls()
        for name in names:
            bench_service(sim, session, scenario.tasks, name=name)
        surged = surged_services(sim, scenario.tasks)
        # The template's defaults: replacement_timeout_seconds 600, DurableExecutionTimeout 24 h.
        config = parse_config({"recycle": {"lock_table_name": simulator.create_lock_table(session)}})
        client_calls = count_client_calls(session)
        meter = Meter()
        handler = meter.wrap(durable.build_handler(clock=clock, session=session, config=config), sim)
        event = {
            "cluster_name": "bench",
            "services": names,
            "wait_time": WAIT_TIME,
            "batch_size": scenario.batch_size,
            "max_parallel_services": scenario.parallel,
        }
        run_name = execution_name.durable_fleet_execution_name("bench", services=names)
        started, real_started = clock.now(), time.perf_counter()
        with fast_checkpoint_shutdown(), durable_runner(clock, handler, concurrent=True) as runner:
            # The run's EMF lines go to stdout, as in Lambda; here they would drown the table.
            with contextlib.redirect_stdout(io.StringIO()):
                outcome = runner.run(input=json.dumps(event), execution_timeout=3600, execution_name=run_name)
        elapsed = clock.now() - started
        report = json.loads(outcome.result) if outcome.result else {}
        minimums = service_minimums(sim, started, WAIT_TIME)
        whole_services_per_lane = math.ceil(scenario.services / scenario.parallel)
        keys = [f"bench:{name}" for name in names]
        return DurableFleetResult(
            status=str(report.get("status", outcome.status.name.lower())),
            recycled=int(report.get("totals", {}).get("tasks_recycled", 0)),
            virtual_seconds=elapsed,
            minimum_seconds=whole_services_per_lane * sum(minimums.values()) / max(len(minimums), 1),
            invocations=len(meter.invocations),
            most_surged=max(surged, default=0),
            min_serving={k: sim.observed.min_serving[k] for k in keys},
            max_live={k: sim.observed.max_live[k] for k in keys},
            real_seconds=time.perf_counter() - real_started,
            client_calls=dict(client_calls),
        )


def durable_fleet_section() -> list[str]:
    """Print the durable fleet rows; what missed its target."""
    print()
    print("Durable fleet (one execution, the SDK's map over the services):")
    print(
        f"{'services':>9} {'tasks':>6} {'batch':>6} {'parallel':>9} {'status':>11} {'recycled':>9} "
        f"{'virtual s':>10} {'minimum s':>10} {'ratio':>6} {'calls/task':>11} {'single':>7} {'invocations':>12} "
        f"{'most surged':>12} {'min serving':>12} {'max live':>9}"
    )
    failures = []
    for scenario in DURABLE_FLEET:
        r = run_durable_fleet(scenario)
        # A single service of the same shape, in the durable function: the calls-per-task ceiling.
        single = run_durable(scenario.tasks, scenario.batch_size).calls_per_task
        print(
            f"{scenario.services:>9} {scenario.tasks:>6} {scenario.batch_size:>6} {scenario.parallel:>9} "
            f"{r.status:>11} {r.recycled:>9} {r.virtual_seconds:>10.0f} {r.minimum_seconds:>10.0f} {r.ratio:>6.3f} "
            f"{r.calls_per_task:>11.1f} {single:>7.1f} {r.invocations:>12} {r.most_surged:>12} "
            f"{min(r.min_serving.values()):>12} {max(r.max_live.values()):>9}"
        )
        print(f"{'':>9} ({r.real_seconds:.0f} s of real time to simulate)")
        failures += durable_fleet_failures(scenario, r, single)
    return failures


def durable_fleet_failures(scenario: DurableFleetScenario, r: DurableFleetResult, single: float) -> list[str]:
    label, n = scenario.label, scenario.tasks
    failures = []
    if r.status != "succeeded" or r.recycled != scenario.services * n:
        failures.append(f"{label}: {r.status} with {r.recycled} recycled")
    if scenario.ratio_target is not None and not r.ratio <= scenario.ratio_target:
        failures.append(f"{label}: time ratio {r.ratio:.3f} > {scenario.ratio_target}")
    if r.virtual_seconds > DEFAULT_EXECUTION_TIMEOUT_SECONDS:
        failures.append(f"{label}: {r.virtual_seconds:.0f} s, over the default ExecutionTimeout")
    if r.most_surged > scenario.parallel:
        failures.append(f"{label}: {r.most_surged} services surged at once")
    for key, serving in r.min_serving.items():
        if serving < n or r.max_live[key] > n + scenario.batch_size:
            failures.append(f"{label}: {key} served {serving}, {r.max_live[key]} live (N = {n})")
    if scenario.calls_within_single and not r.calls_per_task <= single:
        failures.append(
            f"{label}: {r.calls_per_task:.2f} API calls per task > a single service's {single:.2f} "
            f"({by_operation(r.client_calls)})"
        )
    return failures
