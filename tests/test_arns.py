"""Events naming the service by an ARN of another region or account: refused, naming the field, changing nothing."""

from __future__ import annotations

from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed
from support.invariants import MUTATING

from dev.simulator import FakeLambdaContext
from recycler.hosts import plain
from recycler.hosts.config import parse_config
from recycler.model.errors import ConfigError
from recycler.model.request import parse_event


def plain_handler(bed: Bed) -> Any:
    """The plain handler on the bed's virtual clock, with an input.json of defaults."""
    return plain.build_handler(clock=bed.clock, config=parse_config({}))


@pytest.mark.parametrize(
    ("field", "arn", "problem"),
    [
        ("cluster_name", f"arn:aws:ecs:eu-west-1:123456789012:cluster/{CLUSTER}", "region eu-west-1"),
        ("service_name", f"arn:aws:ecs:eu-west-1:123456789012:service/{CLUSTER}/{SERVICE}", "region eu-west-1"),
    ],
)
def test_an_arn_of_another_region_is_refused_before_any_aws_call(
    bed: Bed, field: str, arn: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a service in us-east-1, and an event naming it by an ARN of eu-west-1
    bed.add_service(tasks=2)
    event = {"cluster_name": CLUSTER, "service_name": SERVICE, field: arn}

    # WHEN the handler gets it, THEN a ConfigError names the field, and no AWS call was made
    with pytest.raises(ConfigError) as caught:
        plain_handler(bed)(event, FakeLambdaContext(bed.clock))
    assert caught.value.field == field and problem in caught.value.problem
    assert bed.sim.calls == {}


@pytest.mark.parametrize("field", ["cluster_name", "service_name"])
def test_an_arn_of_another_account_is_refused_before_anything_changes(bed: Bed, field: str) -> None:
    # GIVEN an event naming the service by an ARN of another account (the session reaches 123456789012)
    bed.add_service(tasks=2, target=(1, 4))
    arns = {
        "cluster_name": f"arn:aws:ecs:us-east-1:210987654321:cluster/{CLUSTER}",
        "service_name": f"arn:aws:ecs:us-east-1:210987654321:service/{CLUSTER}/{SERVICE}",
    }
    engine, _ = bed.engine()

    # WHEN it runs
    report = engine.run(parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, field: arns[field]}))

    # THEN it is refused naming the field and the account, and nothing was changed
    assert report.status == "failed" and report.error_type == "ConfigError"
    assert (report.error or "").startswith(f"{field}: the ARN's account is 210987654321")
    assert MUTATING.isdisjoint(bed.calls) and "PutItem" not in bed.calls
    bed.assert_restored()
