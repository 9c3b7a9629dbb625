"""Lambda entry point for the long-running mode: the same engine, as a durable execution.

The handler is recycler.durable's: every AWS call a checkpointed step, every
wait a durable wait that suspends without compute. Start it through the
published alias with ``--invocation-type Event`` and a
``--durable-execution-name`` from this file's CLI::

    python3 durable_function.py --cluster prod --service web --run-key "$(date -u +%Y%m%d)"

The name needs only the standard library, so the CLI runs with any Python 3.11+,
without boto3 or the durable SDK; Lambda imports this module and gets the handler.
"""

from __future__ import annotations

import argparse
import sys

from recycler.cli import flag_for, option_flags
from recycler.errors import ConfigError
from recycler.execution_name import durable_execution_name

if __name__ != "__main__":
    # Only Lambda's import needs the SDK; the name CLI must run without it.
    from recycler.durable import build_handler

    lambda_handler = build_handler()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="durable_function.py",
        description="Print the --durable-execution-name for a durable recycle of one service.",
    )
    # Each option's dest is the field an error names (as in recycler.cli), so the error names the flag.
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


if __name__ == "__main__":
    sys.exit(main())
