"""Selecting a fleet's services (recycler.aws.services.fleet_services) on the simulator: by tag through every
ListServices page, by name with each name checked, DescribeServices ten at a time, and only ACTIVE services.

Every call it makes is checked against the template's role, and none of them changes anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import iam

from dev import simulator
from recycler.aws.services import fleet_services
from recycler.model.errors import AwsCallFailed, ConfigError

CLUSTER = "fleet"
TEMPLATE = Path(__file__).resolve().parent.parent / "cloudformation.yaml"


class Fleet:
    """A simulated cluster of idle services, and a record of every ECS call made on it."""

    def __init__(self, session: Any) -> None:
        self.ecs = session.client("ecs", config=simulator.sim_client_config())
        self.calls: list[dict[str, Any]] = []
        self.ecs.create_cluster(clusterName=CLUSTER)
        self.ecs.register_task_definition(
            family="app", containerDefinitions=[{"name": "app", "image": "x", "memory": 64}]
        )
        self.ecs.meta.events.register("before-parameter-build.ecs.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append({"operation": model.name, "params": dict(params)})

    def add(self, name: str, **tags: str) -> None:
        extra: dict[str, Any] = {"tags": [{"key": k, "value": v} for k, v in tags.items()]} if tags else {}
        self.ecs.create_service(cluster=CLUSTER, serviceName=name, taskDefinition="app", desiredCount=0, **extra)
        self.calls.clear()

    def operations(self, name: str) -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c["operation"] == name]


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with simulator.simulated_aws(simulator.VirtualClock()) as (_, session):
        yield Fleet(session)


def _iam_violations(fleet: Fleet) -> list[str]:
    region, account = simulator.REGION, simulator.ACCOUNT_ID
    calls = [
        call
        for recorded in fleet.calls
        for call in iam.calls_from_api("ecs", recorded["operation"], recorded["params"], region=region, account=account)
    ]
    scope = {"ArtifactBucket": "b", "ArtifactKey": "k.zip", "TargetClusterName": CLUSTER, "TargetServiceNames": "*"}
    return iam.check_calls(TEMPLATE, calls, scope, pseudo={"AWS::Region": region, "AWS::AccountId": account})


def test_tags_select_every_tagged_service_across_all_list_pages_describing_ten_at_a_time(fleet: Fleet) -> None:
    # GIVEN 250 services, every seventh tagged recycle=weekly (and some tagged with another value)
    expected = []
    for i in range(250):
        name = f"svc-{i:03d}"
        if i % 7 == 0:
            fleet.add(name, recycle="weekly", team="a")
            expected.append(name)
        else:
            fleet.add(name, recycle="monthly" if i % 2 else "never")
    # WHEN the fleet is selected by tag
    selected = fleet_services(fleet.ecs, CLUSTER, (), {"recycle": "weekly"})
    # THEN every tagged service is selected, sorted, and no other
    assert selected == expected
    # AND ListServices was read through all three of its pages
    assert len(fleet.operations("ListServices")) == 3
    # AND DescribeServices never named more than ten services, asked for tags, and saw each service once
    described = fleet.operations("DescribeServices")
    assert max(len(p["services"]) for p in described) == 10
    assert all(p["include"] == ["TAGS"] for p in described)
    assert sum(len(p["services"]) for p in described) == 250
    # AND the selection only read: every call is a List or Describe, and the role allows each of them
    assert {c["operation"] for c in fleet.calls} == {"ListServices", "DescribeServices"}
    assert _iam_violations(fleet) == []


def test_every_tag_must_match(fleet: Fleet) -> None:
    # GIVEN one service with both tags and others with one of them
    fleet.add("both", recycle="weekly", team="pay")
    fleet.add("only-recycle", recycle="weekly")
    fleet.add("other-team", recycle="weekly", team="web")
    # WHEN the fleet is selected by both tags THEN only the service carrying both is selected
    assert fleet_services(fleet.ecs, CLUSTER, (), {"recycle": "weekly", "team": "pay"}) == ["both"]


def test_a_deleted_service_is_not_selected_by_tag_or_by_name(fleet: Fleet) -> None:
    # GIVEN two tagged services, one of them deleted (INACTIVE, yet still listed and described)
    fleet.add("live", recycle="weekly")
    fleet.add("gone", recycle="weekly")
    fleet.ecs.delete_service(cluster=CLUSTER, service="gone")
    gone = fleet.ecs.describe_services(cluster=CLUSTER, services=["gone"])["services"]
    assert [s["status"] for s in gone] == ["INACTIVE"]
    # WHEN the fleet is selected by tag THEN the deleted one is left out
    assert fleet_services(fleet.ecs, CLUSTER, (), {"recycle": "weekly"}) == ["live"]
    # WHEN it is named THEN it is refused, named by its place in the list
    with pytest.raises(ConfigError) as refused:
        fleet_services(fleet.ecs, CLUSTER, ["live", "gone"], {})
    assert refused.value.field == "services[1]"
    assert "gone" in str(refused.value) and "INACTIVE" in str(refused.value)


def test_names_are_each_checked_ten_at_a_time_and_a_missing_one_is_named(fleet: Fleet) -> None:
    # GIVEN 25 services
    for i in range(25):
        fleet.add(f"svc-{i:02d}")
    names = [f"svc-{i:02d}" for i in reversed(range(25))]
    # WHEN all of them are named THEN all are selected, sorted, from three DescribeServices of at most ten
    assert fleet_services(fleet.ecs, CLUSTER, names, {}) == sorted(names)
    assert [len(p["services"]) for p in fleet.operations("DescribeServices")] == [10, 10, 5]
    assert fleet.operations("ListServices") == []
    assert _iam_violations(fleet) == []
    # WHEN one named service is not in the cluster THEN it is refused, naming its place and the service
    with pytest.raises(ConfigError) as refused:
        fleet_services(fleet.ecs, CLUSTER, [*names[:12], "nope", *names[12:]], {})
    assert refused.value.field == "services[12]"
    assert "nope" in str(refused.value) and CLUSTER in str(refused.value)


def test_an_arn_selects_its_service_and_one_of_another_cluster_is_refused_before_any_call(fleet: Fleet) -> None:
    fleet.add("web")
    fleet.add("api")
    arn = f"arn:aws:ecs:{simulator.REGION}:{simulator.ACCOUNT_ID}:service/{CLUSTER}/web"
    # GIVEN a name and an ARN of the same service, and another service WHEN selected THEN each name once
    assert fleet_services(fleet.ecs, CLUSTER, [arn, "api", "web"], {}) == ["api", "web"]
    fleet.calls.clear()
    # GIVEN an ARN of a service in another cluster WHEN selected THEN refused at its place, with no call made
    elsewhere = f"arn:aws:ecs:{simulator.REGION}:{simulator.ACCOUNT_ID}:service/other/web"
    with pytest.raises(ConfigError) as refused:
        fleet_services(fleet.ecs, CLUSTER, ["api", elsewhere], {})
    assert refused.value.field == "services[1]"
    assert fleet.calls == []


def test_tags_that_select_nothing_are_refused_naming_the_field(fleet: Fleet) -> None:
    # GIVEN services none of which carries the tag
    fleet.add("web", recycle="monthly")
    # WHEN the fleet is selected by that tag THEN ConfigError names service_tags and the cluster
    with pytest.raises(ConfigError) as refused:
        fleet_services(fleet.ecs, CLUSTER, (), {"recycle": "weekly"})
    assert refused.value.field == "service_tags"
    assert CLUSTER in str(refused.value) and "recycle=weekly" in str(refused.value)
    # AND an empty cluster is refused the same way
    fleet.ecs.create_cluster(clusterName="empty")
    with pytest.raises(ConfigError) as empty:
        fleet_services(fleet.ecs, "empty", (), {"recycle": "weekly"})
    assert empty.value.field == "service_tags"


def test_an_aws_error_comes_out_wrapped_naming_the_call(fleet: Fleet) -> None:
    # GIVEN a cluster that does not exist WHEN a fleet is selected in it by tag THEN AwsCallFailed names the call
    with pytest.raises(AwsCallFailed) as failed:
        fleet_services(fleet.ecs, "no-such-cluster", (), {"recycle": "weekly"})
    assert "ListServices" in str(failed.value)
    assert failed.value.__cause__ is not None
