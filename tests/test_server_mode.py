"""End to end over real HTTP: moto's server mode, reached through AWS_ENDPOINT_URL, by the real handler."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer
from support.bed import CLUSTER, SERVICE, load_event

from dev.simulator import LOCK_TABLE, EcsSimulator, FakeLambdaContext, VirtualClock, create_lock_table, register_target
from recycler.aws import session as aws_session
from recycler.hosts import plain
from recycler.hosts.config import parse_config
from recycler.lock.record import Phase
from recycler.lock.store import DynamoLockStore, lock_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EcsSimulator, VirtualClock, str]]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    clock = VirtualClock()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    # One attempt: moto's 500s must not be retried into a slow test.
    monkeypatch.setattr(aws_session, "CLIENT_CONFIG", Config(retries={"mode": "standard", "max_attempts": 1}))
    try:
        with EcsSimulator(clock) as sim:
            yield sim, clock, url
    finally:
        server.stop()


def test_handler_recycles_over_http(
    moto_server: tuple[EcsSimulator, VirtualClock, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, clock, url = moto_server
    session = boto3.Session(region_name="us-east-1")
    ecs: Any = session.client("ecs")
    assert ecs.meta.endpoint_url == url
    sim.create_service(ecs, CLUSTER, SERVICE, 3)
    register_target(session.client("application-autoscaling"), CLUSTER, SERVICE, 1, 3)
    monkeypatch.setenv("LOCK_TABLE_NAME", create_lock_table(session))
    before = sim.scalable_target(CLUSTER, SERVICE)
    handler = plain.build_handler(clock=clock, config=parse_config({}))

    result = handler(load_event("recycle.json"), FakeLambdaContext(clock))

    assert result["status"] == "succeeded", result["error"]
    assert len(result["tasks_recycled"]) == 3
    assert sim.observed.min_serving[f"{CLUSTER}:{SERVICE}"] >= 3
    assert sim.service(CLUSTER, SERVICE).desired_count == 3
    assert sim.scalable_target(CLUSTER, SERVICE) == before
    # AND the run's lock item is there, released, after the conditional writes went over HTTP too
    cluster_arn = ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0]["clusterArn"]
    lock = DynamoLockStore(session.client("dynamodb"), LOCK_TABLE).read(lock_key(cluster_arn, SERVICE))
    assert lock is not None and lock.phase == Phase.RELEASED and lock.owner == "req-0001"
