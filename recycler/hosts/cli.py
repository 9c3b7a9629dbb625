"""The local CLI: the same engine against real AWS, with input.json's credentials (python lambda_function.py).

Importing this module needs the standard library only (boto3 loads when a run starts), so that
durable_function.py's name CLI names flags the same way, through ``option_flags`` and ``flag_for``.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import re
import shlex
import signal
import socket
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recycler.hosts.config import load_config
from recycler.hosts.interrupts import Interrupts
from recycler.model.errors import ConfigError, RecycleError
from recycler.model.fleet import FleetRequest, is_fleet_event, parse_fleet_event
from recycler.model.request import parse_event
from recycler.model.settings import is_region_name
from recycler.model.states import Action
from recycler.observability import logs

if TYPE_CHECKING:
    from recycler.hosts.config import AppConfig
    from recycler.hosts.environment import Environment
    from recycler.model.progress import ProgressSink
    from recycler.model.request import RecycleRequest
    from recycler.model.runtime import Clock

# An item of a list field, as the event validation names it: alarm_names[0].
_ITEM = re.compile(r"(?P<field>.+?)(?P<index>\[[0-9]+\])?", re.ASCII)


def option_flags(options: Iterable[argparse.Action]) -> dict[str, str]:
    """The event field each option fills (its dest) and the flag the user types for it."""
    return {option.dest: option.option_strings[0] for option in options}


def flag_for(field: str, flags: Mapping[str, str]) -> str:
    """The flag the user typed for the field an error names: wait_time -> --wait-time, and an item of a
    list keeps its index: alarm_names[0] -> --alarm-names[0]. A field no flag fills keeps its name."""
    item = _ITEM.fullmatch(field)
    if item is None or item["field"] not in flags:
        return field
    return flags[item["field"]] + (item["index"] or "")


def run_recycle(request: Any, config: Any, **kwargs: Any) -> dict[str, Any]:
    """recycler.hosts.plain.run_recycle, imported here so that boto3 loads with the first run, not this module."""
    from recycler.hosts import plain as invocation

    return invocation.run_recycle(request, config, **kwargs)


def parser_and_flags() -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The CLI's parser, and the flag of each event field it fills."""
    parser = argparse.ArgumentParser(
        prog="lambda_function.py",
        description="Recycle an ECS service's tasks one at a time, against real AWS (credentials from input.json).",
    )
    options = _event_options(parser)
    _remote_options(parser)
    parser.add_argument("--json", action="store_true", help="JSON lines, never a progress bar (the default when piped)")
    parser.add_argument("--config", help="path to input.json (default: beside this file, or $RECYCLE_CONFIG)")
    parser.add_argument("--region", help="AWS region (overrides awsCredentials.region_name and AWS_REGION)")
    return parser, option_flags(options)


def _event_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """One option per event field."""
    # Each event field is an option whose dest is the field's name (--wait-time -> wait_time),
    # so a new field needs only its add_argument line here.
    options = [parser.add_argument("--cluster", dest="cluster_name", required=True, help="cluster name or ARN")]
    options += _selection_options(parser)
    options += [
        parser.add_argument("--wait-time", type=int, default=30, help="seconds to pause after each replacement"),
        parser.add_argument(
            "--no-maintain-service-state",
            dest="maintain_service_state",
            action="store_false",
            help="do not surge to N + batch_size while recycling (capacity may drop by batch_size)",
        ),
        parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing"),
        parser.add_argument("--batch-size", type=int, default=1, help="tasks stopped at once (1-100); surge as large"),
        parser.add_argument("--min-task-age-seconds", type=int, default=0, help="leave tasks younger than this alone"),
        parser.add_argument("--max-tasks", type=int, default=None, help="recycle at most this many, oldest first"),
        parser.add_argument(
            "--started-before",
            default=None,
            help="leave tasks started at or after this ISO 8601 UTC time alone, e.g. 2026-12-02T10:00:00Z "
            "(an incomplete run's carry-on event sets it)",
        ),
    ]
    options += _gate_options(parser)
    actions = parser.add_mutually_exclusive_group()
    options += [
        actions.add_argument(f"--{action}", dest="action", action="store_const", const=action, help=help_text)
        for action, help_text in (
            ("status", "show the running recycle, if any (idle: the last run)"),
            ("history", "list the service's last 20 runs, newest first"),
            ("cancel", "ask a running recycle to stop"),
        )
    ]
    options.append(
        parser.add_argument(
            "--run-key",
            default=None,
            help="name this run (1-20 letters, digits, - or _; --invoke fills in the UTC date): a second start "
            "while it runs answers already_running",
        )
    )
    return options


def _selection_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Which services: one (--service), or a fleet by names or by tags, with its parallelism and failure rule."""
    selection = parser.add_mutually_exclusive_group(required=True)
    return [
        selection.add_argument("--service", dest="service_name", help="service name or ARN"),
        selection.add_argument(
            "--services", nargs="+", default=None, help="a fleet: up to 100 service names or ARNs of the cluster"
        ),
        selection.add_argument(
            "--service-tags",
            nargs="+",
            type=_tag,
            default=None,
            metavar="KEY=VALUE",
            help="a fleet: every service of the cluster carrying all of these tags (up to 10)",
        ),
        parser.add_argument(
            "--max-parallel-services", type=int, default=None, help="a fleet's services surged at once (1-20; 1)"
        ),
        parser.add_argument(
            "--on-service-failure",
            default=None,
            help="a fleet: continue (the default) or stop (start no further service after one fails)",
        ),
    ]


def _tag(text: str) -> tuple[str, str]:
    """KEY=VALUE, split at the first '=' (a value may hold more)."""
    key, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _gate_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The event fields that gate the run, hold it, or say where it may go."""
    return [
        parser.add_argument(
            "--alarm-names", nargs="*", default=[], help="CloudWatch alarms that gate the run (up to 100 names)"
        ),
        parser.add_argument(
            "--checkpoint-percentages",
            nargs="*",
            type=int,
            default=[],
            help="hold once this share of the tasks is recycled, e.g. 25 50 (as instance refresh's checkpoints)",
        ),
        parser.add_argument(
            "--checkpoint-delay-seconds",
            type=int,
            default=None,
            help="how long each checkpoint holds, with the alarms watched (default 3600; up to 172800)",
        ),
        parser.add_argument(
            "--no-use-service-alarms",
            dest="use_service_alarms",
            action="store_false",
            help="do not add the service's own deployment alarms to the gate",
        ),
        parser.add_argument(
            "--no-hand-off",
            dest="hand_off",
            action="store_false",
            help="(Lambda only) never start the durable function for a plan too long for one invocation",
        ),
    ]


def _remote_options(parser: argparse.ArgumentParser) -> None:
    """Where the run happens when it is not here: the deployed function."""
    remote = parser.add_argument_group("the deployed function")
    remote.add_argument(
        "--invoke",
        metavar="FUNCTION",
        help="start the recycle in the deployed function (asynchronously; a durable one through its alias) "
        "instead of here",
    )
    remote.add_argument(
        "--follow",
        action="store_true",
        help="follow the run until it ends, as kubectl rollout status does (with --invoke: through the function; "
        "alone: the run going now, through the lock table); exit 0 succeeded, 1 failed, 2 refused, "
        "3 incomplete, 130 cancelled",
    )


def main(argv: list[str] | None = None, *, clock: Clock | None = None) -> int:
    """``python lambda_function.py``: the exit code. Tests pass a virtual clock.

    SIGINT or SIGTERM stops the run as a cancel does (Interrupts), and the exit code is then 128 + the signal's
    number: 130 for Ctrl-C, 143 for SIGTERM, whatever the report says."""
    parser, event_flags = parser_and_flags()
    args = parser.parse_args(argv)
    interrupts = Interrupts(status_command(args))
    try:
        with interrupts.installed():
            code = _run(args, event_flags, clock, interrupts)
    except KeyboardInterrupt:
        # Only before the handlers are in place (or after): never a traceback.
        return 128 + signal.SIGINT
    return interrupts.exit_code() or code


def _run(args: argparse.Namespace, event_flags: dict[str, str], clock: Clock | None, interrupts: Interrupts) -> int:
    from recycler.hosts.environment import Environment

    env = Environment.from_env()
    logs.configure(env.log_level, lambda_json=env.lambda_json_logs, in_lambda=env.in_lambda)
    try:
        # A flag left unset that has no default (--max-tasks) is not sent at all.
        event = {field: getattr(args, field) for field in event_flags if getattr(args, field) is not None}
        if "service_tags" in event:
            event["service_tags"] = dict(event["service_tags"])
        request = parse_fleet_event(event) if is_fleet_event(event) else parse_event(event)
        config = _config(args, env)
        if isinstance(request, FleetRequest):
            if args.invoke or args.follow:
                return _remote_fleet(args, request, config, event, env, clock)
        elif args.invoke or args.follow:
            return _remote(args, request, config, event, env, clock)
        return _local(args, request, config, env, clock, interrupts)
    except ConfigError as e:
        # Name the flag the user typed, not the event field it fills (wait_time -> --wait-time).
        flag = flag_for(e.field, {**event_flags, "region": "--region", "invoke": "--invoke", "follow": "--follow"})
        print(f"error: {flag}: {e.problem}", file=sys.stderr)
        return 2
    except RecycleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _config(args: argparse.Namespace, env: Environment) -> AppConfig:
    from recycler.hosts.plain import get_config

    config = load_config(Path(args.config)) if args.config else get_config(env)
    if args.region is not None:
        if not is_region_name(args.region):
            raise ConfigError("region", "is not an AWS region name")
        config = dataclasses.replace(config, aws=dataclasses.replace(config.aws, region_name=args.region))
    return config


def _local(
    args: argparse.Namespace,
    request: RecycleRequest | FleetRequest,
    config: AppConfig,
    env: Environment,
    clock: Clock | None,
    interrupts: Interrupts,
) -> int:
    """The run here, with a live bar on a terminal (JSON lines otherwise; a fleet's services run at once, so it
    has none); the report on stdout."""
    from recycler.hosts.plain import Watcher, new_owner_id
    from recycler.hosts.progress import ProgressBar, wants_bar
    from recycler.model.runtime import SystemClock

    def run(progress: ProgressSink | None) -> Mapping[str, Any]:
        return run_recycle(
            request,
            config,
            owner_id=new_owner_id("cli"),
            requested_by=f"cli {getpass.getuser()}@{socket.gethostname()}",
            environment=env,
            # A signal wakes the real clock's sleeps, so the run acts on it within a poll.
            clock=clock or SystemClock(interrupts.sleep),
            watcher=Watcher(interrupts.reason, progress),
        )

    if (
        not isinstance(request, FleetRequest)
        and request.action == Action.RECYCLE
        and not request.dry_run
        and wants_bar(sys.stderr, args.json)
    ):
        with ProgressBar(f"{request.cluster_name}/{request.service_name}", sys.stderr) as bar:
            result = run(bar)
            bar.finish(str(result.get("status")))
    else:
        result = run(None)
    print(json.dumps(result, indent=2, default=str))
    return outcome_exit_code(result)


def outcome_exit_code(result: Mapping[str, Any]) -> int:
    """0 for what was asked for: status, history and cancel answers, and a run an operator cancelled (its cancel
    was honoured; a Ctrl-C here exits 130 all the same). Else by outcome (recycler.hosts.follow): 1 failed, 2
    refused, 3 incomplete; and 1 for a dry run that found what the run would refuse."""
    from recycler.hosts.follow import exit_code

    answered = result.get("action") in (Action.STATUS, Action.HISTORY, Action.CANCEL)
    # A fleet's status, history or cancel is its services' answers, with no status of its own.
    if answered or (result.get("fleet") and "status" not in result) or result.get("status") == "cancelled":
        return 0
    return 1 if result.get("would_refuse") else exit_code(result.get("status"))


def _remote_fleet(
    args: argparse.Namespace,
    request: FleetRequest,
    config: AppConfig,
    event: Mapping[str, Any],
    env: Environment,
    clock: Clock | None,
) -> int:
    """``--invoke FUNCTION`` (and ``--follow``), or ``--follow`` alone, for a fleet (recycler.hosts.remote_fleet)."""
    from recycler.hosts import remote_fleet
    from recycler.hosts.plain import new_owner_id

    if args.invoke:
        watch = status_command(args)
        return remote_fleet.invoke_fleet(
            args.invoke, request, config, event, env, clock, watch, follow=args.follow, json_lines=args.json
        )

    def here(status: FleetRequest) -> Mapping[str, Any]:
        return run_recycle(status, config, owner_id=new_owner_id("cli"), environment=env, clock=clock)

    return remote_fleet.follow_here(request, here, clock, args.json)


def _remote(
    args: argparse.Namespace,
    request: RecycleRequest,
    config: AppConfig,
    event: Mapping[str, Any],
    env: Environment,
    clock: Clock | None,
) -> int:
    """``--invoke FUNCTION`` (and ``--follow``), or ``--follow`` alone: the run in the deployed function."""
    from recycler.aws import functions
    from recycler.hosts import remote
    from recycler.hosts.plain import new_owner_id
    from recycler.model.runtime import SystemClock

    clock = clock or SystemClock()
    output = remote.Output(f"{request.cluster_name}/{request.service_name}", args.json)
    if not args.invoke:
        status = dataclasses.replace(request, action=Action.STATUS)

        def local_status() -> Mapping[str, Any]:
            return run_recycle(status, config, owner_id=new_owner_id("cli"), environment=env, clock=clock)

        return remote.follow(local_status, clock, output, None, request.run_key)
    client = remote.invoke_client(request, config, env)
    since = clock.now()
    request = dataclasses.replace(request, run_key=request.run_key or remote.todays_run_key(since))
    started = remote.start(client, args.invoke, request, {**event, "run_key": request.run_key})
    print(json.dumps({"invoked": started.function, "message": started.message}), flush=True)
    if not args.follow:
        return 0
    asked = remote.status_event(request)
    return remote.follow(
        lambda: functions.ask(client, started.function, asked),
        clock,
        output,
        None if started.already else since,
        request.run_key,
    )


def status_command(args: argparse.Namespace) -> str:
    """The command that shows this service's lock (what an operator checks after leaving a run)."""
    if args.service_name is not None:
        selection = ["--service", args.service_name]
    elif args.services is not None:
        selection = ["--services", *args.services]
    else:
        selection = ["--service-tags", *(f"{key}={value}" for key, value in args.service_tags)]
    words = ["python", "lambda_function.py", "--cluster", args.cluster_name, *selection]
    for flag, value in (("--config", args.config), ("--region", args.region)):
        if value is not None:
            words += [flag, value]
    return shlex.join([*words, "--status"])
