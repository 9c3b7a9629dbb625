"""Lambda entry point (and local CLI) for ecs-task-recycle: the public face of ``recycler.hosts``.

The handler (recycler.hosts.plain) is thin: validate the event and input.json, build the session, run the
engine, notify, return the report. Any outcome other than full success is raised after the restore and the
notification, so Lambda's Errors metric and on-failure destinations see it.

Run locally against real AWS: ``python lambda_function.py --cluster C --service S --dry-run``
(recycler.hosts.cli).
"""

import sys

from recycler.hosts.cli import main
from recycler.hosts.plain import lambda_handler

__all__ = ["lambda_handler", "main"]

if __name__ == "__main__":
    sys.exit(main())
