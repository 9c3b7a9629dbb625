"""Benchmark the recycle on the simulated cluster's virtual clock (runs in seconds).

Prints, per scenario: virtual duration against the inherent minimum (the surge's
start time, then each replacement's start time plus wait_time), AWS API calls
per recycled task, and the minimum serving capacity seen. Every scenario has
targets (time ratio, serving >= N, live <= N + batch_size, a ceiling on API calls
per recycled task); a missed one is printed and the exit status is 1.

It also runs the long-running mode, the durable function under the SDK's
DurableFunctionTestRunner on the same simulated cluster, and prints its
invocations and an estimate of the billed compute: 200 tasks at batch_size 10
always (about 5 s of real time); 200 tasks at batch_size 1 (about 30 s) and
1,000 tasks at batch_size 10 (about 50 s) with --durable.

    python -m dev.bench                 # the plain scenarios, then 200 tasks durable at batch_size 10
    python -m dev.bench --durable       # ... and the two slow durable rows
    python -m dev.bench --calls         # ... with each plain scenario's API calls by operation
    python -m dev.bench --durable-tasks 500 --durable-batch-size 20   # ... and one durable row of that size
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev import simulator
from dev.bench_fleet import fleet_section
from recycler.hosts.config import parse_config
from recycler.lock.store import DynamoLockStore
from recycler.model.request import parse_event
from recycler.model.runtime import LocalRuntime
from recycler.model.settings import RecycleSettings
from recycler.run.budget import HEARTBEAT_LEASE_SECONDS
from recycler.run.context import AwsClients, EngineSetup
from recycler.run.engine import Recycler
from recycler.run.liveness import Liveness
from recycler.run.ports import RunPolicy

START_SECONDS = 40.0
DRAIN_SECONDS = 30.0
WAIT_TIME = 30


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


# The ceiling: no more calls per recycled task than at batch_size 1 before batches (about 11).
BATCH_ONE_CALLS = 11.0

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


@dataclass(frozen=True)
class DurableScenario:
    tasks: int
    batch_size: int
    # API calls per recycled task, counted as for the plain scenarios: a little above the measured 1.9
    # (200 tasks, batch_size 10), 9.1 (200, 1) and 2.7 (1,000, 10; ListTasks pages 100 ARNs at a time).
    calls_ceiling: float = BATCH_ONE_CALLS


# The run's EventBridge events: not the recycle's calls (see DurableResult.calls_per_task).
EVENT_OPERATIONS = frozenset({"PutEvents"})
# Run by default: the "200 tasks, batch_size 10, durable mode: <= 1.05 x the minimum".
DURABLE_DEFAULT = (DurableScenario(200, 10, calls_ceiling=2.2),)
# Slow to simulate (about 30 s and 50 s of real time): only with --durable.
DURABLE_SLOW = (DurableScenario(200, 1, calls_ceiling=10.0), DurableScenario(1000, 10, calls_ceiling=3.0))


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


def bench_service(sim: simulator.EcsSimulator, session: Any, tasks: int, jitter: float = 0.0) -> tuple[Any, Any]:
    """The benchmarked service, settled at `tasks` running, with a scalable target; returns ECS and AAS clients."""
    ecs = session.client("ecs", config=simulator.sim_client_config())
    autoscaling = session.client("application-autoscaling", config=simulator.sim_client_config())
    behaviour = simulator.Behaviour(
        start_seconds=START_SECONDS, drain_seconds=DRAIN_SECONDS, start_jitter_seconds=jitter
    )
    sim.create_service(ecs, "bench", "web", tasks, behaviour)
    simulator.register_target(autoscaling, "bench", "web", 1, tasks + 10)
    sim.observed = simulator.Observation()
    return ecs, autoscaling


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


def by_operation(calls: dict[str, int]) -> str:
    """API calls by operation, the most frequent first."""
    return ", ".join(f"{name} {count}" for name, count in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])))


# --------------------------------------------------------------------------- #
# Durable mode
# --------------------------------------------------------------------------- #

# The billing model. Measured: the real time each invocation spends in the handler here
# (replaying the checkpoint log, the engine, the simulated AWS calls, in-memory checkpoints).
# Added, for what an in-process run does not have:
API_LATENCY_SECONDS = 0.030  # per ECS / Application Auto Scaling call: a network round trip
CHECKPOINT_LATENCY_SECONDS = 0.030  # per CheckpointDurableExecution call
COLD_START_SECONDS = 1.5  # INIT (Python, boto3, the SDK) is billed; counted once, see the output
PLAIN_LAMBDA_LIMIT_SECONDS = 900


@dataclass
class DurableResult:
    tasks: int
    status: str
    recycled: int
    virtual_seconds: float
    minimum_seconds: float
    invocations: int
    measured_seconds: float
    api_calls: int
    checkpoints: int
    min_serving: int
    max_live: int
    real_seconds: float
    shutdown_seconds: float
    # Embedded Metric Format lines the run wrote (captured, not printed).
    emf_lines: int = 0
    # Every API call the run's boto3 clients made, by operation (attempts, the lock table's included),
    # counted as for the plain scenarios. ``api_calls`` above is what the simulator served of ECS,
    # Application Auto Scaling and DynamoDB, the billing model's figure.
    client_calls: dict[str, int] = field(default_factory=dict)

    @property
    def calls_per_task(self) -> float:
        # The recycle's calls, as the plain scenarios count them (their engine has no event bus): the run's
        # EventBridge events (one PutEvents per batch, plus Started and the outcome) are counted apart.
        recycle = sum(n for name, n in self.client_calls.items() if name not in EVENT_OPERATIONS)
        return recycle / self.recycled if self.recycled else float("nan")

    @property
    def billed_seconds(self) -> float:
        return (
            self.measured_seconds
            + self.invocations * self.shutdown_seconds
            + self.api_calls * API_LATENCY_SECONDS
            + self.checkpoints * CHECKPOINT_LATENCY_SECONDS
            + COLD_START_SECONDS
        )

    @property
    def billed_share(self) -> float:
        return self.billed_seconds / self.virtual_seconds if self.virtual_seconds else float("nan")


def run_durable(tasks: int, batch_size: int) -> DurableResult:
    import time

    from dev.durable_support import SDK_SHUTDOWN_POLL_SECONDS, Meter, durable_runner, fast_checkpoint_shutdown
    from recycler.hosts import durable, execution_name

    clock = simulator.VirtualClock()
    quiet = {"LOG_LEVEL": "CRITICAL"}  # the handler configures logging on every invocation
    with mock.patch.dict(os.environ, quiet), simulator.simulated_aws(clock) as (sim, session):
        bench_service(sim, session, tasks)
        sim.calls.clear()
        # The template's defaults: replacement_timeout_seconds 600, DurableExecutionTimeout 24 h.
        config = parse_config({"recycle": {"lock_table_name": simulator.create_lock_table(session)}})
        # The handler makes its clients from this session, so they inherit this counter (the lock table
        # made above is not counted).
        client_calls: dict[str, int] = {}

        def record(model: Any, **_: Any) -> None:
            client_calls[model.name] = client_calls.get(model.name, 0) + 1

        session.events.register("before-call.*.*", record)
        meter = Meter()
        handler = meter.wrap(durable.build_handler(clock=clock, session=session, config=config), sim)
        event = {"cluster_name": "bench", "service_name": "web", "wait_time": WAIT_TIME, "batch_size": batch_size}
        name = execution_name.durable_execution_name("bench", "web")
        started, real_started = clock.now(), time.perf_counter()
        # The run's EMF metric lines go to stdout, as in Lambda; here they would drown the table.
        emf_out = io.StringIO()
        with fast_checkpoint_shutdown(), meter.counting_checkpoints(), durable_runner(clock, handler) as runner:
            with contextlib.redirect_stdout(emf_out):
                outcome = runner.run(input=json.dumps(event), execution_timeout=900, execution_name=name)
        elapsed = clock.now() - started
        report = json.loads(outcome.result) if outcome.result else {}
        # A large report comes back with its task lists cut short, and their counts beside them.
        recycled = report.get("tasks_recycled_count", len(report.get("tasks_recycled", [])))
        invocations = meter.invocations
        return DurableResult(
            tasks=tasks,
            status=report.get("status", outcome.status.name.lower()),
            recycled=recycled,
            virtual_seconds=elapsed,
            minimum_seconds=START_SECONDS + -(-recycled // batch_size) * (START_SECONDS + WAIT_TIME),
            invocations=len(invocations),
            measured_seconds=sum(i.seconds for i in invocations),
            api_calls=sum(i.api_calls for i in invocations),
            checkpoints=sum(i.checkpoints for i in invocations),
            min_serving=sim.observed.min_serving["bench:web"],
            max_live=sim.observed.max_live["bench:web"],
            real_seconds=time.perf_counter() - real_started,
            shutdown_seconds=SDK_SHUTDOWN_POLL_SECONDS,
            emf_lines=sum(1 for line in emf_out.getvalue().splitlines() if '"_aws"' in line),
            client_calls=dict(client_calls),
        )


def durable_section(scenarios: list[DurableScenario]) -> list[str]:
    if not scenarios:
        return []
    print()
    print(
        f"Durable mode (Lambda durable functions): {START_SECONDS:.0f}s start, {DRAIN_SECONDS:.0f}s drain, "
        f"wait_time {WAIT_TIME}s, the template's defaults, poll 5s"
    )
    print(
        f"{'tasks':>6} {'batch':>6} {'status':>11} {'recycled':>9} {'virtual s':>10} {'minimum s':>10} {'ratio':>6} "
        f"{'calls/task':>11} {'invocations':>12} {'billed s':>9} {'billed/wall':>12} {'always-on s':>12} "
        f"{'min serving':>12} {'max live':>9}"
    )
    results = []
    for scenario in scenarios:
        r = run_durable(scenario.tasks, scenario.batch_size)
        results.append((scenario, r))
        print(
            f"{r.tasks:>6} {scenario.batch_size:>6} {r.status:>11} {r.recycled:>9} {r.virtual_seconds:>10.0f} "
            f"{r.minimum_seconds:>10.0f} {r.virtual_seconds / r.minimum_seconds:>6.3f} {r.calls_per_task:>11.1f} "
            f"{r.invocations:>12} {r.billed_seconds:>9.1f} {r.billed_share:>12.2%} {r.virtual_seconds:>12.0f} "
            f"{r.min_serving:>12} {r.max_live:>9}"
        )
    failures = []
    for scenario, r in results:
        print()
        print(f"{r.tasks} tasks, batch_size {scenario.batch_size}:")
        print("\n".join(billing_lines(r)))
        failures += durable_failures(scenario, r)
    return failures


def billing_lines(r: DurableResult) -> list[str]:
    always_on = r.virtual_seconds
    every_cold = r.billed_seconds + (r.invocations - 1) * COLD_START_SECONDS
    per_invocation_ms = 1000 * r.measured_seconds / max(r.invocations, 1)
    chained = -(-int(always_on) // PLAIN_LAMBDA_LIMIT_SECONDS)
    return [
        f"Billed compute = time not suspended, summed over the {r.invocations} invocations (model):",
        f"  {r.measured_seconds:8.1f} s  measured in the handler here: replay of the checkpoint log, engine, "
        f"simulated AWS calls, in-memory checkpoints ({per_invocation_ms:.0f} ms per invocation)",
        f"+ {r.invocations * r.shutdown_seconds:8.1f} s  the SDK's checkpoint thread stopping at the end of each "
        f"invocation ({r.shutdown_seconds * 1000:.0f} ms, its full stop-signal poll)",
        f"+ {r.api_calls * API_LATENCY_SECONDS:8.1f} s  network latency: {r.api_calls} ECS/autoscaling/lock table "
        f"calls x {API_LATENCY_SECONDS * 1000:.0f} ms",
        f"+ {r.checkpoints * CHECKPOINT_LATENCY_SECONDS:8.1f} s  {r.checkpoints} CheckpointDurableExecution calls "
        f"x {CHECKPOINT_LATENCY_SECONDS * 1000:.0f} ms",
        f"+ {COLD_START_SECONDS:8.1f} s  one cold start: no suspension lasts over {START_SECONDS + WAIT_TIME:.0f} s, "
        "and Lambda normally keeps an environment warm for minutes",
        f"= {r.billed_seconds:8.1f} s  billed: {r.billed_share:.2%} of the {r.virtual_seconds:.0f} s wall-clock "
        f"duration ({every_cold:.0f} s, {every_cold / r.virtual_seconds:.1%}, if every invocation were a cold start)",
        f"One always-running Lambda would bill the whole {always_on:.0f} s ({always_on / 3600:.1f} h), if that were "
        f"possible: an invocation stops at {PLAIN_LAMBDA_LIMIT_SECONDS} s, so it would take {chained} in a chain.",
        f"Metrics: {r.emf_lines} EMF lines written to stdout, as in Lambda (captured here, not printed).",
        f"({r.real_seconds:.0f} s of real time to simulate.)",
    ]


def durable_failures(scenario: DurableScenario, r: DurableResult) -> list[str]:
    tasks, batch_size = scenario.tasks, scenario.batch_size
    label = f"durable {tasks} tasks, batch {batch_size}"
    failures = []
    if r.status != "succeeded" or r.recycled != tasks:
        failures.append(f"{label}: {r.status}, {r.recycled} recycled")
    if r.min_serving < tasks:
        failures.append(f"{label}: serving capacity fell to {r.min_serving}")
    if r.emf_lines == 0:
        failures.append(f"{label}: no metrics were published")
    if r.max_live > tasks + batch_size:
        failures.append(f"{label}: {r.max_live} live tasks, more than N + batch_size")
    if r.billed_share >= 0.05:
        failures.append(f"{label}: billed compute {r.billed_share:.2%} of wall-clock >= 5%")
    if r.virtual_seconds / r.minimum_seconds > 1.05:
        failures.append(f"{label}: time ratio {r.virtual_seconds / r.minimum_seconds:.3f} > 1.05")
    if not r.calls_per_task <= scenario.calls_ceiling:
        failures.append(
            f"{label}: {r.calls_per_task:.2f} API calls per recycled task > {scenario.calls_ceiling} "
            f"({by_operation(r.client_calls)})"
        )
    return failures


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
    failures += fleet_section(START_SECONDS, DRAIN_SECONDS, WAIT_TIME)
    failures += durable_section(durable)
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
