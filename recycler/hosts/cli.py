"""The local CLI: the same engine against real AWS, with input.json's credentials (python lambda_function.py).

Importing this module needs the standard library only (boto3 loads when a run starts), so that
durable_function.py's name CLI names flags the same way, through ``option_flags`` and ``flag_for``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import json
import os
import re
import select
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recycler.hosts.config import load_config
from recycler.model.errors import ConfigError, RecycleError
from recycler.model.request import parse_event
from recycler.model.settings import is_region_name
from recycler.observability import logs

if TYPE_CHECKING:
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
    # Each event field is an option whose dest is the field's name (--wait-time -> wait_time),
    # so a new field needs only its add_argument line here.
    options = [
        parser.add_argument("--cluster", dest="cluster_name", required=True, help="cluster name or ARN"),
        parser.add_argument("--service", dest="service_name", required=True, help="service name or ARN"),
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
        parser.add_argument(
            "--alarm-names", nargs="*", default=[], help="CloudWatch alarms that gate the run (up to 100 names)"
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
    actions = parser.add_mutually_exclusive_group()
    options += [
        actions.add_argument(f"--{action}", dest="action", action="store_const", const=action, help=help_text)
        for action, help_text in (
            ("status", "show the running recycle, if any (idle: the last run)"),
            ("history", "list the service's last 20 runs, newest first"),
            ("cancel", "ask a running recycle to stop"),
        )
    ]
    parser.add_argument("--config", help="path to input.json (default: beside this file, or $RECYCLE_CONFIG)")
    parser.add_argument("--region", help="AWS region (overrides awsCredentials.region_name and AWS_REGION)")
    return parser, option_flags(options)


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
    from recycler.hosts.plain import NOT_COMPLETED, get_config, new_owner_id
    from recycler.model.runtime import SystemClock

    env = Environment.from_env()
    logs.configure(env.log_level, lambda_json=env.lambda_json_logs, in_lambda=env.in_lambda)

    try:
        # A flag left unset that has no default (--max-tasks) is not sent at all.
        event = {field: getattr(args, field) for field in event_flags if getattr(args, field) is not None}
        request = parse_event(event)
        config = load_config(Path(args.config)) if args.config else get_config(env)
        if args.region is not None:
            if not is_region_name(args.region):
                raise ConfigError("region", "is not an AWS region name")
            config = dataclasses.replace(config, aws=dataclasses.replace(config.aws, region_name=args.region))
        asker = f"cli {getpass.getuser()}@{socket.gethostname()}"
        result = run_recycle(
            request,
            config,
            owner_id=new_owner_id("cli"),
            requested_by=asker,
            environment=env,
            # A signal wakes the real clock's sleeps, so the run acts on it within a poll.
            clock=clock or SystemClock(interrupts.sleep),
            interrupted=interrupts.reason,
        )
    except ConfigError as e:
        # Name the flag the user typed, not the event field it fills (wait_time -> --wait-time).
        flag = flag_for(e.field, {**event_flags, "region": "--region"})
        print(f"error: {flag}: {e.problem}", file=sys.stderr)
        return 2
    except RecycleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    # 2 as for any other refusal before a change (another run holds the service); 1 for a run that failed,
    # and for a dry run that found what the real run would refuse: a script can gate on it.
    if result.get("status") == "refused":
        return 2
    return 1 if result.get("status") in NOT_COMPLETED or result.get("would_refuse") else 0


def status_command(args: argparse.Namespace) -> str:
    """The command that shows this service's lock (what an operator checks after leaving a run)."""
    words = ["python", "lambda_function.py", "--cluster", args.cluster_name, "--service", args.service_name]
    for flag, value in (("--config", args.config), ("--region", args.region)):
        if value is not None:
            words += [flag, value]
    return shlex.join([*words, "--status"])


class Interrupts:
    """SIGINT and SIGTERM during a CLI run, counted.

    The first asks the run to stop as a cancel does: it stops no further task, lets the replacements in
    flight finish, restores, releases the lock and reports cancelled (the run reads ``reason``). The second
    says the restore is under way and keeps going. The third leaves at once: the lock stays, and the next run
    repairs the service from it. A signal also ends the run's current sleep (``sleep``, on a self-pipe), so
    the run acts within a poll. The handler writes with os.write only: a print could re-enter a stream the
    run was writing to when the signal came.
    """

    def __init__(self, status: str) -> None:
        self.status = status
        self.signals: list[int] = []
        self._pipe: tuple[int, int] | None = None

    def reason(self) -> str | None:
        """The first signal's name once one came (the run is then a cancelled one), else None."""
        return signal.Signals(self.signals[0]).name if self.signals else None

    def exit_code(self) -> int | None:
        return 128 + self.signals[0] if self.signals else None

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """The handlers for the run (the previous ones back after it); none outside the main thread."""
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self._pipe = (read, write)
        previous: dict[signal.Signals, Any] = {}
        try:
            if threading.current_thread() is threading.main_thread():
                for number in (signal.SIGINT, signal.SIGTERM):
                    previous[number] = signal.signal(number, self._on_signal)
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            self._pipe = None
            os.close(read)
            os.close(write)

    def sleep(self, seconds: float) -> None:
        """time.sleep, ended early by a signal that came during it (or since the last sleep)."""
        if self._pipe is None:
            time.sleep(seconds)
            return
        read = self._pipe[0]
        ready, _, _ = select.select([read], [], [], seconds)
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(read, 64):
                    pass

    def _on_signal(self, number: int, frame: Any) -> None:
        self.signals.append(number)
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._pipe[1], b"!")
        name = signal.Signals(number).name
        if len(self.signals) == 1:
            _say(
                f"{name}: stopping as a cancel does: no further task is stopped, the replacements in flight "
                "finish, then the service is restored and the lock released."
            )
        elif len(self.signals) == 2:
            _say(f"{name}: the restore is under way, keeping on with it. Interrupt once more to leave at once.")
        else:
            _say(
                f"{name}: leaving now, without finishing. The lock stays: the next run repairs the service "
                f"from it once it expires. Check it with: {self.status}"
            )
            os._exit(128 + self.signals[0])


def _say(line: str) -> None:
    """One line on stderr, from a signal handler: os.write, which takes no lock a print could hold."""
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), (line + "\n").encode())
