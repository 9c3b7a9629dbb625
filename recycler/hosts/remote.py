"""The CLI against the deployed functions: ``--invoke FUNCTION`` starts a run there, ``--follow`` follows it.

A recycle is started asynchronously (InvocationType Event), so no client read timeout re-sends it the way
the AWS CLI re-sends a long synchronous ``aws lambda invoke``. A durable function is started through its
alias under the run's DurableExecutionName, so a second start is no second run either. ``--follow``
then asks the same function for ``status`` every few seconds until the run is over; without
``--invoke`` it follows the run going now (or reports the last one) through the lock table, as
``--status`` reads it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, Any

from recycler.aws import functions
from recycler.aws.gateway import error_code, start_execution
from recycler.hosts.config import AppConfig
from recycler.hosts.environment import Environment
from recycler.hosts.execution_name import durable_execution_name, durable_fleet_execution_name
from recycler.hosts.follow import Followed, Follower, exit_code
from recycler.hosts.handoff import ALREADY_STARTED
from recycler.hosts.progress import ProgressBar, wants_bar
from recycler.model.errors import AwsCallFailed, ConfigError
from recycler.model.fleet import FleetRequest
from recycler.model.progress import LiveProgress
from recycler.model.request import RecycleRequest
from recycler.model.runtime import Clock
from recycler.model.states import Action


def todays_run_key(now: float) -> str:
    """The run_key a start fills in when none is given: the UTC date, so the same command twice a day is one run."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")


@dataclass(frozen=True)
class Started:
    """A start in the deployed function: the function (a durable one's alias) that answers for the run, what to
    tell the operator, and whether the run had already been started (a durable execution under its name)."""

    function: str
    message: str
    already: bool = False


def start(
    lambda_client: Any, function_name: str, request: RecycleRequest | FleetRequest, event: Mapping[str, Any]
) -> Started:
    """Start the run (or the fleet) in the function. A durable start that already happened is no error: it is
    followed."""
    if not functions.is_durable(lambda_client, function_name):
        functions.start_async(lambda_client, function_name, dict(event))
        return Started(function_name, f"started {function_name} asynchronously")
    alias = functions.qualified(function_name)
    name = execution_name(request)
    try:
        start_execution(lambda_client, alias, name, json.dumps(dict(event)).encode())
    except AwsCallFailed as e:
        if error_code(e) != ALREADY_STARTED:
            raise
        return Started(alias, f"already started as {name} in {alias}: following it", already=True)
    return Started(alias, f"started {alias} as durable execution {name}")


def execution_name(request: RecycleRequest | FleetRequest) -> str:
    """The run's DurableExecutionName: one execution per service (or fleet selection) and run_key."""
    if isinstance(request, FleetRequest):
        template = request.template
        names, tags = request.names, request.tags
        return durable_fleet_execution_name(
            template.cluster_name, services=names, service_tags=tags, run_key=template.run_key
        )
    return durable_execution_name(request.cluster, request.service, request.run_key)


def invoke_client(request: RecycleRequest, config: AppConfig, env: Environment) -> Any:
    """The Lambda client ``--invoke`` starts a recycle with (a service's, or a fleet's template), refusing what is
    not a recycle to start: in the caller's own account, where the functions are, not a role the config assumes
    for the services."""
    from recycler.aws.session import get_aws_session

    if request.action != Action.RECYCLE or request.dry_run:
        raise ConfigError("invoke", "starts a recycle; ask for a dry run, status or history here, without --invoke")
    own = replace(config.aws, role_arn=None, external_id=None)
    return get_aws_session(own, env=env.aws).client("lambda")


def status_event(request: RecycleRequest) -> dict[str, str]:
    return {"cluster_name": request.cluster, "service_name": request.service, "action": "status"}


class Output:
    """Where a follow shows what it learns: a live bar on a terminal, else one JSON line per answer."""

    def __init__(self, title: str, json_lines: bool, stream: IO[str] = sys.stderr) -> None:
        self.bar = ProgressBar(title, stream) if wants_bar(stream, json_lines) else None

    def follow(self, follower: Callable[[Callable[[LiveProgress], None], Any], Followed]) -> Followed:
        if self.bar is None:
            return follower(lambda _: None, _print_answer)
        with self.bar as bar:
            followed = follower(bar, None)
            bar.finish(str(followed.status or "unknown"))
        return followed


def _print_answer(answer: Mapping[str, Any]) -> None:
    print(json.dumps(answer, default=str), flush=True)


def follow(
    ask_status: Callable[[], Mapping[str, Any]],
    clock: Clock,
    output: Output,
    since: float | None,
    run_key: str | None,
) -> int:
    """Follow the run to its end; the CLI's exit status for how it ended."""
    followed = output.follow(lambda show, line: Follower(ask_status, clock, show, line).follow(since, run_key))
    print(json.dumps({"followed": followed.status, "message": followed.message}), flush=True)
    return exit_code(followed.status)
