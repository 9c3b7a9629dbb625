"""``python3 durable_function.py --cluster … --service …``: print the DurableExecutionName to start a run with."""

from __future__ import annotations

import argparse
import sys

from recycler.hosts.cli import flag_for, option_flags
from recycler.hosts.execution_name import durable_execution_name
from recycler.model.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="durable_function.py",
        description="Print the --durable-execution-name for a durable recycle of one service.",
    )
    # Each option's dest is the field an error names (as in recycler.hosts.cli), so the error names the flag.
    options = [
        parser.add_argument("--cluster", dest="cluster_name", required=True, help="cluster name or ARN"),
        parser.add_argument("--service", dest="service_name", required=True, help="service name or ARN"),
        parser.add_argument(
            "--run-key",
            help="e.g. the date, so the service can be recycled again before the previous execution's retention ends",
        ),
    ]
    args = parser.parse_args(argv)
    try:
        print(durable_execution_name(args.cluster_name, args.service_name, args.run_key))
    except ConfigError as e:
        print(f"error: {flag_for(e.field, option_flags(options))}: {e.problem}", file=sys.stderr)
        return 2
    return 0
