"""A fleet event: several services of one cluster in one event, each recycled by the single-service run.

``services`` (names or ARNs) or ``service_tags`` replace ``service_name``; every other field applies to each
service and is validated here, before any AWS call, by parsing the event once as a single-service one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from recycler.model.errors import ConfigError, clip, shown
from recycler.model.fields import optional_int
from recycler.model.fleet_report import FleetSelection
from recycler.model.request import _SERVICE_ARN, RecycleRequest, parse_event
from recycler.model.request import FLEET_FIELDS as FLEET_FIELDS
from recycler.model.states import OnServiceFailure

SELECTORS = ("service_name", "services", "service_tags")
MAX_SERVICES = 100
MAX_SERVICE_TAGS = 10
MAX_PARALLEL_SERVICES = 20
# ECS tag rules: a key of 1-128 characters, a value of 0-256, of letters, digits, spaces and + - = . _ : / @.
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256
_TAG_TEXT = re.compile(r"[\w\s+\-=.:/@]*")
# The service name a fleet's shared fields are validated with: never looked up.
_PLACEHOLDER = "fleet"


def is_fleet_event(event: Any) -> bool:
    """Whether the event selects a fleet (any of the fleet's fields): it goes to the fleet runner, not parse_event."""
    return isinstance(event, Mapping) and any(name in event for name in FLEET_FIELDS)


@dataclass(frozen=True)
class FleetRequest:
    """One validated fleet event: which services of the cluster, how many at once, and what a failure does."""

    # As the event gave them (names or ARNs); empty when service_tags selects.
    services: tuple[str, ...] = ()
    service_tags: tuple[tuple[str, str], ...] = ()
    max_parallel_services: int = 1
    on_service_failure: OnServiceFailure = OnServiceFailure.CONTINUE
    # The event without its selection: what each service's run is parsed from.
    shared: Mapping[str, Any] = field(default_factory=dict, compare=False)
    # The shared fields, validated: action, dry_run, gates and the rest, as each service's run has them.
    template: RecycleRequest = field(default_factory=lambda: RecycleRequest("fleet", _PLACEHOLDER), compare=False)

    @property
    def cluster(self) -> str:
        """The cluster as the event gave it (a name or an ARN)."""
        return self.template.cluster

    @property
    def names(self) -> tuple[str, ...]:
        """The services given, as bare names (an ARN's name)."""
        return tuple(_bare(value) for value in self.services)

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.service_tags)

    def for_service(self, name: str) -> RecycleRequest:
        """The single-service request for one of the fleet's services (the same event with ``service_name``)."""
        return parse_event({**self.shared, "service_name": name})

    def digest(self) -> str:
        """A short hash of the cluster and the selection (the names sorted, or the tags): the same fleet, the same
        digest; another selection, another."""
        selection = json.dumps([sorted(self.names), sorted(self.tags.items())])
        return hashlib.sha256(f"{self.template.cluster_name}/{selection}".encode()).hexdigest()[:10]

    def selection(self) -> FleetSelection:
        """The report's selection, as the event made it."""
        if self.services:
            return {"services": list(self.services)}
        return {"service_tags": self.tags}

    def check_region(self, region: str | None) -> None:
        """An ARN from another region would be acted on by name in the session's region: refuse it first."""
        self.template.check_region(region)
        for index, value in enumerate(self.services):
            parts = value.split(":")
            if value.startswith("arn:") and region and parts[3] != region:
                raise ConfigError(
                    f"services[{index}]", f"the ARN is in region {parts[3]}, but the session is in {region}"
                )


def parse_fleet_event(event: Any) -> FleetRequest:
    """Validate a fleet event: exactly one selection, the fleet's own fields, and every shared field."""
    if not isinstance(event, Mapping):
        raise ConfigError("event", f"must be a JSON object, got {type(event).__name__}")
    given = [name for name in SELECTORS if name in event]
    if len(given) != 1:
        said = ", ".join(given) if given else "none"
        raise ConfigError(
            given[-1] if given else "services",
            f"give exactly one of service_name, services or service_tags (given: {said})",
        )
    selector = given[0]
    if selector == "service_name":
        extra = next(name for name in FLEET_FIELDS if name in event)
        raise ConfigError(extra, "is for a fleet: select its services with services or service_tags, not service_name")
    shared = {k: v for k, v in event.items() if k not in FLEET_FIELDS}
    template = parse_event({**shared, "service_name": _PLACEHOLDER})
    services = _services(event, template.cluster_name) if selector == "services" else ()
    tags = _service_tags(event) if selector == "service_tags" else ()
    return FleetRequest(
        services=services,
        service_tags=tags,
        max_parallel_services=optional_int(event, "max_parallel_services", 1, 1, MAX_PARALLEL_SERVICES),
        on_service_failure=_on_failure(event),
        shared=MappingProxyType(shared),
        template=replace(template, service=_PLACEHOLDER),
    )


def _bare(value: str) -> str:
    match = _SERVICE_ARN.fullmatch(value)
    return match.group("name") if match else value


def _services(event: Mapping[str, Any], cluster_name: str) -> tuple[str, ...]:
    value = event["services"]
    if not isinstance(value, list) or not value:
        raise ConfigError("services", f"must be a list of 1-{MAX_SERVICES} service names or ARNs, got {shown(value)}")
    if len(value) > MAX_SERVICES:
        raise ConfigError("services", f"holds {len(value)} services; at most {MAX_SERVICES}")
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        name = f"services[{index}]"
        if not isinstance(item, str):
            raise ConfigError(name, f"must be a service name or ARN, got {shown(item)}")
        try:
            single = parse_event({"cluster_name": cluster_name, "service_name": item})
        except ConfigError as e:
            raise ConfigError(name, e.problem) from e
        if single.service_name in seen:
            raise ConfigError(name, f"repeats services[{seen[single.service_name]}] ({clip(single.service_name)})")
        seen[single.service_name] = index
    return tuple(value)


def _service_tags(event: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    value = event["service_tags"]
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            "service_tags", f"must be an object of 1-{MAX_SERVICE_TAGS} tag key -> value, got {shown(value)}"
        )
    if len(value) > MAX_SERVICE_TAGS:
        raise ConfigError("service_tags", f"holds {len(value)} tags; at most {MAX_SERVICE_TAGS}")
    tags = []
    for key, tag_value in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_TAG_KEY or not _TAG_TEXT.fullmatch(key):
            raise ConfigError(
                f"service_tags.{clip(str(key))}",
                f"a tag key is 1-{MAX_TAG_KEY} letters, digits, spaces or + - = . _ : / @",
            )
        if not isinstance(tag_value, str) or len(tag_value) > MAX_TAG_VALUE or not _TAG_TEXT.fullmatch(tag_value):
            raise ConfigError(
                f"service_tags.{clip(key)}",
                f"a tag value is a string of 0-{MAX_TAG_VALUE} letters, digits, spaces or + - = . _ : / @, "
                f"got {shown(tag_value)}",
            )
        tags.append((key, tag_value))
    return tuple(sorted(tags))


def _on_failure(event: Mapping[str, Any]) -> OnServiceFailure:
    value = event.get("on_service_failure", OnServiceFailure.CONTINUE)
    if not isinstance(value, str) or value not in tuple(OnServiceFailure):
        raise ConfigError("on_service_failure", f"must be one of {', '.join(OnServiceFailure)}, got {shown(value)}")
    return OnServiceFailure(value)
