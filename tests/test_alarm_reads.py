"""The alarm gate's cost: one DescribeAlarms call for up to 100 names, whatever the default page size."""

from __future__ import annotations

import math
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed

from recycler.aws.gateway import ServiceGateway
from recycler.model.request import parse_event


@pytest.mark.parametrize("count", [1, 100, 150])
def test_alarm_states_take_one_call_per_hundred_names_and_find_them_all(bed: Bed, count: int) -> None:
    names = [bed.add_alarm(f"alarm-{i:03d}") for i in range(count)]
    sent: list[dict[str, Any]] = []
    bed.cloudwatch.meta.events.register(
        "before-parameter-build.cloudwatch.DescribeAlarms", lambda params, **_: sent.append(dict(params))
    )
    request = parse_event({"cluster_name": CLUSTER, "service_name": SERVICE})
    reads = ServiceGateway(bed.ecs, bed.autoscaling, bed.elbv2, request, cloudwatch=bed.cloudwatch)

    states = reads.alarm_states(names)

    assert set(states) == set(names) and all(s["state"] == "OK" for s in states.values())
    # Each call asks for a whole page: no service default can split 100 names over several calls.
    assert len(sent) == math.ceil(count / 100)
    assert all(call["MaxRecords"] == 100 and len(call["AlarmNames"]) <= 100 for call in sent)
