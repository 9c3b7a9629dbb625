"""The benchmark's durable rows: one service in the durable function, under the SDK's test runner on the
simulator's clock, with a model of the billed compute (see durable_section)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from unittest import mock

from dev import simulator
from dev.bench_common import (
    BATCH_ONE_CALLS,
    DRAIN_SECONDS,
    START_SECONDS,
    WAIT_TIME,
    bench_service,
    by_operation,
    count_client_calls,
)
from dev.durable_support import SDK_SHUTDOWN_POLL_SECONDS, Meter, durable_runner, fast_checkpoint_shutdown
from recycler.hosts import durable, execution_name
from recycler.hosts.config import parse_config


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
    clock = simulator.VirtualClock()
    quiet = {"LOG_LEVEL": "CRITICAL"}  # the handler configures logging on every invocation
    with mock.patch.dict(os.environ, quiet), simulator.simulated_aws(clock) as (sim, session):
        bench_service(sim, session, tasks)
        sim.calls.clear()
        # The template's defaults: replacement_timeout_seconds 600, DurableExecutionTimeout 24 h.
        config = parse_config({"recycle": {"lock_table_name": simulator.create_lock_table(session)}})
        # The handler makes its clients from this session, so they inherit this counter (the lock table
        # made above is not counted).
        client_calls = count_client_calls(session)
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
