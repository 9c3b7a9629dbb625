"""Where the lock table comes from: LOCK_TABLE_NAME, else input.json's recycle.lock_table_name; none refuses a recycle.

The Lambda functions get the table's name from the template's LOCK_TABLE_NAME. The CLI takes it from that
variable or from input.json. A mutating run without a table is refused with an error that says how to get
one, before any AWS call; a dry run works without one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.bed import CLUSTER, SERVICE, Bed

import lambda_function
from dev import simulator
from dev.simulator import FakeLambdaContext
from recycler.hosts import plain
from recycler.hosts.config import parse_config
from recycler.lock.record import LOCK_TABLE_ENV, Phase
from recycler.lock.store import DynamoLockStore
from recycler.model.errors import ConfigError

# A table only input.json names: a run that takes its lock here read the name from input.json.
CONFIG_TABLE = "locks-from-input-json"
EVENT = {"cluster_name": CLUSTER, "service_name": SERVICE, "wait_time": 5}


@pytest.fixture
def no_table_env(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> Bed:
    """The bed with LOCK_TABLE_NAME unset, and the entry points on its virtual clock."""
    monkeypatch.delenv(LOCK_TABLE_ENV)
    return bed


def handler(bed: Bed) -> Any:
    """The plain handler on the bed's virtual clock."""
    return plain.build_handler(clock=bed.clock, config=parse_config({"recycle": {"poll_interval_seconds": 5}}))


def _assert_nothing_changed(bed: Bed, before: dict[str, Any]) -> None:
    bed.assert_nothing_changed(before)
    assert bed.desired() == bed.snapshots[SERVICE]["desired"]


def _assert_says_how_to_get_a_table(problem: str) -> None:
    assert "cloudformation.yaml" in problem and "LockTableName" in problem
    assert "recycle.lock_table_name" in problem and "dry run works without one" in problem


def test_handler_recycle_without_lock_table_name_is_refused_and_changes_nothing(no_table_env: Bed) -> None:
    # GIVEN the plain handler with no LOCK_TABLE_NAME and no recycle.lock_table_name
    bed = no_table_env
    bed.add_service(tasks=3, target=(1, 6))
    before = bed.service_state()

    # WHEN a recycle is asked for, THEN a ConfigError names LOCK_TABLE_NAME and says how to get a table
    with pytest.raises(ConfigError) as caught:
        handler(bed)(dict(EVENT), FakeLambdaContext(bed.clock, 900, "req-1"))
    assert caught.value.field == LOCK_TABLE_ENV
    _assert_says_how_to_get_a_table(caught.value.problem)

    # AND it was refused before any AWS call: nothing reached the backend, the service is as it was
    assert bed.sim.calls == {}, bed.sim.calls
    _assert_nothing_changed(bed, before)


def test_handler_dry_run_without_lock_table_name_returns_the_plan(no_table_env: Bed) -> None:
    # GIVEN the plain handler with no lock table anywhere
    bed = no_table_env
    bed.add_service(tasks=3, target=(1, 6))
    before = bed.service_state()

    # WHEN a dry run is asked for, THEN it returns the plan, naming no lock table, and changes nothing
    result = handler(bed)({**EVENT, "dry_run": True}, FakeLambdaContext(bed.clock, 900, "req-2"))
    assert result["status"] == "dry_run"
    assert len(result["plan"]["tasks_to_stop"]) == 3
    assert result["plan"]["lock_table"] is None
    assert bed.sim.calls.get("describe_services", 0) > 0  # it really looked at the service
    _assert_nothing_changed(bed, before)


def _cli_config(tmp_path: Path, recycle: dict[str, Any]) -> list[str]:
    config = tmp_path / "input.json"
    config.write_text(json.dumps({"recycle": {"poll_interval_seconds": 5, **recycle}}))
    return ["--cluster", CLUSTER, "--service", SERVICE, "--wait-time", "5", "--config", str(config)]


def test_cli_takes_the_lock_table_from_input_json_when_lock_table_name_is_unset(
    no_table_env: Bed, tmp_path: Path, capsys: Any
) -> None:
    # GIVEN no LOCK_TABLE_NAME, and input.json naming a table of its own
    bed = no_table_env
    simulator.create_lock_table(bed.session, CONFIG_TABLE)
    bed.add_service(tasks=2, target=(1, 6))
    argv = _cli_config(tmp_path, {"lock_table_name": CONFIG_TABLE})

    # WHEN the CLI plans a run, THEN the plan names input.json's table
    assert lambda_function.main([*argv, "--dry-run"], clock=bed.clock) == 0
    assert json.loads(capsys.readouterr().out)["plan"]["lock_table"] == CONFIG_TABLE

    # WHEN the CLI recycles, THEN it succeeds and takes (and releases) its lock in that table, not the default one
    assert lambda_function.main(argv, clock=bed.clock) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    with bed.sim.unobserved():
        record = DynamoLockStore(bed.inspector.dynamodb, CONFIG_TABLE).read(bed.lock_key())
    assert record is not None and record.phase == Phase.RELEASED
    assert bed.lock_items(simulator.LOCK_TABLE) == []
    bed.assert_restored()


def test_cli_recycle_with_no_lock_table_anywhere_exits_2_naming_it(
    no_table_env: Bed, tmp_path: Path, capsys: Any
) -> None:
    # GIVEN neither LOCK_TABLE_NAME nor recycle.lock_table_name
    bed = no_table_env
    bed.add_service(tasks=2, target=(1, 6))
    before = bed.service_state()

    # WHEN the CLI recycles, THEN it exits 2 with one error naming the variable and the input.json key
    assert lambda_function.main(_cli_config(tmp_path, {}), clock=bed.clock) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {LOCK_TABLE_ENV}: a recycle needs the lock table"), captured.err
    _assert_says_how_to_get_a_table(captured.err)

    # AND nothing reached AWS
    assert bed.sim.calls == {}, bed.sim.calls
    _assert_nothing_changed(bed, before)
