"""``python3 durable_function.py --cluster … --service …``: print the DurableExecutionName to start a run with.

A fleet (``--services`` or ``--service-tags``) gets one name per fleet run: one execution maps its services."""

from __future__ import annotations

import argparse
import sys

from recycler.hosts.cli import _tag, flag_for, option_flags
from recycler.hosts.execution_name import durable_execution_name, durable_fleet_execution_name
from recycler.model.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="durable_function.py",
        description="Print the --durable-execution-name for a durable recycle of one service, or of a fleet.",
    )
    selection = parser.add_mutually_exclusive_group(required=True)
    # Each option's dest is the field an error names (as in recycler.hosts.cli), so the error names the flag.
    options = [
        parser.add_argument("--cluster", dest="cluster_name", required=True, help="cluster name or ARN"),
        selection.add_argument("--service", dest="service_name", help="service name or ARN"),
        selection.add_argument("--services", nargs="+", default=None, help="a fleet: its service names or ARNs"),
        selection.add_argument(
            "--service-tags", nargs="+", type=_tag, default=None, metavar="KEY=VALUE", help="a fleet: by its tags"
        ),
        parser.add_argument(
            "--run-key",
            help="e.g. the date, so the service can be recycled again before the previous execution's retention ends",
        ),
    ]
    args = parser.parse_args(argv)
    try:
        if args.service_name is not None:
            print(durable_execution_name(args.cluster_name, args.service_name, args.run_key))
        else:
            tags = dict(args.service_tags) if args.service_tags else None
            print(
                durable_fleet_execution_name(
                    args.cluster_name, services=args.services or (), service_tags=tags, run_key=args.run_key
                )
            )
    except ConfigError as e:
        print(f"error: {flag_for(e.field, option_flags(options))}: {e.problem}", file=sys.stderr)
        return 2
    return 0
