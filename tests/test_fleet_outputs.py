"""A fleet's email, metrics and events, made from real single-service reports: three services recycled on the
simulator (one succeeds, one fails, one is refused) and one never started, gathered in the fleet report's shape."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from support.bed import CLUSTER, Bed
from support.eventbridge import detail_types, subscribe
from support.fleet_dicts import fleet_dict
from support.smtp import smtp_server

from dev.simulator import Behaviour
from recycler.aws.eventbus import EventBus
from recycler.model.runtime import LocalRuntime
from recycler.notification.notifier import notify
from recycler.notification.settings import parse_notification_config
from recycler.observability import metrics
from recycler.run import events as run_events


@pytest.fixture
def fleet(bed: Bed) -> dict[str, Any]:
    """web recycles its 3 tasks, worker's replacements fail to start, billing's lock is held by another run."""
    bed.add_service(tasks=3, service="web", target=(1, 6))
    broken = Behaviour()
    bed.add_service(tasks=2, service="worker", target=(1, 4), behaviour=broken)
    broken.fail_next_starts = 99
    bed.add_service(tasks=2, service="billing")
    held = {"pk": bed.lock_key("billing"), "owner": "other-run", "expires_at": int(bed.clock.now()) + 600}
    bed.plant_lock(bed.expired_lock_item(**held))
    reports = [bed.run(service=name).to_dict() for name in ("web", "worker", "billing")]
    assert [r["status"] for r in reports] == ["succeeded", "failed", "refused"]
    return fleet_dict(reports, CLUSTER, not_started=["reports"], error="worker failed; reports not started")


def test_the_fleet_email_tabulates_the_real_reports_of_its_services(fleet: dict[str, Any]) -> None:
    # WHEN the fleet report is mailed through a real SMTP server
    with smtp_server("plain") as server:
        config = parse_notification_config(
            {"host": "127.0.0.1", "port": server.port, "security": "none", "from_email": "r@example.com"},
            {"to": ["ops@example.com"]},
        )
        result = notify(fleet, config)
        # THEN one message, whose subject names the cluster and the counts
        assert result["status"] == "sent", result
        [received] = server.handler.messages
    message = received.parsed()
    assert f"| {CLUSTER} (fleet: 1 succeeded, 1 failed, 1 refused, 1 not started of 4 services) |" in message["Subject"]
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    text = plain.get_content()
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ") and len(line.split()) > 2}
    # AND each service's row says its real outcome, recycled/total and duration, and its error, one line
    assert rows["web"].split()[1:3] == ["succeeded", "3/3"]
    assert rows["worker"].split()[1] == "failed" and "replacement" in rows["worker"].lower()
    assert rows["billing"].split()[1] == "refused" and "other-run" in rows["billing"]
    assert "Tasks recycled: " in text and "Services not started:" in text and "  - reports" in text


def test_the_fleet_metrics_total_the_real_reports(fleet: dict[str, Any]) -> None:
    (document,) = metrics.emf_documents(fleet)
    assert document["FleetServicesSucceeded"] == [1.0] and document["FleetServicesFailed"] == [2.0]
    assert document["FleetServicesNotStarted"] == [1.0]
    recycled = sum(len(s["tasks_recycled"]) for s in fleet["services"])
    total = sum(s["task_total"] or 0 for s in fleet["services"])
    assert document["FleetTasksRecycled"] == [float(recycled)] and document["FleetTaskTotal"] == [float(total)]
    assert recycled >= 3 and total >= 5
    json.dumps(document)


def test_the_fleet_events_follow_the_services_own(bed: Bed, fleet: dict[str, Any]) -> None:
    read = subscribe(bed.session, name="fleet-events")
    runtime = LocalRuntime(bed.clock, lambda: None, logging.getLogger("ecs-task-recycle"))
    run_events.fleet_started(EventBus(bed.events), runtime, fleet, run_id="fleet-1")
    run_events.fleet_finished(EventBus(bed.events), runtime, fleet, run_id="fleet-1")
    events = read()
    assert detail_types(events) == ["ECS Task Recycle Started", "ECS Task Recycle Failed"]
    done = events[-1]["detail"]
    assert done["fleet"] is True and done["services"] == ["web", "worker", "billing", "reports"]
    assert done["counts"]["services"] == {"succeeded": 1, "failed": 1, "refused": 1}
    assert done["counts"]["task_total"] == fleet["totals"]["task_total"]
    assert done["error"] == "worker failed; reports not started"


def _readme_fleet() -> dict[str, Any]:
    """The six services of the README's example."""

    def service(name: str, status: str, recycled: int = 5, seconds: float = 412.0, error: str | None = None) -> Any:
        return {
            "service": name,
            "status": status,
            "cluster": "prod",
            "task_total": 5,
            "tasks_recycled": [{"seconds": 40.0}] * recycled,
            "duration_seconds": seconds,
            "error": error,
        }

    services = [service(name, "succeeded") for name in ("web", "api", "search", "checkout")]
    stopped = "3 replacement tasks stopped before becoming healthy; last stoppedReason: CannotPullContainerError"
    services.append(service("worker", "failed", 2, 380.5, stopped))
    held = "another run (3f1c2b9e) holds the lock on billing until 2026-11-29T03:40:00+00:00"
    services.append(service("billing", "refused", 0, 0.4, held))
    return {
        "fleet": True,
        "status": "failed",
        "cluster": "prod",
        "region": "eu-west-1",
        "started_at": "2026-11-29T03:00:00+00:00",
        "duration_seconds": 1651.2,
        "selection": {"service_tags": {"recycle": "weekly"}},
        "max_parallel_services": 2,
        "on_service_failure": "continue",
        "totals": {"services": {"succeeded": 4, "failed": 1, "refused": 1}, "tasks_recycled": 22, "task_total": 30},
        "services": services,
        "not_started": [],
        "error": "1 service failed and 1 was refused: worker, billing",
        "error_type": None,
    }


def test_the_readme_shows_the_fleets_email_metrics_and_event_as_the_code_makes_them() -> None:
    import re
    from datetime import UTC, datetime
    from pathlib import Path

    from recycler.notification.render import render_message

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### The fleet's email, metrics and events\n", 1)[1].split("\n### ", 1)[0]
    fleet = _readme_fleet()
    # The email: subject, then the plain-text part, as rendered
    blocks = re.findall(r"^```(json)?\n(.*?)\n```$", section, flags=re.DOTALL | re.MULTILINE)
    (email,) = [text for kind, text in blocks if not kind]
    config = parse_notification_config(
        {"host": "smtp.example.com", "from_email": "r@example.com"},
        {"to": ["ops@example.com"], "email_subject": "ECS Service Task Recycle Completed"},
    )
    assert config is not None
    message = render_message(fleet, config, now=datetime(2026, 11, 29, 3, 28, tzinfo=UTC))
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert email + "\n" == f"{message['Subject']}\n\n{plain.get_content()}"
    # The EMF line and the event: valid JSON, as the code makes them (the timestamp aside)
    emf, event = [json.loads(text) for kind, text in blocks if kind]
    (document,) = metrics.emf_documents(fleet)
    assert {**emf, "_aws": {**emf["_aws"], "Timestamp": 0}} == {
        **document,
        "_aws": {**document["_aws"], "Timestamp": 0},
    }
    final = run_events.fleet_final_event(fleet, "fleet-3f1c2b9e")
    assert final is not None
    assert event == {
        "source": final.source,
        "detail-type": final.detail_type,
        "resources": [],
        "detail": json.loads(final.detail),
    }
