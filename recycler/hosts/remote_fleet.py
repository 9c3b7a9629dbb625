"""A fleet from the CLI against the deployed function: ``--services … --invoke FUNCTION`` starts the whole
fleet there (a durable function: one execution per selection and run_key), and ``--follow`` follows it to
its end (recycler.hosts.follow_fleet), through that function's ``status`` or, alone, through the lock table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from recycler.aws import functions
from recycler.hosts.config import AppConfig
from recycler.hosts.environment import Environment
from recycler.hosts.follow import exit_code
from recycler.hosts.follow_fleet import FleetFollower
from recycler.hosts.remote import Output, invoke_client, start, todays_run_key
from recycler.model.fleet import FleetRequest, parse_fleet_event
from recycler.model.fleet_report import FleetSelection
from recycler.model.runtime import Clock, SystemClock

Ask = Callable[[], Mapping[str, Any]]


class FleetStatusEvent(FleetSelection):
    """The event that asks a function for a fleet's status."""

    cluster_name: str
    action: str


def status_event(request: FleetRequest) -> FleetStatusEvent:
    return {"cluster_name": request.cluster, **request.selection(), "action": "status"}


def invoke_fleet(
    function_name: str,
    request: FleetRequest,
    config: AppConfig,
    event: Mapping[str, Any],
    env: Environment,
    clock: Clock | None,
    watch: str,
    *,
    follow: bool = False,
    json_lines: bool = False,
) -> int:
    """Start the fleet in the function (run_key: the UTC date when none is given); then follow it, or say how
    to watch it."""
    template, clock = request.template, clock or SystemClock()
    client = invoke_client(template, config, env)
    since = clock.now()
    run_key = template.run_key or todays_run_key(since)
    request = replace(request, template=replace(template, run_key=run_key))
    started = start(client, function_name, request, {**event, "run_key": run_key})
    print(json.dumps({"invoked": started.function, "message": started.message, "watch": watch}), flush=True)
    if not follow:
        return 0
    asked = status_event(request)
    return follow_fleet(
        lambda: functions.ask(client, started.function, dict(asked)),
        request,
        clock,
        None if started.already else since,
        json_lines,
    )


def follow_here(
    request: FleetRequest, ask_here: Callable[[FleetRequest], Mapping[str, Any]], clock: Clock | None, json_lines: bool
) -> int:
    """``--follow`` alone: the fleet run going now (or the last one), through the lock table."""
    status = parse_fleet_event(status_event(request))
    return follow_fleet(lambda: ask_here(status), request, clock or SystemClock(), None, json_lines)


def follow_fleet(ask: Ask, request: FleetRequest, clock: Clock, since: float | None, json_lines: bool) -> int:
    """Follow the fleet run to its end; the CLI's exit status for how it ended."""
    output = Output(f"{request.template.cluster_name} fleet (services)", json_lines)
    followed = output.follow(lambda show, line: FleetFollower(ask, clock, show, line).follow(since))
    print(json.dumps({"followed": followed.status, "message": followed.message}), flush=True)
    return exit_code(followed.status)
