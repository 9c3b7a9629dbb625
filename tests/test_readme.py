"""The README agrees with the code: its payloads parse, its tables name every field, its commands exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from recycler.hosts import cli
from recycler.model.fleet import FLEET_FIELDS, is_fleet_event, parse_fleet_event
from recycler.model.request import _EVENT_FIELDS, parse_event
from recycler.model.settings import _RECYCLE_LIMITS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(heading: str) -> str:
    start = README.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    rest = README[start + len(heading) + 2 :]
    end = re.search(rf"\n{level} ", rest)
    return rest[: end.start()] if end else rest


def _table_keys(section: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


def test_every_payload_in_the_readme_is_a_valid_event() -> None:
    payloads = re.findall(r"--payload '([^']*)'", README)
    assert len(payloads) >= 5
    for payload in payloads:
        parse_event(json.loads(payload))


def test_every_example_event_in_the_event_section_is_valid() -> None:
    examples = re.findall(r"^\{\"cluster_name\".*\}$", _section("## The event"), flags=re.MULTILINE)
    assert len(examples) >= 3
    for example in examples:
        event = json.loads(example)
        parse_fleet_event(event) if is_fleet_event(event) else parse_event(event)


def test_the_event_table_has_a_row_for_every_field_and_no_other() -> None:
    assert _table_keys(_section("## The event")) == _EVENT_FIELDS | set(FLEET_FIELDS)


def test_the_recycle_table_has_a_row_for_every_key() -> None:
    assert set(_RECYCLE_LIMITS) <= _table_keys(_section("### `recycle` (optional)"))


def test_every_cli_flag_the_readme_names_exists(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    known = set(re.findall(r"--[a-z][a-z-]+", capsys.readouterr().out))
    section = _section("## Local CLI against real AWS")
    named = set(re.findall(r"`(--[a-z][a-z-]+)", section)) | set(
        re.findall(r"lambda_function\.py[^\n]*?( --[a-z-]+)", section)
    )
    named = {flag.strip() for flag in named}
    assert named and named <= known, named - known


def test_every_durable_start_in_the_readme_is_named() -> None:
    """An asynchronous start of the durable alias carries --durable-execution-name (idempotent starts)."""
    commands = re.findall(r"^ *aws lambda invoke(?:[^\n]*\\\n)*[^\n]*", README, flags=re.MULTILINE)
    durable_starts = [c for c in commands if "--invocation-type Event" in c]
    assert len(durable_starts) >= 2
    for command in durable_starts:
        assert '--durable-execution-name "$NAME"' in command, command


def test_the_prerequisites_say_aws_cli_v2_is_required() -> None:
    prerequisites = _section("### Prerequisites")
    assert "AWS CLI v2" in prerequisites and "v1 is not supported" in prerequisites


def test_the_plain_invocation_capacity_is_stated_one_way() -> None:
    """The README once said "about 20 tasks" in one place and 11 in another; the benchmark's 11 is the figure."""
    assert "about 20 tasks" not in README
    claims = set(re.findall(r"(\d+) tasks one at a time", README))
    assert claims <= {"11", "200"}, claims


def _bash_blocks(section: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


def test_the_make_test_time_is_stated() -> None:
    assert re.search(r"`make test` takes about \d+–\d+ minutes", _section("## Two commands"))


def test_the_local_endpoint_commands_run_against_moto_server(tmp_path: Path) -> None:
    """The README's AWS_ENDPOINT_URL block, run as printed against a moto server holding demo/web."""
    import socket
    import subprocess

    import boto3
    import requests
    from moto.server import ThreadedMotoServer

    from dev.simulator import EcsSimulator, VirtualClock

    # GIVEN the README's two blocks: the server's start, and the commands that use it
    start, commands = _bash_blocks(_section("### Against a local endpoint (moto's server)"))[:2]
    readme_port = re.search(r"-p (\d+)", start)
    assert readme_port and (ROOT / start.split()[0]).exists()
    readme_url = f"http://127.0.0.1:{readme_port.group(1)}"
    assert f"AWS_ENDPOINT_URL={readme_url}\n" in commands
    # AND such a server (on a free port), where demo/web runs three tasks
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    # moto's backends belong to this process: start empty, and leave nothing (the lock table, the cluster) behind.
    requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
    try:
        with EcsSimulator(VirtualClock()) as sim:
            ecs = boto3.Session(region_name="us-east-1").client("ecs", endpoint_url=url)
            sim.create_service(ecs, "demo", "web", 3)
            tasks = set(ecs.list_tasks(cluster="demo", serviceName="web")["taskArns"])
            # WHEN the commands run as printed, from the repository, with nothing of ours in the environment
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", commands.replace(readme_url, url)],
                cwd=ROOT,
                env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_CONFIG_FILE": "/dev/null"},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
        server.stop()
    # THEN the dry run succeeds against the local endpoint and plans exactly the service's tasks
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"status": "dry_run"' in result.stdout
    assert len(tasks) == 3
    for task in tasks:
        assert task in result.stdout


def test_every_schedule_event_in_the_readme_is_a_valid_event() -> None:
    from recycler.hosts.event_check import check

    events = re.findall(r"--schedule2?-event '([^']*)'", README)
    assert len(events) >= 4
    for event in events:
        # What the deploy script runs on each schedule's event: a single service's or a fleet's parser.
        check(event)


def test_every_template_parameter_is_documented_and_every_documented_one_exists() -> None:
    from support import iam

    declared = set(iam.load_template(ROOT / "cloudformation.yaml")["Parameters"])
    documented = set(re.findall(r"`([A-Z][A-Za-z0-9]+)`", _section("## Deploy to AWS")))
    # ArtifactBucket and ArtifactKey are the script's own (--bucket and the package's hash).
    assert declared - {"ArtifactBucket", "ArtifactKey"} <= documented, sorted(declared - documented)
    # The schedule's four fields the event replaced are named only to say they are gone.
    gone = {"ScheduleClusterName", "ScheduleServiceName", "ScheduleMaintainServiceState", "ScheduleWaitTime"}
    assert not gone & declared
    assert "are gone" in _section("### Run it on a schedule (optional)")


def test_every_deploy_flag_the_readme_names_exists() -> None:
    import subprocess

    usage = subprocess.run(
        [str(ROOT / "cloudformation_deploy.sh"), "--help"], capture_output=True, text=True, check=True
    )
    known = set(re.findall(r"--[a-z][a-z0-9-]+", usage.stdout))
    named = set(re.findall(r"\./cloudformation_deploy\.sh[^`]*?(--[a-z][a-z0-9-]+)", README))
    named |= set(re.findall(r"`(--schedule[a-z0-9-]*)", README))
    assert {"--schedule-event", "--schedule2", "--schedule2-event"} <= named
    assert named <= known, sorted(named - known)


def test_the_walkthrough_runs_as_printed(bed: Any, deployed: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The walkthrough's five lines, in order: the start and its follow; meanwhile a status and a cancel; then
    the follow of the ended run and the history. The simulator's service stands in for prod/web."""
    import contextlib
    import io
    import shlex

    from support.bed import CLUSTER, SERVICE

    import lambda_function

    block = _bash_blocks(_section("### Walkthrough: start, follow, status, cancel, history"))[0]
    commands = [shlex.split(line) for line in block.splitlines() if line.startswith(".venv/bin/python")]
    assert [c[0:2] for c in commands] == [[".venv/bin/python", "lambda_function.py"]] * 5
    argvs = [[{"prod": CLUSTER, "web": SERVICE}.get(word, word) for word in c[2:]] for c in commands]
    start, status, cancel, follow, history = argvs
    assert "--invoke" in start and "--follow" in start and "--status" in status and "--cancel" in cancel
    bed.add_service(tasks=6, target=(2, 10))
    seen: dict[str, Any] = {}

    def run(name: str, argv: list[str]) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = lambda_function.main(argv, clock=bed.clock)
        text = out.getvalue()
        # A report or an answer is one JSON document; a follow prints JSON lines, its verdict last.
        seen[name] = (code, json.loads(text if text.startswith("{\n") else text.splitlines()[-1]))

    # WHEN the start runs, with the status and the cancel given from "another terminal" while it runs
    bed.sim.at(200, "status", lambda: run("status", status))
    bed.sim.at(210, "cancel", lambda: run("cancel", cancel))
    code = lambda_function.main(start, clock=bed.clock)
    followed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")][-1]

    # THEN the status saw it running part way, the cancel was taken, and the follow ended with it: cancelled
    status_code, answer = seen["status"]
    assert status_code == 0 and answer["state"] == "running" and 0 <= answer["percent_complete"] < 100
    assert seen["cancel"][0] == 0 and seen["cancel"][1]["state"] == "running"
    assert (followed["followed"], code) == ("cancelled", 130)
    bed.assert_restored()
    # AND afterwards the follow reports the ended run, and the history lists it first
    run("follow", follow)
    run("history", history)
    assert seen["follow"][0] == 130
    assert seen["history"][0] == 0 and seen["history"][1]["runs"][0]["status"] == "cancelled"
