"""The one email of a fleet run: what it says, and its plain-text and HTML bodies.

A fleet report (the FleetReport JSON, ``"fleet": true``) holds each service's own report. Its email is
one message for the whole fleet: the subject names the cluster and the services' counts, the body has
the totals, a table of the services and the services never started. recycler.notification.render sets
the headers and calls these for the bodies, so the single report's header checks apply unchanged.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recycler.notification.content import HEADLINES, SUCCESS_STATUSES, as_list, as_text, format_seconds, html_opening

# The services' outcomes in the order the subject and the totals name them: the good news first, then the worst.
OUTCOME_ORDER = ("succeeded", "failed", "refused", "incomplete", "cancelled", "dry_run", "handed_off")
# A service's error in the table: enough to see what happened; its whole text is in the JSON report.
ERROR_CLIP = 200


_OUTCOMES: dict[str, str] = {
    "succeeded": "every service succeeded",
    "dry_run": "nothing was changed; each service's plan is in the JSON report",
    "failed": "at least one service failed or was refused; the others are as the table shows",
    "incomplete": "at least one service ran out of time before all its tasks were recycled",
    "cancelled": "an operator cancelled it; no further service was started",
    "refused": "refused before any service started; nothing was changed",
}


@dataclass(frozen=True)
class ServiceRow:
    """One service's line in the table."""

    service: str
    outcome: str
    recycled: str  # "recycled/total"
    duration: str
    error: str


@dataclass(frozen=True)
class FleetSections:
    facts: list[tuple[str, str]]
    error: str | None
    rows: list[ServiceRow]
    not_started: list[str]


def is_fleet(report: Mapping[str, Any]) -> bool:
    return report.get("fleet") is True


def service_counts(report: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The services by outcome, in OUTCOME_ORDER then by name: the totals' if given, else counted."""
    totals = report.get("totals")
    given = totals.get("services") if isinstance(totals, Mapping) else None
    counts: dict[str, int] = {}
    if isinstance(given, Mapping):
        counts = {str(k): v for k, v in given.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}
    else:
        for entry in _services(report):
            status = as_text(entry.get("status"), "unknown")
            counts[status] = counts.get(status, 0) + 1
    # A service never started is in not_started, never among the outcomes.
    counts.pop("not_started", None)
    rank = {outcome: n for n, outcome in enumerate(OUTCOME_ORDER)}
    return sorted(counts.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def fleet_size(report: Mapping[str, Any]) -> int:
    """The services selected: those with an outcome and those never started."""
    return sum(n for _, n in service_counts(report)) + len(_not_started(report))


def counts_text(report: Mapping[str, Any]) -> str:
    """``18 succeeded, 2 failed of 20 services``; the services never started are counted too."""
    not_started = len(_not_started(report))
    parts = [f"{n} {outcome.replace('_', ' ')}" for outcome, n in service_counts(report)]
    if not_started:
        parts.append(f"{not_started} not started")
    size = fleet_size(report)
    return f"{', '.join(parts) or 'none'} of {size} service{'' if size == 1 else 's'}"


def fleet_where(report: Mapping[str, Any]) -> str:
    """The subject's part naming the fleet: ``prod (fleet: 18 succeeded, 2 failed of 20 services)``."""
    return f"{as_text(report.get('cluster'), 'unknown')} (fleet: {counts_text(report)})"


def fleet_headline(report: Mapping[str, Any]) -> str:
    status = report.get("status")
    word = HEADLINES.get(status, "UNKNOWN OUTCOME") if isinstance(status, str) else "UNKNOWN OUTCOME"
    return f"ECS fleet task recycle {word}: {fleet_where(report)}"


def build_fleet_sections(report: Mapping[str, Any]) -> FleetSections:
    totals = report.get("totals")
    totals = totals if isinstance(totals, Mapping) else {}
    services = _services(report)
    recycled = totals.get("tasks_recycled")
    if not isinstance(recycled, int):
        recycled = sum(len(as_list(s.get("tasks_recycled"))) for s in services)
    total = totals.get("task_total")
    if not isinstance(total, int):
        total = sum(t for s in services if isinstance(t := s.get("task_total"), int))
    facts = [
        ("Cluster", as_text(report.get("cluster"), "unknown")),
        ("Region", as_text(report.get("region"), "unknown")),
        ("Outcome", _describe_outcome(report)),
        ("Services", counts_text(report)),
        ("Tasks recycled", f"{recycled} of {total}"),
        ("Selected by", _describe_selection(report.get("selection"))),
        ("In parallel", _describe_parallel(report)),
        ("Duration", format_seconds(report.get("duration_seconds"))),
        ("Started at", as_text(report.get("started_at"), "unknown")),
    ]
    error = report.get("error")
    return FleetSections(
        facts=facts,
        error=as_text(error) if error else None,
        rows=[_row(entry) for entry in services],
        not_started=[as_text(name) for name in _not_started(report)],
    )


def render_fleet_text(report: Mapping[str, Any]) -> str:
    s = build_fleet_sections(report)
    width = max(len(label) for label, _ in s.facts) + 1
    lines = [fleet_headline(report), ""]
    lines += [f"{label + ':':<{width}} {value}" for label, value in s.facts]
    if s.error:
        lines += ["", "Error:", f"  {s.error}"]
    if s.rows:
        header = ("Service", "Outcome", "Recycled", "Duration", "Error")
        cells = [header] + [(r.service, r.outcome, r.recycled, r.duration, r.error) for r in s.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
        lines += ["", "Services:"]
        for row in cells:
            padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
            lines.append(("  " + "  ".join(padded) + "  " + row[-1]).rstrip())
    if s.not_started:
        lines += ["", "Services not started:"] + [f"  - {name}" for name in s.not_started]
    return "\n".join(lines) + "\n"


def render_fleet_html(report: Mapping[str, Any]) -> str:
    e = _html
    s = build_fleet_sections(report)
    parts = html_opening("ECS fleet task recycle", report.get("status"), fleet_headline(report), s.facts, s.error)
    if s.rows:
        parts += [
            "<h3>Services</h3>",
            '<table cellpadding="3"><tr><th align=left>Service</th><th align=left>Outcome</th>'
            "<th align=left>Recycled</th><th align=left>Duration</th><th align=left>Error</th></tr>",
        ]
        for r in s.rows:
            shade = "#1a7f37" if r.outcome in SUCCESS_STATUSES else "#cf222e"
            parts.append(
                f'<tr><td><code>{e(r.service)}</code></td><td style="color:{shade}">{e(r.outcome)}</td>'
                f"<td>{e(r.recycled)}</td><td>{e(r.duration)}</td><td>{e(r.error)}</td></tr>"
            )
        parts.append("</table>")
    if s.not_started:
        parts += ["<h3>Services not started</h3>", _html_list(s.not_started)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _row(entry: Mapping[str, Any]) -> ServiceRow:
    total = entry.get("task_total")
    error = " ".join(as_text(entry.get("error")).split())
    if len(error) > ERROR_CLIP:
        error = error[: ERROR_CLIP - 1] + "…"
    return ServiceRow(
        service=as_text(entry.get("service"), "unknown"),
        outcome=as_text(entry.get("status"), "unknown"),
        recycled=f"{len(as_list(entry.get('tasks_recycled')))}/{total if isinstance(total, int) else 'unknown'}",
        duration=format_seconds(entry.get("duration_seconds")),
        error=error,
    )


def _describe_outcome(report: Mapping[str, Any]) -> str:
    status = report.get("status")
    if isinstance(status, str) and status in _OUTCOMES:
        return _OUTCOMES[status]
    if status == "handed_off":
        handed = report.get("handed_off")
        name = as_text(handed.get("execution_name"), "unknown") if isinstance(handed, Mapping) else "unknown"
        return f"too long for one invocation: the durable execution {name} runs the fleet"
    return f"the report's status is {as_text(status, 'missing')!r}, which this version does not know"


def _describe_selection(selection: Any) -> str:
    if not isinstance(selection, Mapping):
        return "unknown"
    tags = selection.get("service_tags")
    if isinstance(tags, Mapping):
        return "every service tagged " + ", ".join(f"{as_text(k)}={as_text(v)}" for k, v in tags.items())
    return f"{len(as_list(selection.get('services')))} service(s) named in the event"


def _describe_parallel(report: Mapping[str, Any]) -> str:
    parallel = as_text(report.get("max_parallel_services"), "unknown")
    failure = as_text(report.get("on_service_failure"), "unknown")
    return f"at most {parallel} service(s) at a time; on a service's failure: {failure}"


def _services(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [entry for entry in as_list(report.get("services")) if isinstance(entry, Mapping)]


def _not_started(report: Mapping[str, Any]) -> list[Any]:
    return as_list(report.get("not_started"))


def _html(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li><code>{_html(i)}</code></li>" for i in items) + "</ul>"
