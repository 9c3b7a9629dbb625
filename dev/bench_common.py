"""What the benchmark's rows share: the simulated service's timings, the benchmarked service, the call counts."""

from __future__ import annotations

from typing import Any

from dev import simulator

START_SECONDS = 40.0
DRAIN_SECONDS = 30.0
WAIT_TIME = 30

# The ceiling: no more calls per recycled task than at batch_size 1 before batches (about 11).
BATCH_ONE_CALLS = 11.0


def bench_service(
    sim: simulator.EcsSimulator, session: Any, tasks: int, jitter: float = 0.0, name: str = "web"
) -> tuple[Any, Any]:
    """A benchmarked service, settled at `tasks` running, with a scalable target; returns ECS and AAS clients."""
    ecs = session.client("ecs", config=simulator.sim_client_config())
    autoscaling = session.client("application-autoscaling", config=simulator.sim_client_config())
    behaviour = simulator.Behaviour(
        start_seconds=START_SECONDS, drain_seconds=DRAIN_SECONDS, start_jitter_seconds=jitter
    )
    sim.create_service(ecs, "bench", name, tasks, behaviour)
    simulator.register_target(autoscaling, "bench", name, 1, tasks + 10)
    sim.observed = simulator.Observation()
    return ecs, autoscaling


def by_operation(calls: dict[str, int]) -> str:
    """API calls by operation, the most frequent first."""
    return ", ".join(f"{name} {count}" for name, count in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])))


def count_client_calls(session: Any) -> dict[str, int]:
    """Every API call the clients made from this session will make, by operation (attempts, as AWS bills and
    throttles them): a durable handler makes its own clients from the session it is given."""
    calls: dict[str, int] = {}

    def record(model: Any, **_: Any) -> None:
        calls[model.name] = calls.get(model.name, 0) + 1

    session.events.register("before-call.*.*", record)
    return calls


def service_minimums(sim: simulator.EcsSimulator, started: float, wait_time: int) -> dict[str, float]:
    """Each service's inherent minimum: the slowest start of each batch it launched (the surge first), plus
    wait_time for each batch of replacements."""
    batches: dict[str, dict[float, float]] = {}
    for meta in sim.meta.values():
        if meta.launched_at >= started:
            service = batches.setdefault(meta.service_key, {})
            service[meta.launched_at] = max(service.get(meta.launched_at, 0.0), meta.running_at - meta.launched_at)
    return {key: sum(starts.values()) + (len(starts) - 1) * wait_time for key, starts in batches.items()}
