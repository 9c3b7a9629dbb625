"""`make demo`: recycle a simulated 5-task service, no AWS account needed.

The cluster is moto plus the simulated scheduler (simulator.py) on a virtual
clock, so the six minutes the recycle takes in ECS time pass in about a second.
The report email goes to a real SMTP server (aiosmtpd) on 127.0.0.1; the demo
prints it and saves it beside the report under out/.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

from aiosmtpd.controller import Controller

from dev import simulator
from recycler.hosts.config import parse_config
from recycler.hosts.plain import Watcher, run_recycle, summarise
from recycler.hosts.progress import ProgressBar, wants_bar
from recycler.model.progress import ProgressSink
from recycler.model.request import parse_event
from recycler.observability import logs

OUT = Path(__file__).resolve().parent.parent / "out"
CLUSTER, SERVICE, TASKS = "demo-cluster", "web", 5


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope.content)
        return "250 Message accepted for delivery"


class _VirtualTimeFormatter(logging.Formatter):
    """One line per event, stamped with simulated time, with its structured fields."""

    _skip: ClassVar[set[str]] = {"cluster", "service", "request_id", "log_group", "log_stream"}

    def __init__(self, clock: simulator.VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    def format(self, record: logging.LogRecord) -> str:
        base = json.loads(logs.JsonFormatter().format(record))
        fields = {k: v for k, v in base.items() if k not in {"timestamp", "level", "logger", "message"} | self._skip}
        extra = f"  {json.dumps(fields, default=str)}" if fields else ""
        return f"[t+{self.clock.elapsed:5.0f}s] {record.levelname:<7} {record.getMessage()}{extra}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    clock = simulator.VirtualClock()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_VirtualTimeFormatter(clock))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("botocore", "boto3", "urllib3", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    inbox = _Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    try:
        with simulator.simulated_aws(clock) as (sim, session):
            ecs = session.client("ecs")
            sim.create_service(ecs, CLUSTER, SERVICE, TASKS)
            simulator.register_target(session.client("application-autoscaling"), CLUSTER, SERVICE, 2, 10)
            print(
                f"Simulated ECS: cluster {CLUSTER}, service {SERVICE}, {TASKS} tasks "
                "(40 s to start, 30 s to drain), autoscaling 2-10. SMTP on "
                f"127.0.0.1:{smtp.port}.\n"
            )
            config = parse_config(
                {
                    "awsCredentials": {"region_name": simulator.REGION},
                    "recycle": {"poll_interval_seconds": 5, "lock_table_name": simulator.create_lock_table(session)},
                    "smtpCredentials": {
                        "host": "127.0.0.1",
                        "port": smtp.port,
                        "security": "none",
                        "from_email": "ecs-task-recycle@example.com",
                    },
                    "emailNotification": {
                        "email_subject": "ECS Service Task Recycle Completed",
                        "subject_prefix": "AWS ECS",
                        "to": ["oncall@example.com"],
                    },
                },
                source="demo",
            )
            context = simulator.FakeLambdaContext(clock, 900.0, "demo-request-0001")
            request = parse_event(
                {"cluster_name": CLUSTER, "service_name": SERVICE, "maintain_service_state": True, "wait_time": 30}
            )

            def run(progress: ProgressSink | None) -> dict[str, Any]:
                return run_recycle(
                    request,
                    config,
                    session=session,
                    clock=clock,
                    remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000.0,
                    owner_id=context.aws_request_id,
                    invocation={
                        "request_id": context.aws_request_id,
                        "log_group": context.log_group_name,
                        "log_stream": context.log_stream_name,
                    },
                    watcher=Watcher(progress=progress),
                )

            # On a terminal, the CLI's live bar, with the run's lines above it; piped, the lines alone.
            if wants_bar(sys.stdout, json_lines=False):
                formatter = _VirtualTimeFormatter(clock)
                with ProgressBar(f"{CLUSTER}/{SERVICE}", sys.stdout, formatter=formatter) as bar:
                    report = run(bar)
                    bar.finish(str(report.get("status")))
            else:
                report = run(None)
            key = f"{CLUSTER}:{SERVICE}"
            minimum = sim.observed.min_serving[key]
            peak = sim.observed.max_live[key]
    finally:
        smtp.stop()

    OUT.mkdir(exist_ok=True)
    (OUT / "demo-report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\n=== Report (returned by the handler; saved to out/demo-report.json) ===")
    print(json.dumps(report, indent=2, default=str))
    print(f"\nServing tasks never fell below {minimum} (N={TASKS}); live tasks peaked at {peak} (N+1).")
    if inbox.messages:
        (OUT / "demo-email.eml").write_bytes(inbox.messages[-1])
        email = message_from_bytes(inbox.messages[-1], policy=policy.default)
        assert isinstance(email, EmailMessage)
        body = email.get_body(preferencelist=("plain",))
        print("\n=== Email received by the local SMTP server (saved to out/demo-email.eml) ===")
        for header in ("From", "To", "Subject"):
            print(f"{header}: {email[header]}")
        print()
        print(body.get_content() if body is not None else "(no text part)")
    else:
        print(f"\nNo email was sent: {report.get('notification')}")
    ok = report["status"] == "succeeded"
    print("\n" + ("Demo finished: all tasks recycled and the service restored." if ok else summarise(report)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
