"""What a person watching a run sees: the run's progress updates, and the terminal bar they drive.

A run tells its watcher what it learns (the counts, each batch, the service's serving/desired, every
warning); the bar folds those into one line. A run behaves the same with nobody watching.
"""

from __future__ import annotations

import io

from support.bed import CLUSTER, SERVICE, Bed
from support.terminal import Terminal

from recycler.hosts.progress import ProgressBar, describe, wants_bar
from recycler.model.progress import LiveProgress
from recycler.model.request import parse_event


def _watched_run(bed: Bed, **event: object) -> tuple[list[LiveProgress], object]:
    updates: list[LiveProgress] = []
    engine, _ = bed.engine(progress=updates.append)
    report = engine.run(parse_event({"cluster_name": CLUSTER, "service_name": SERVICE, **event}))
    return updates, report


def test_a_watched_run_reports_every_batch_in_order_and_ends_complete(bed: Bed) -> None:
    bed.add_service(tasks=5, target=(1, 8))

    updates, report = _watched_run(bed, wait_time=5, batch_size=2)

    assert report.status == "succeeded", report.error  # type: ignore[attr-defined]
    recycled = [u.recycled for u in updates if u.recycled is not None]
    batches = [u.batch for u in updates if u.batch is not None]
    # THEN the count only grows, one update per batch, and the last one says all five of three batches
    assert recycled == sorted(recycled) and recycled[0] == 0 and recycled[-1] == 5
    assert batches == [0, 1, 2, 3]
    folded = LiveProgress()
    for update in updates:
        folded = folded.updated(update)
    assert (folded.recycled, folded.total, folded.batches, folded.percent_complete) == (5, 5, 3, 100)
    # and the service's counts were seen while the replacements came up, surged above the five
    assert {u.desired for u in updates if u.desired is not None} >= {7}
    assert folded.eta_seconds == 0


def test_a_warning_becomes_the_last_event_a_watcher_sees(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(1, 6))
    oldest = min(bed.sim.tasks(CLUSTER, SERVICE), key=lambda t: t.started_at).task_arn
    bed.sim.protect(oldest, 3600)

    updates, _ = _watched_run(bed, wait_time=5)

    events = [u.event for u in updates if u.event]
    assert any("protected" in event for event in events), events


def test_a_run_with_a_watcher_does_what_one_without_does(bed: Bed) -> None:
    bed.add_service(tasks=3, target=(1, 6))
    _, watched = _watched_run(bed, wait_time=5)
    bed.assert_restored()
    bed.assert_capacity_held()
    assert len(watched.tasks_recycled) == 3  # type: ignore[attr-defined]


def test_the_bar_shows_count_percent_batch_serving_eta_and_the_outcome() -> None:
    out = io.StringIO()
    with ProgressBar("prod/web", out, width=200) as bar:
        bar(LiveProgress(recycled=0, total=4, batch=0, batches=2))
        bar(LiveProgress(serving=5, desired=6))
        bar(LiveProgress(recycled=2, batch=1, eta_seconds=95, event="Task 3 skipped: protected until 2026"))
        bar.finish("succeeded")
    shown = out.getvalue()
    assert "prod/web" in shown and "2/4" in shown and "50%" in shown
    assert "batch 1/2" in shown and "serving 5/6" in shown and "recycle succeeded" in shown
    assert "Task 3 skipped" in shown


def test_the_columns_say_what_is_not_known_yet_and_clip_a_long_event() -> None:
    columns = describe(LiveProgress(event="x" * 200))
    assert (columns.batch, columns.serving, columns.eta) == ("batch -", "serving -", "ETA -")
    assert len(columns.event) == 60
    assert describe(LiveProgress(eta_seconds=125)).eta == "ETA 2m05s"


def test_a_bar_only_for_a_person_at_a_terminal() -> None:
    assert wants_bar(Terminal(), json_lines=False)
    assert not wants_bar(Terminal(), json_lines=True)
    assert not wants_bar(io.StringIO(), json_lines=False)
