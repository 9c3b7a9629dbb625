"""The invocation event, validated into a frozen RecycleRequest before any AWS call.

Every error names the field (``ConfigError.field``) and clips what it echoes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from recycler.model.errors import ConfigError, clip, shown
from recycler.model.fields import optional_bool, optional_int, require_str, unknown_keys
from recycler.model.states import Action

# Every pattern is ASCII-only and used with fullmatch: \d would take any Unicode
# digit, and $ would let a trailing newline through.
# ECS cluster and service names: up to 255 letters, numbers, hyphens and underscores.
_ECS_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}", re.ASCII)
_CLUSTER_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/(?P<name>[A-Za-z0-9_-]{1,255})", re.ASCII
)
# Services have a long form (service/<cluster>/<name>) and a legacy short form.
_SERVICE_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:ecs:[a-z0-9-]+:[0-9]{12}:service/"
    r"(?:(?P<cluster>[A-Za-z0-9_-]{1,255})/)?(?P<name>[A-Za-z0-9_-]{1,255})",
    re.ASCII,
)
MAX_WAIT_TIME_SECONDS = 900
DEFAULT_WAIT_TIME = 30
MAX_BATCH_SIZE = 100
# ECS runs at most 5,000 tasks per service.
MAX_TASKS_LIMIT = 5_000
# Ten years: an age beyond that is a typo, not a policy.
MAX_TASK_AGE_SECONDS = 10 * 365 * 86_400
ACTIONS = tuple(Action)
# DescribeAlarms takes up to 100 names in one call; that is also the most a run watches.
MAX_ALARMS = 100
# CloudWatch alarm names: 1-255 characters, printable, no control characters.
_ALARM_NAME = re.compile(r"[\x20-\x7e]{1,255}", re.ASCII)
# started_before: whole seconds in UTC, as the carry-on event and the report write it. An offset other
# than UTC, or none, would make the cut-off depend on whose clock reads it.
_UTC_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:Z|\+00:00)", re.ASCII)
_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# run_key: what names one run among a service's runs (the date, say); it also ends a durable execution name.
RUN_KEY = re.compile(r"[A-Za-z0-9_-]{1,20}", re.ASCII)
RUN_KEY_RULE = "must be 1-20 letters, digits, '-' or '_'"
# Checkpoints, as EC2 instance refresh has them: up to 10 percentages, and a hold of up to two days at each
# (one hour unless the event says otherwise).
MAX_CHECKPOINTS = 10
MAX_CHECKPOINT_DELAY_SECONDS = 172_800
DEFAULT_CHECKPOINT_DELAY_SECONDS = 3_600


def utc_text(epoch: float) -> str:
    """Epoch seconds as started_before takes them, rounded down to the second."""
    return datetime.fromtimestamp(math.floor(epoch), UTC).strftime(_UTC_FORMAT)


@dataclass(frozen=True)
class RecycleRequest:
    """One validated invocation: which service to recycle, and how."""

    cluster: str
    service: str
    maintain_service_state: bool = True
    wait_time: int = DEFAULT_WAIT_TIME
    dry_run: bool = False
    # Up to this many tasks are stopped at once; the surge is as large.
    batch_size: int = 1
    # Originals younger than this are left alone (and reported as skipped).
    min_task_age_seconds: int = 0
    # Recycle at most this many, the oldest first; None: all of them.
    max_tasks: int | None = None
    # Originals that started at or after this time (epoch seconds) are left alone: the tasks an earlier run
    # of a carry-on chain started. None: no cut-off.
    started_before: float | None = None
    # recycle (the default), status (read the lock, change nothing) or cancel (ask a running recycle to stop).
    action: Action = Action.RECYCLE
    # CloudWatch alarms that gate the run, besides the service's own deployment alarms (use_service_alarms).
    alarm_names: tuple[str, ...] = ()
    use_service_alarms: bool = True
    # A plan too long for this invocation starts the durable function instead (when the template set it up).
    hand_off: bool = True
    # Names this run: a second start under the same key while it runs answers already_running, not refused.
    run_key: str | None = None
    # Once this share of the run's tasks is recycled (percent, ascending), hold for checkpoint_delay_seconds
    # with the alarms watched, then go on.
    checkpoint_percentages: tuple[int, ...] = ()
    checkpoint_delay_seconds: int = 0

    @property
    def cluster_name(self) -> str:
        """The bare cluster name, whether the event gave a name or an ARN."""
        match = _CLUSTER_ARN.fullmatch(self.cluster)
        return match.group("name") if match else self.cluster

    @property
    def service_name(self) -> str:
        """The bare service name, whether the event gave a name or an ARN."""
        match = _SERVICE_ARN.fullmatch(self.service)
        return match.group("name") if match else self.service

    @property
    def cluster_arn_from_service(self) -> str | None:
        """The cluster's ARN, when the service was given as a long-form ARN (which names it); else None."""
        match = _SERVICE_ARN.fullmatch(self.service)
        if match is None or match.group("cluster") is None:
            return None
        prefix = self.service.split(":service/", 1)[0]
        return f"{prefix}:cluster/{match.group('cluster')}"

    def carry_on_started_before(self, run_started_at: float) -> str:
        """The cut-off for the event that carries on this run: its start, or the event's own if earlier.

        An age ("younger than the run") cannot say which tasks a run reached once the re-invocation comes
        later, or the originals were young themselves; a time can. Every task this run started, and
        every task an earlier run of the chain started, started at or after it.
        """
        cut_off = run_started_at if self.started_before is None else min(self.started_before, run_started_at)
        return utc_text(cut_off)

    def arn_fields(self) -> dict[str, tuple[str, str]]:
        """For each field the event gave as an ARN: its (region, account)."""
        fields = {}
        for name, value in (("cluster_name", self.cluster), ("service_name", self.service)):
            if value.startswith("arn:"):
                parts = value.split(":")
                fields[name] = (parts[3], parts[4])
        return fields

    def check_region(self, region: str | None) -> None:
        """An ARN from another region would be recycled by name in the session's region: refuse it first."""
        for name, (arn_region, _) in self.arn_fields().items():
            if region and arn_region != region:
                raise ConfigError(name, f"the ARN is in region {arn_region}, but the session is in {region}")


_EVENT_FIELDS = {
    "cluster_name",
    "service_name",
    "maintain_service_state",
    "wait_time",
    "dry_run",
    "batch_size",
    "min_task_age_seconds",
    "max_tasks",
    "started_before",
    "action",
    "alarm_names",
    "use_service_alarms",
    "hand_off",
    "run_key",
    "checkpoint_percentages",
    "checkpoint_delay_seconds",
}


# A fleet's own fields (recycler.model.fleet): an entry point that routes fleets never gets here with one.
FLEET_FIELDS = ("services", "service_tags", "max_parallel_services", "on_service_failure")


def parse_event(event: Any) -> RecycleRequest:
    """Validate a Lambda event (or CLI arguments shaped like one) of one service."""
    if not isinstance(event, Mapping):
        raise ConfigError("event", f"must be a JSON object, got {type(event).__name__}")
    fleet_field = next((name for name in FLEET_FIELDS if name in event), None)
    if fleet_field is not None:
        raise ConfigError(
            fleet_field,
            "is a fleet's field: this takes one service (service_name); a fleet runs in the standard or the "
            "durable function, or the local CLI",
        )
    unknown = unknown_keys(event, _EVENT_FIELDS)
    if unknown:
        raise ConfigError(
            clip(unknown[0]),
            f"unknown field (allowed: {', '.join(sorted(_EVENT_FIELDS))})",
        )
    cluster = require_str(event, "cluster_name")
    if not (_ECS_NAME.fullmatch(cluster) or _CLUSTER_ARN.fullmatch(cluster)):
        raise ConfigError(
            "cluster_name",
            "must be an ECS cluster name (1-255 letters, digits, '-' or '_') or a cluster ARN",
        )
    service = require_str(event, "service_name")
    service_arn = _SERVICE_ARN.fullmatch(service)
    if not (_ECS_NAME.fullmatch(service) or service_arn):
        raise ConfigError(
            "service_name",
            "must be an ECS service name (1-255 letters, digits, '-' or '_') or a service ARN",
        )
    request = RecycleRequest(
        cluster=cluster,
        service=service,
        maintain_service_state=optional_bool(event, "maintain_service_state", True),
        wait_time=optional_int(event, "wait_time", DEFAULT_WAIT_TIME, 0, MAX_WAIT_TIME_SECONDS),
        dry_run=optional_bool(event, "dry_run", False),
        batch_size=optional_int(event, "batch_size", 1, 1, MAX_BATCH_SIZE),
        min_task_age_seconds=optional_int(event, "min_task_age_seconds", 0, 0, MAX_TASK_AGE_SECONDS),
        max_tasks=optional_int(event, "max_tasks", None, 1, MAX_TASKS_LIMIT),
        started_before=_started_before(event),
        action=_action(event),
        alarm_names=_alarm_names(event),
        use_service_alarms=optional_bool(event, "use_service_alarms", True),
        hand_off=optional_bool(event, "hand_off", True),
        run_key=_run_key(event),
        checkpoint_percentages=_checkpoint_percentages(event),
        checkpoint_delay_seconds=_checkpoint_delay(event),
    )
    if service_arn and service_arn.group("cluster") not in (None, request.cluster_name):
        raise ConfigError(
            "service_name",
            f"ARN names cluster {shown(service_arn.group('cluster'))}, "
            f"but cluster_name is {shown(request.cluster_name)}",
        )
    return request


def _action(event: Mapping[str, Any]) -> Action:
    value = event.get("action", Action.RECYCLE)
    if not isinstance(value, str) or value not in ACTIONS:
        raise ConfigError("action", f"must be one of {', '.join(ACTIONS)}, got {shown(value)}")
    return Action(value)


def _checkpoint_percentages(event: Mapping[str, Any]) -> tuple[int, ...]:
    value = event.get("checkpoint_percentages", [])
    if not isinstance(value, list):
        raise ConfigError("checkpoint_percentages", f"must be a list of percentages, got {type(value).__name__}")
    if len(value) > MAX_CHECKPOINTS:
        raise ConfigError("checkpoint_percentages", f"holds {len(value)} percentages; at most {MAX_CHECKPOINTS}")
    for index, percent in enumerate(value):
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            raise ConfigError(f"checkpoint_percentages[{index}]", f"must be an integer 1-100, got {shown(percent)}")
        if index and percent <= value[index - 1]:
            raise ConfigError(f"checkpoint_percentages[{index}]", "must be greater than the one before it")
    return tuple(value)


def _checkpoint_delay(event: Mapping[str, Any]) -> int:
    if "checkpoint_delay_seconds" in event and not event.get("checkpoint_percentages"):
        raise ConfigError("checkpoint_delay_seconds", "needs checkpoint_percentages: a hold at which checkpoint?")
    default = DEFAULT_CHECKPOINT_DELAY_SECONDS if event.get("checkpoint_percentages") else 0
    return int(optional_int(event, "checkpoint_delay_seconds", default, 0, MAX_CHECKPOINT_DELAY_SECONDS))


def _run_key(event: Mapping[str, Any]) -> str | None:
    value = event.get("run_key")
    if value is None:
        return None
    if not isinstance(value, str) or not RUN_KEY.fullmatch(value):
        raise ConfigError("run_key", f"{RUN_KEY_RULE}, got {shown(value)}")
    return value


def _started_before(event: Mapping[str, Any]) -> float | None:
    value = event.get("started_before")
    if value is None:
        return None
    expected = 'must be an ISO 8601 UTC time such as "2026-12-02T10:00:00Z"'
    if not isinstance(value, str) or not _UTC_TIME.fullmatch(value):
        raise ConfigError("started_before", f"{expected}, got {shown(value)}")
    try:
        parsed = datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise ConfigError("started_before", f"{expected} (a real date and time), got {shown(value)}") from None
    return parsed.replace(tzinfo=UTC).timestamp()


def _alarm_names(event: Mapping[str, Any]) -> tuple[str, ...]:
    value = event.get("alarm_names", [])
    if not isinstance(value, list):
        raise ConfigError("alarm_names", f"must be a list of CloudWatch alarm names, got {type(value).__name__}")
    if len(value) > MAX_ALARMS:
        raise ConfigError("alarm_names", f"holds {len(value)} names; at most {MAX_ALARMS}")
    names: list[str] = []
    for index, name in enumerate(value):
        if not isinstance(name, str) or not _ALARM_NAME.fullmatch(name):
            raise ConfigError(
                f"alarm_names[{index}]", f"must be an alarm name (1-255 printable ASCII), got {shown(name)}"
            )
        if name not in names:
            names.append(name)
    return tuple(names)
