"""The hand-off: a plan too long for the plain invocation goes to the durable function, once, changing nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed, load_event
from support.handoff import FakeDurableAlias

from dev.simulator import FakeLambdaContext
from recycler.hosts import plain
from recycler.hosts.config import parse_config
from recycler.model.request import utc_text


def plain_handler(bed: Bed) -> Any:
    """The plain handler on the bed's virtual clock, with an input.json of defaults."""
    return plain.build_handler(clock=bed.clock, config=parse_config({}))


def _assert_nothing_changed(bed: Bed, before: dict[str, Any]) -> None:
    """No mutating ECS, Application Auto Scaling or DynamoDB call reached the backend, and the service is as it was."""
    # Not vacuous: the simulator saw the calls of the handler's own clients (it reads the service first).
    assert bed.sim.calls.get("describe_services", 0) > 0, bed.sim.calls
    bed.assert_nothing_changed(before)


def test_a_plan_too_long_for_the_invocation_is_handed_to_the_durable_function(
    bed: Bed, durable_alias: FakeDurableAlias
) -> None:
    # GIVEN 40 tasks, one at a time: about 50 minutes, in a 15-minute invocation
    bed.add_service(tasks=40, target=(1, 50))
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 30}
    before = bed.service_state()
    started = bed.clock.now()

    result = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-7"))

    # THEN exactly one asynchronous invoke of the alias, under a deterministic name, and nothing else changed:
    # no mutating ECS, Application Auto Scaling or DynamoDB call reached the backend (through the handler's own
    # clients), the lock table is empty, and the service equals its snapshot
    assert result["status"] == "handed_off"
    (invoke,) = durable_alias.invokes
    assert invoke["InvocationType"] == "Event" and invoke["FunctionName"].endswith("-durable:live")
    assert invoke["DurableExecutionName"] == result["handed_off"]["execution_name"]
    # (with this run's start as its cut-off: a carry-on of the execution never takes what this run's chain started)
    assert json.loads(invoke["Payload"]) == {**event, "hand_off": False, "started_before": utc_text(started)}
    _assert_nothing_changed(bed, before)
    bed.assert_restored()
    # AND a retry of the same invocation would start no second execution: the name is the same
    again = plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-7"))
    assert [i["DurableExecutionName"] for i in durable_alias.invokes] == [invoke["DurableExecutionName"]] * 2
    assert again["handed_off"]["execution_name"] == invoke["DurableExecutionName"]
    _assert_nothing_changed(bed, before)


@pytest.mark.parametrize("alarm", ["firing", "missing"])
def test_a_plan_too_long_is_not_handed_off_while_an_alarm_refuses_it(
    bed: Bed, durable_alias: FakeDurableAlias, alarm: str
) -> None:
    # GIVEN a plan too long for the plain, gated by an alarm that is in ALARM or does not exist
    bed.add_service(tasks=40, target=(1, 50))
    if alarm == "firing":
        bed.add_alarm("web-5xx")
        bed.sim.set_alarm("web-5xx", "ALARM", "5xx above 10")
    before = bed.service_state()
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "alarm_names": ["web-5xx"]}

    with pytest.raises(plain.RecycleNotCompleted, match="web-5xx"):
        plain_handler(bed)(event, FakeLambdaContext(bed.clock, 900, "req-8"))

    # THEN the refusal came before the hand-off: no durable execution started, nothing changed
    assert durable_alias.invokes == []
    _assert_nothing_changed(bed, before)


def test_a_plan_that_fits_is_not_handed_off_and_hand_off_false_does_what_fits(
    bed: Bed, durable_alias: FakeDurableAlias
) -> None:
    bed.add_service(tasks=2)
    fits = plain_handler(bed)(load_event("recycle.json"), FakeLambdaContext(bed.clock))
    assert fits["status"] == "succeeded" and durable_alias.invokes == []

    bed.add_service(tasks=30, service="api", target=(1, 40))
    event = {"cluster_name": CLUSTER, "service_name": "api", "hand_off": False}
    with pytest.raises(plain.RecycleNotCompleted, match="INCOMPLETE"):
        plain_handler(bed)(event, FakeLambdaContext(bed.clock))
    assert durable_alias.invokes == []


def test_a_dry_run_says_whether_it_would_hand_off(bed: Bed, durable_alias: FakeDurableAlias) -> None:
    bed.add_service(tasks=40, target=(1, 50))
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, "dry_run": True}
    plan = plain_handler(bed)(event, FakeLambdaContext(bed.clock))["plan"]
    assert plan["hand_off"]["would_hand_off"] is True and plan["hand_off"]["estimated_seconds"] > 900
    assert durable_alias.invokes == []
