"""Lambda entry point for the long-running mode: the public face of ``recycler.hosts.durable``.

The same engine, as a durable execution: every AWS call a checkpointed step, every wait a durable wait that
suspends without compute. Start it through the published alias with ``--invocation-type Event`` and a
``--durable-execution-name`` from this file's CLI (recycler.hosts.name_cli)::

    python3 durable_function.py --cluster prod --service web --run-key "$(date -u +%Y%m%d)"

The name needs only the standard library, so the CLI runs with any Python 3.11+, without boto3 or the
durable SDK; Lambda imports this module and gets the handler.
"""

import sys

from recycler.hosts.name_cli import main

__all__ = ["main"]

if __name__ != "__main__":
    # Only Lambda's import needs the SDK; the name CLI must run without it.
    from recycler.hosts.durable import lambda_handler

    __all__ += ["lambda_handler"]

if __name__ == "__main__":
    sys.exit(main())
