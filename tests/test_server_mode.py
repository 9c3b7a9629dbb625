"""End to end over real HTTP: moto's server mode, reached through AWS_ENDPOINT_URL, by the real handler."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
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
    # moto's backends outlive a server: each test starts from none.
    urllib3.PoolManager().request("POST", f"{url}/moto-api/reset", timeout=10)
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


ROOT = Path(__file__).resolve().parent.parent


def _start_cli(tmp_path: Path, url: str) -> subprocess.Popen[str]:
    """`python lambda_function.py` against the moto server, polling every half second."""
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"recycle": {"poll_interval_seconds": 0.5}}))
    env = {**os.environ, "AWS_ENDPOINT_URL": url, "LOCK_TABLE_NAME": LOCK_TABLE, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "lambda_function.py", "--cluster", CLUSTER, "--service", SERVICE]
    return subprocess.Popen(
        [*command, "--wait-time", "0", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _surged_service(moto_server: tuple[EcsSimulator, VirtualClock, str]) -> tuple[Any, dict[str, Any] | None]:
    """A 3-task service with a 1..3 target (the surge widens it), its tasks' starts frozen on the virtual clock."""
    sim, _, _ = moto_server
    session = boto3.Session(region_name="us-east-1")
    sim.create_service(session.client("ecs"), CLUSTER, SERVICE, 3)
    register_target(session.client("application-autoscaling"), CLUSTER, SERVICE, 1, 3)
    create_lock_table(session)
    return session, sim.scalable_target(CLUSTER, SERVICE)


@pytest.mark.parametrize(("sent", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_on_the_cli_cancels_the_run_and_restores(
    moto_server: tuple[EcsSimulator, VirtualClock, str], tmp_path: Path, sent: signal.Signals, exit_code: int
) -> None:
    # GIVEN a CLI run, in its own process, that has surged a 3-task service (its new task frozen in PENDING)
    sim, clock, url = moto_server
    session, before = _surged_service(moto_server)
    process = _start_cli(tmp_path, url)
    _wait_for(lambda: sim.service(CLUSTER, SERVICE).desired_count == 4, process)

    # WHEN the operator presses Ctrl-C (or the shell sends SIGTERM), and the surge's task then starts
    process.send_signal(sent)
    time.sleep(1.0)
    clock.t += 120
    stdout, stderr = process.communicate(timeout=60)

    # THEN the run stopped as a cancel does: restored, the lock released, cancelled, exit 128 + signal, no traceback
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    report = json.loads(stdout)
    assert report["status"] == "cancelled" and f"interrupted by {sent.name}" in report["error"], report
    assert report["restored"] is True and report["tasks_recycled"] == []
    assert sim.service(CLUSTER, SERVICE).desired_count == 3
    assert sim.scalable_target(CLUSTER, SERVICE) == before
    ecs = session.client("ecs")
    cluster_arn = ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0]["clusterArn"]
    lock = DynamoLockStore(session.client("dynamodb"), LOCK_TABLE).read(lock_key(cluster_arn, SERVICE))
    assert lock is not None and lock.phase == Phase.RELEASED and lock.owner.startswith("cli-")


def test_a_third_ctrl_c_leaves_at_once_and_says_how_to_check_the_lock(
    moto_server: tuple[EcsSimulator, VirtualClock, str], tmp_path: Path
) -> None:
    # GIVEN a CLI run that has surged, its new task frozen, so the graceful stop waits for it
    sim, _, url = moto_server
    _surged_service(moto_server)
    process = _start_cli(tmp_path, url)
    _wait_for(lambda: sim.service(CLUSTER, SERVICE).desired_count == 4, process)

    # WHEN the operator presses Ctrl-C three times
    for _ in range(3):
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
    _, stderr = process.communicate(timeout=30)

    # THEN the second said the restore is under way, the third left at once naming --status; no traceback
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "the restore is under way" in stderr
    assert "the next run repairs the service from it" in stderr and "--status" in stderr
    # AND the service is left surged for the next run to repair, its lock held
    assert sim.service(CLUSTER, SERVICE).desired_count == 4
