"""`python -m recycler.hosts.event_check EVENT`: the handler's own parser on an event, before it is deployed.

cloudformation_deploy.sh runs it on each schedule's event before it uploads anything, so a schedule that
would be refused at 3 a.m. is refused at deploy time, with the same field named. It needs no AWS SDK.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from recycler.hosts.config import json_error_reason
from recycler.model.errors import ConfigError
from recycler.model.fleet import is_fleet_event, parse_fleet_event
from recycler.model.request import parse_event

USAGE = "usage: python -m recycler.hosts.event_check EVENT_JSON"


def check(text: str) -> list[str]:
    """The event as one line of JSON (what the schedule sends), then its bare cluster name, then its services:
    one name, a fleet's names joined by commas, or ``*`` for a fleet selected by tags (any service may be).

    Raises ConfigError naming the field, as the handler would refuse it."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError("event", f"not valid JSON (line {e.lineno}, column {e.colno}): {json_error_reason(e)}") from e
    # One line, same keys and values in the same order: a CloudFormation parameter value.
    line = json.dumps(event, ensure_ascii=False)
    if is_fleet_event(event):
        fleet = parse_fleet_event(event)
        return [line, fleet.template.cluster_name, ",".join(fleet.names) or "*"]
    request = parse_event(event)
    return [line, request.cluster_name, request.service_name]


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        lines = check(argv[0])
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
