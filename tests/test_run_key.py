"""run_key names a run: a second start of a run that is still going answers already_running with that run's
progress. It is not refused, not FAILED, mails nothing, and changes nothing."""

from __future__ import annotations

import pytest
from notification.helpers import config_for, smtp_section
from support.bed import CLUSTER, SERVICE, Bed

from recycler.hosts.execution_name import durable_execution_name
from recycler.model.errors import ConfigError, LockCorrupt
from recycler.model.request import parse_event
from recycler.notification.notifier import notify


def _running_lock(bed: Bed, run_key: str | None) -> None:
    """A live run (another process) surged 3 -> 4, one task of three done, under run_key."""
    now = int(bed.clock.now())
    overrides = {"expires_at": now + 600, "owner": "cli alice@host"}
    item = bed.expired_lock_item(**overrides)
    if run_key is not None:
        item["run_key"] = run_key
    bed.plant_lock(item)


def test_a_second_start_of_the_same_run_answers_already_running_and_changes_nothing(bed: Bed) -> None:
    # GIVEN a service that a run started under run_key 20261204 is recycling (surged to 4)
    bed.add_service(tasks=3, target=(2, 6))
    bed.sim.set_desired(CLUSTER, SERVICE, 4)
    _running_lock(bed, "20261204")
    before = bed.desired()

    # WHEN the same run is started again
    report = bed.run(run_key="20261204")

    # THEN it says the run is already going, with its progress, and it neither refused nor failed
    assert report.status == "already_running"
    assert report.error is None and report.error_type is None
    assert report.lock_holder is not None
    assert report.lock_holder["owner"] == "cli alice@host"
    assert (report.lock_holder["run_key"], report.lock_holder["recycled"], report.lock_holder["total"]) == (
        "20261204",
        1,
        3,
    )
    # and the service is exactly as the running run has it
    assert bed.desired() == before
    assert not bed.originals_stopped()


@pytest.mark.parametrize("ours", [None, "20261205"])
def test_another_run_key_or_none_is_still_refused_by_the_lock(bed: Bed, ours: str | None) -> None:
    bed.add_service(tasks=3, target=(2, 6))
    bed.sim.set_desired(CLUSTER, SERVICE, 4)
    _running_lock(bed, "20261204")

    report = bed.run(run_key=ours) if ours else bed.run()

    assert (report.status, report.error_type) == ("refused", "LockHeld")


def test_a_run_without_a_key_held_by_one_with_a_key_is_refused(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(2, 6))
    bed.sim.set_desired(CLUSTER, SERVICE, 4)
    _running_lock(bed, None)

    report = bed.run(run_key="20261204")

    assert (report.status, report.error_type) == ("refused", "LockHeld")


def test_the_run_key_is_kept_on_the_lock_while_the_run_holds_it(bed: Bed) -> None:
    bed.add_service(tasks=2, target=(1, 4))
    seen: list[object] = []
    bed.sim.at(40, "read the lock", lambda: seen.append(bed.lock_items()[0].get("run_key")))

    report = bed.run(run_key="weekly-7", wait_time=5)

    assert report.status == "succeeded", report.error
    assert seen == [{"S": "weekly-7"}]


@pytest.mark.parametrize("value", ["", "has space", "x" * 21, 7, "semi;colon", "tab\t"])
def test_a_bad_run_key_is_named_before_any_aws_call(value: object) -> None:
    with pytest.raises(ConfigError) as error:
        parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, "run_key": value})
    assert error.value.field == "run_key"


def test_the_durable_execution_name_and_the_event_share_one_run_key_rule() -> None:
    assert parse_event({"cluster_name": "c", "service_name": "s", "run_key": "a_b-9"}).run_key == "a_b-9"
    assert durable_execution_name("c", "s", "a_b-9").endswith("-a_b-9")
    with pytest.raises(ConfigError):
        durable_execution_name("c", "s", "a b")


def test_a_forged_run_key_on_the_lock_item_is_corrupt(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(2, 6))
    item = bed.expired_lock_item(expires_at=int(bed.clock.now()) + 600)
    item["run_key"] = "x; rm -rf /"
    bed.plant_lock(item)

    report = bed.run(run_key="20261204")

    assert report.error_type == LockCorrupt.__name__


def test_already_running_mails_nothing() -> None:
    # GIVEN a relay nobody listens on: an attempt to send would report failed
    config = config_for(smtp_section(1))
    result = notify({"status": "already_running", "cluster": CLUSTER, "service": SERVICE}, config)
    assert (result["status"], result["recipients"]) == ("skipped", 0)
