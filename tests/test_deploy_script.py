"""cloudformation_deploy.sh, run against a stub `aws` that records its calls.

No AWS account is involved: the stub writes each invocation's arguments to a
log, answers describe-stacks with made-up outputs, and can be told that the
package is already uploaded or that the deploy fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "cloudformation_deploy.sh"
FUNCTION = "ecs-task-recycle-fn"
ALIAS_ARN = f"arn:aws:lambda:eu-west-1:123456789012:function:{FUNCTION}-durable:live"

CHANGE_SET_ARN = (
    "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/awscli-cloudformation-package-deploy-1733300000/"
    "0b7a1c2d-3e4f-5a6b-7c8d-9e0f1a2b3c4d"
)
STUB = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if args == ["--version"]:
    # Not an AWS call: not logged. CLI v1 printed its version on stderr.
    print(os.environ.get("AWS_STUB_VERSION", "aws-cli/2.22.0 Python/3.12.6 Linux/6.1 exe/x86_64"), file=sys.stderr)
    sys.exit(0)
with open(os.environ["AWS_STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if "head-object" in args:
    sys.exit(int(os.environ.get("AWS_STUB_HEAD_OBJECT", "255")))
if "describe-stack-resources" in args:
    table = os.environ.get("AWS_STUB_LOCK_TABLE")
    if table:
        print(table)
        sys.exit(0)
    print(os.environ.get("AWS_STUB_RESOURCES_ERROR", "An error occurred (ValidationError) when calling the "
          "DescribeStackResources operation: Stack with id recycler does not exist"), file=sys.stderr)
    sys.exit(254)
if "deploy" in args and os.environ.get("AWS_STUB_FAIL_DEPLOY"):
    print("An error occurred (ValidationError)", file=sys.stderr)
    sys.exit(255)
if "deploy" in args and "--no-execute-changeset" in args:
    if os.environ.get("AWS_STUB_NO_CHANGES"):
        print("\\nNo changes to deploy. Stack recycler is up to date")
    else:
        print("\\nWaiting for changeset to be created..\\nChangeset created successfully. Run the following "
              "command to review changes:\\naws cloudformation describe-change-set --change-set-name {CHANGE_SET_ARN}")
    sys.exit(0)
if "describe-change-set" in args:
    print("|  Modify  |  Function  |  AWS::Lambda::Function  |  False  |")
    sys.exit(0)
if "describe-stacks" in args:
    query = args[args.index("--query") + 1]
    outputs = {{
        "FunctionName": "{FUNCTION}",
        "LogGroupName": "/aws/lambda/{FUNCTION}",
        "DurableFunctionAliasArn": "{ALIAS_ARN}",
    }}
    print(next(v for k, v in outputs.items() if f"'{{k}}'" in query))
"""
REQUIRED = ["--stack-name", "recycler", "--bucket", "artifacts-123", "--cluster", "prod", "--services", "web,api"]


class Run:
    def __init__(self, result: subprocess.CompletedProcess[str], log: Path) -> None:
        self.code = result.returncode
        self.out = result.stdout
        self.err = result.stderr
        self.calls: list[list[str]] = (
            [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        )

    def call(self, *words: str) -> list[str]:
        """The one recorded aws call containing all of ``words``."""
        matching = [c for c in self.calls if all(w in c for w in words)]
        assert len(matching) == 1, f"{words}: {matching} in {self.calls}"
        return matching[0]


@pytest.fixture
def package(tmp_path: Path) -> Path:
    path = tmp_path / "prebuilt.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("lambda_function.py", "def lambda_handler(event, context):\n    return {}\n")
    return path


Deploy = Callable[..., Run]


@pytest.fixture
def deploy(tmp_path: Path, package: Path) -> Deploy:
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    stub = stub_dir / "aws"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "aws-calls.jsonl"

    def run(*args: str, prebuilt: bool = True, **env: str) -> Run:
        log.unlink(missing_ok=True)  # each run is judged on its own calls
        environment = {
            "PATH": f"{stub_dir}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "AWS_STUB_LOG": str(log),
            **({"LAMBDA_ZIP": str(package)} if prebuilt else {}),
            **env,
        }
        result = subprocess.run(
            [str(SCRIPT), *args], env=environment, capture_output=True, text=True, timeout=300, check=False
        )
        return Run(result, log)

    return run


def overrides(call: list[str]) -> dict[str, str]:
    values = call[call.index("--parameter-overrides") + 1 :]
    return dict(v.split("=", 1) for v in values)


# --------------------------------------------------------------------------- #
# Bad input: usage, a non-zero exit, and no AWS call
# --------------------------------------------------------------------------- #


def test_help_prints_usage_and_calls_nothing(deploy: Deploy) -> None:
    run = deploy("--help")
    assert run.code == 0
    assert "Usage:" in run.out and "--stack-name" in run.out and "LAMBDA_ZIP" in run.out
    assert run.calls == []


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("--stack-name", "stack name is required"),
        ("--bucket", "artifact bucket is required"),
        ("--cluster", "target cluster is required"),
        ("--services", "target services are required"),
    ],
)
def test_missing_required_setting_is_a_usage_error_before_any_aws_call(deploy: Deploy, drop: str, message: str) -> None:
    # GIVEN every required flag but one
    index = REQUIRED.index(drop)
    args = REQUIRED[:index] + REQUIRED[index + 2 :]
    # WHEN the script runs
    run = deploy(*args)
    # THEN it names the missing setting, shows the usage, and touches nothing
    assert run.code == 2
    assert message in run.err
    assert "Usage:" in run.err
    assert run.calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stack-name", "1-bad"], "invalid stack name"),
        (["--bucket", "Not_A_Bucket"], "invalid S3 bucket name"),
        (["--services", "web, api"], "invalid --services"),
        (["--services", ",".join(f"s{i}" for i in range(11))], "invalid --services"),
        (["--cluster", "prod/web"], "invalid cluster name"),
        (["--schedule", "rate(7 days)"], "--schedule needs --schedule-event (or --schedule-service)"),
        (["--schedule2", "rate(7 days)"], "--schedule2 needs --schedule2-event"),
        (
            ["--schedule", "rate(7 days)", "--schedule-service", "web", "--schedule-target", "fast"],
            "standard or durable",
        ),
        (["--parameter", "not-a-pair"], "Key=Value"),
        (["--service-tag", "recycle"], "--service-tag must look like KEY=VALUE"),
        (["--service-tag", "=weekly"], "invalid --service-tag key"),
        (["--service-tag", "recycle="], "invalid --service-tag value"),
        (["--service-tag", 'recycle=we"ekly'], "invalid --service-tag value"),
        (["--parameter", "ServiceTagKey=recycle"], "set ServiceTagKey with --service-tag"),
        (["--frobnicate"], "unknown argument: --frobnicate"),
        (["--region"], "--region needs a value"),
    ],
)
def test_bad_input_is_a_usage_error_before_any_aws_call(deploy: Deploy, args: list[str], message: str) -> None:
    run = deploy(*REQUIRED, *args)
    assert run.code == 2, run.err
    assert message in run.err
    assert run.calls == []


def test_empty_environment_value_counts_as_missing(deploy: Deploy) -> None:
    run = deploy("--bucket", "artifacts-123", "--cluster", "prod", "--services", "web", STACK_NAME="")
    assert run.code == 2 and "stack name is required" in run.err
    assert run.calls == []


# --------------------------------------------------------------------------- #
# The happy path
# --------------------------------------------------------------------------- #


def test_deploy_uploads_under_the_content_hash_and_deploys_through_the_template(deploy: Deploy, package: Path) -> None:
    sha = hashlib.sha256(package.read_bytes()).hexdigest()
    key = f"ecs-task-recycle/{sha}.zip"
    # WHEN the script deploys
    run = deploy(*REQUIRED, "--region", "eu-west-1", "--profile", "ops")
    assert run.code == 0, run.err
    # THEN the package goes to S3 under its content hash
    copy = run.call("s3", "cp")
    assert copy[copy.index("cp") + 1 :][:2] == [str(package), f"s3://artifacts-123/{key}"]
    # AND the stack is deployed from the template with the package's location
    stack = run.call("cloudformation", "deploy")
    assert stack[stack.index("--stack-name") + 1] == "recycler"
    assert Path(stack[stack.index("--template-file") + 1]) == ROOT / "cloudformation.yaml"
    assert stack[stack.index("--capabilities") + 1] == "CAPABILITY_NAMED_IAM"
    assert stack[stack.index("--s3-bucket") + 1] == "artifacts-123"  # no template size limit
    assert overrides(stack) == {
        "ArtifactBucket": "artifacts-123",
        "ArtifactKey": key,
        "TargetClusterName": "prod",
        "TargetServiceNames": "web,api",
    }
    # AND the code is never pushed around the template
    assert not any("update-function-code" in c or "lambda" in c for c in run.calls)
    # AND every call uses the region and profile
    for call in run.calls:
        assert call[:4] == ["--region", "eu-west-1", "--profile", "ops"], call
    # AND the function name comes from the stack outputs
    query = run.call("describe-stacks", "Stacks[0].Outputs[?OutputKey=='FunctionName'].OutputValue")
    assert query[query.index("--stack-name") + 1] == "recycler"
    assert sha in run.out


def test_printed_invoke_command_is_ready_to_paste(deploy: Deploy) -> None:
    from recycler.model.request import parse_event

    run = deploy(*REQUIRED, "--region", "eu-west-1")
    assert run.code == 0, run.err
    assert f"aws lambda invoke --region eu-west-1 --function-name {FUNCTION}" in run.out
    assert f"--function-name {ALIAS_ARN}" in run.out and "--invocation-type Event" in run.out
    assert f"aws logs tail --region eu-west-1 /aws/lambda/{FUNCTION} --follow" in run.out
    payloads = re.findall(r"--payload '([^']*)'", run.out)
    assert len(payloads) == 3
    for payload in payloads:
        request = parse_event(json.loads(payload))
        assert (request.cluster, request.service) == ("prod", "web")
    assert json.loads(payloads[0])["dry_run"] is True
    # AND no printed recycle can be sent twice: it is started asynchronously and followed, or the synchronous
    # invoke has no read timeout and no retries, and a run_key (a second start answers already_running)
    assert f"--invoke {FUNCTION} --follow" in run.out
    for command in run.out.split("\n\n"):
        if "aws lambda invoke" in command and '"dry_run": true' not in command and "Event" not in command:
            assert "--cli-read-timeout 0" in command and "AWS_MAX_ATTEMPTS=1" in command, command
            assert re.search(r'"run_key": "[0-9]{8}"', command), command


def test_printed_durable_start_is_named_and_the_name_line_runs(deploy: Deploy) -> None:
    """The durable start carries --durable-execution-name, computed by a line that runs as printed."""
    from recycler.hosts.execution_name import durable_execution_name

    run = deploy(*REQUIRED, "--region", "eu-west-1")
    assert run.code == 0, run.err
    durable_start = run.out[run.out.index(f"--function-name {ALIAS_ARN}") :].split("response.json")[0]
    assert '--durable-execution-name "$NAME"' in durable_start
    name_line = next(line.strip() for line in run.out.splitlines() if line.strip().startswith("NAME=$("))
    # Run it as a user would paste it: with a plain python3 and no site-packages.
    shell = f'python3() {{ {sys.executable} -S -E "$@"; }}; {name_line}; printf %s "$NAME"'
    day_before = datetime.now(UTC).strftime("%Y%m%d")
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=False, cwd="/")
    assert result.returncode == 0, result.stderr
    days = {day_before, datetime.now(UTC).strftime("%Y%m%d")}  # a run across midnight sees either
    assert result.stdout in {durable_execution_name("prod", "web", day) for day in days}


def test_settings_come_from_the_environment_and_flags_win(deploy: Deploy) -> None:
    env = {
        "STACK_NAME": "from-env",
        "ARTIFACT_BUCKET": "env-bucket",
        "TARGET_CLUSTER": "env-cluster",
        "TARGET_SERVICES": "*",
        "AWS_REGION": "ap-southeast-2",
        "ARTIFACT_PREFIX": "builds/recycle/",
    }
    run = deploy(**env)
    assert run.code == 0, run.err
    stack = run.call("cloudformation", "deploy")
    assert stack[stack.index("--stack-name") + 1] == "from-env"
    assert stack[:2] == ["--region", "ap-southeast-2"]
    assert overrides(stack)["TargetServiceNames"] == "*"
    assert overrides(stack)["ArtifactKey"].startswith("builds/recycle/")
    assert '--payload \'{"cluster_name": "env-cluster", "service_name": "SERVICE_NAME"' in run.out
    # A flag overrides its variable
    run = deploy("--stack-name", "from-flag", **env)
    assert run.code == 0, run.err
    stack = run.call("cloudformation", "deploy")
    assert stack[stack.index("--stack-name") + 1] == "from-flag"


def test_an_uploaded_package_is_not_uploaded_again(deploy: Deploy) -> None:
    run = deploy(*REQUIRED, AWS_STUB_HEAD_OBJECT="0")
    assert run.code == 0, run.err
    assert not any("cp" in c for c in run.calls)
    assert "already in s3://" in run.out
    run.call("cloudformation", "deploy")


def test_a_failed_deploy_fails_the_script_and_reports_nothing(deploy: Deploy) -> None:
    run = deploy(*REQUIRED, AWS_STUB_FAIL_DEPLOY="1")
    assert run.code != 0
    assert not any("describe-stacks" in c for c in run.calls)
    assert "aws lambda invoke" not in run.out


def test_schedule_and_extra_parameters_become_overrides(deploy: Deploy) -> None:
    run = deploy(
        *REQUIRED,
        "--schedule",
        "cron(0 3 ? * SUN *)",
        "--schedule-service",
        "web",
        "--schedule-timezone",
        "Europe/Berlin",
        "--schedule-target",
        "durable",
        "--function-name",
        "recycler-fn",
        "--parameter",
        "LogLevel=DEBUG",
    )
    assert run.code == 0, run.err
    values = overrides(run.call("cloudformation", "deploy"))
    assert values["ScheduleExpression"] == "cron(0 3 ? * SUN *)"
    # --schedule-service is shorthand for the event the template's four schedule fields used to send
    assert json.loads(values["ScheduleEvent"]) == {
        "cluster_name": "prod",
        "service_name": "web",
        "maintain_service_state": True,
        "wait_time": 30,
    }
    assert values["ScheduleTimezone"] == "Europe/Berlin"
    assert values["ScheduleTarget"] == "durable"
    assert values["FunctionName"] == "recycler-fn"
    assert values["LogLevel"] == "DEBUG"


def test_the_service_tag_sets_the_tag_scope_an_empty_one_removes_it_and_none_keeps_it(deploy: Deploy) -> None:
    # GIVEN --service-tag KEY=VALUE WHEN deployed THEN both template parameters carry it
    scoped = overrides(deploy(*REQUIRED, "--service-tag", "team:owner=pay ments").call("cloudformation", "deploy"))
    assert (scoped["ServiceTagKey"], scoped["ServiceTagValue"]) == ("team:owner", "pay ments")
    # AND the key stops at the first '=', so a value may hold one
    split = overrides(deploy(*REQUIRED, "--service-tag", "recycle=a=b").call("cloudformation", "deploy"))
    assert (split["ServiceTagKey"], split["ServiceTagValue"]) == ("recycle", "a=b")
    # AND the environment gives it too
    from_env = overrides(deploy(*REQUIRED, SERVICE_TAG="recycle=weekly").call("cloudformation", "deploy"))
    assert (from_env["ServiceTagKey"], from_env["ServiceTagValue"]) == ("recycle", "weekly")
    # GIVEN --service-tag '' THEN the scope is removed
    removed = overrides(deploy(*REQUIRED, "--service-tag", "").call("cloudformation", "deploy"))
    assert (removed["ServiceTagKey"], removed["ServiceTagValue"]) == ("", "")
    # GIVEN no --service-tag THEN the stack keeps its current scope
    kept = overrides(deploy(*REQUIRED).call("cloudformation", "deploy"))
    assert "ServiceTagKey" not in kept and "ServiceTagValue" not in kept


def test_the_script_accepts_every_tag_the_template_accepts() -> None:
    from support import iam

    parameters = iam.load_template(ROOT / "cloudformation.yaml")["Parameters"]
    script = SCRIPT.read_text()
    key = re.search(r"TAG_KEY_PATTERN='([^']+)'", script)
    value = re.search(r"TAG_VALUE_PATTERN='([^']+)'", script)
    assert key and value
    for sample in ("recycle", "team:owner", "a.b/c+d@e f-g_1"):
        assert re.fullmatch(key.group(1), sample) and re.fullmatch(
            parameters["ServiceTagKey"]["AllowedPattern"], sample
        )
    for sample in ("weekly", "a=b", "x y"):
        assert re.fullmatch(value.group(1), sample)
        assert re.fullmatch(parameters["ServiceTagValue"]["AllowedPattern"], sample)
    for bad in ('a"b', "a\\b"):
        assert not re.fullmatch(key.group(1), bad) and not re.fullmatch(
            parameters["ServiceTagKey"]["AllowedPattern"], bad
        )


def test_an_empty_schedule_removes_it_and_no_schedule_flag_keeps_it(deploy: Deploy) -> None:
    removed = overrides(deploy(*REQUIRED, "--schedule", "").call("cloudformation", "deploy"))
    assert removed["ScheduleExpression"] == ""
    assert "ScheduleEvent" not in removed
    kept = overrides(deploy(*REQUIRED).call("cloudformation", "deploy"))
    assert "ScheduleExpression" not in kept


def test_without_a_prebuilt_package_the_real_build_runs(deploy: Deploy, tmp_path: Path) -> None:
    # SKIP_DEPS keeps the build offline and fast; the build itself is tested in test_build.py.
    build_dir = tmp_path / "build"
    run = deploy(*REQUIRED, prebuilt=False, SKIP_DEPS="1", BUILD_DIR=str(build_dir))
    assert run.code == 0, run.err
    built = build_dir / "ecs-task-recycle.zip"
    sha = hashlib.sha256(built.read_bytes()).hexdigest()
    assert run.call("s3", "cp")[-3:-1] == [str(built), f"s3://artifacts-123/ecs-task-recycle/{sha}.zip"]
    assert "sha256:" in run.err  # the build's own report
    assert "SKIP_DEPS is set" in run.err  # and a warning that such a package is not deployable


# --------------------------------------------------------------------------- #
# Checks that catch a deployment that could never work, before any AWS call
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "rate(7 days)", "--schedule-service", "orders"], "--schedule-service orders is not among"),
        (
            ["--schedule", "rate(7 days)", "--schedule-service", "web", "--schedule-cluster", "staging"],
            "--schedule-cluster staging is not --cluster prod",
        ),
        (["--parameter", "LogLevl=DEBUG"], "the template has no parameter LogLevl"),
        (["--parameter", "TargetClusterName=other"], "set TargetClusterName with --cluster"),
        (
            ["--cluster", "arn:aws:ecs:us-east-1:123456789012:cluster/prod", "--region", "eu-west-1"],
            "is in region us-east-1, not eu-west-1",
        ),
        (["--parameter", 'ScheduleEvent={"cluster_name": "prod"}'], "set ScheduleEvent with --schedule-event"),
        (["--cluster", "arn:aws:ecs:eu-west-1:1234:cluster/prod"], "invalid cluster name"),
    ],
    ids=[
        "schedule-service",
        "schedule-cluster",
        "parameter-name",
        "parameter-of-a-flag",
        "arn-region",
        "schedule-by-parameter",
        "bad-arn",
    ],
)
def test_a_deployment_that_cannot_work_is_a_usage_error_before_any_aws_call(
    deploy: Deploy, args: list[str], message: str
) -> None:
    # GIVEN settings each of which deploys fine but fails later (AccessDenied on every scheduled run, say)
    # WHEN the script runs
    run = deploy(*REQUIRED, *args)
    # THEN it says so, shows the usage, and calls nothing
    assert run.code == 2, run.err
    assert message in run.err
    assert "Usage:" in run.err
    assert run.calls == []


def test_the_schedule_may_name_any_service_when_the_role_may_recycle_any(deploy: Deploy) -> None:
    run = deploy(*REQUIRED[:6], "--services", "*", "--schedule", "rate(7 days)", "--schedule-service", "orders")
    assert run.code == 0, run.err
    assert json.loads(overrides(run.call("cloudformation", "deploy"))["ScheduleEvent"])["service_name"] == "orders"


def test_every_template_parameter_is_accepted(deploy: Deploy) -> None:
    # GIVEN every parameter the template declares, except those the script's own flags set
    from support import iam

    declared = set(iam.load_template(ROOT / "cloudformation.yaml")["Parameters"])
    by_flag = {
        "ArtifactBucket",
        "ArtifactKey",
        "TargetClusterName",
        "TargetServiceNames",
        "ServiceTagKey",
        "ServiceTagValue",
        "FunctionName",
        "ScheduleExpression",
        "ScheduleEvent",
        "ScheduleTimezone",
        "ScheduleTarget",
        "Schedule2Expression",
        "Schedule2Event",
        "Schedule2Timezone",
        "Schedule2Target",
    }
    names = sorted(declared - by_flag)
    assert "LogLevel" in names and "LockTableName" in names
    # WHEN each is given with --parameter
    args = [word for name in names for word in ("--parameter", f"{name}=x")]
    run = deploy(*REQUIRED, *args)
    # THEN each reaches the deploy
    assert run.code == 0, run.err
    values = overrides(run.call("cloudformation", "deploy"))
    assert {name: values[name] for name in names} == dict.fromkeys(names, "x")


def test_a_cluster_arn_is_reduced_to_its_name_as_events_are(deploy: Deploy) -> None:
    # GIVEN the cluster as its ARN (what the console copies)
    arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/prod"
    # WHEN the script deploys
    run = deploy(*REQUIRED[:4], "--cluster", arn, "--services", "web", "--region", "eu-west-1")
    # THEN the role is scoped to the cluster's name, and the printed events name it
    assert run.code == 0, run.err
    assert overrides(run.call("cloudformation", "deploy"))["TargetClusterName"] == "prod"
    assert '"cluster_name": "prod"' in run.out


@pytest.mark.parametrize(
    "version",
    ["aws-cli/1.36.2 Python/3.12.6 Linux/6.1 botocore/1.35.2", "", "not the aws cli"],
    ids=["v1", "silent", "other"],
)
def test_the_aws_cli_must_be_version_2(deploy: Deploy, version: str) -> None:
    # GIVEN an `aws` that is not CLI v2 (v1 has no --cli-binary-format for the printed commands)
    run = deploy(*REQUIRED, AWS_STUB_VERSION=version)
    # THEN the script stops with a clear error before any AWS call
    assert run.code == 1
    assert "the AWS CLI v2 is required" in run.err
    assert run.calls == []


# --------------------------------------------------------------------------- #
# --preview
# --------------------------------------------------------------------------- #


def test_preview_creates_and_shows_the_change_set_and_executes_nothing(deploy: Deploy) -> None:
    # WHEN the script runs with --preview
    run = deploy(*REQUIRED, "--region", "eu-west-1", "--preview")
    assert run.code == 0, run.err
    # THEN the change set is created but not executed
    created = run.call("cloudformation", "deploy")
    assert "--no-execute-changeset" in created
    # AND it is described, by the ARN the CLI printed
    described = run.call("cloudformation", "describe-change-set")
    assert described[described.index("--change-set-name") + 1] == CHANGE_SET_ARN
    assert "AWS::Lambda::Function" in run.out
    # AND the output says how to apply it, and reports no deployment
    assert f"aws cloudformation execute-change-set --region eu-west-1 --change-set-name {CHANGE_SET_ARN}" in run.out
    assert "Deployed stack" not in run.out
    assert not any("describe-stacks" in c for c in run.calls)


def test_preview_of_an_unchanged_stack_says_so(deploy: Deploy) -> None:
    run = deploy(*REQUIRED, "--preview", AWS_STUB_NO_CHANGES="1")
    assert run.code == 0, run.err
    assert "No changes" in run.out
    assert not any("describe-change-set" in c for c in run.calls)


# --------------------------------------------------------------------------- #
# The lock table survives an upgrade
# --------------------------------------------------------------------------- #


def test_an_upgrade_keeps_the_existing_lock_table_name(deploy: Deploy) -> None:
    # GIVEN a stack deployed by an older template, whose table followed the function's name
    run = deploy(*REQUIRED, "--function-name", "renamed", AWS_STUB_LOCK_TABLE="ecs-task-recycle-locks")
    # WHEN it is deployed again (and the function renamed)
    assert run.code == 0, run.err
    # THEN the deploy pins the table it has, so CloudFormation never replaces it
    values = overrides(run.call("cloudformation", "deploy"))
    assert values["LockTableName"] == "ecs-task-recycle-locks"
    assert values["FunctionName"] == "renamed"
    looked_up = run.call("describe-stack-resources")
    assert looked_up[looked_up.index("--logical-resource-id") + 1] == "LockTable"


def test_a_new_stack_takes_the_template_default_table_name(deploy: Deploy) -> None:
    run = deploy(*REQUIRED)
    assert run.code == 0, run.err
    assert "LockTableName" not in overrides(run.call("cloudformation", "deploy"))


def test_an_explicit_lock_table_name_wins_with_a_warning(deploy: Deploy) -> None:
    run = deploy(*REQUIRED, "--parameter", "LockTableName=new-locks", AWS_STUB_LOCK_TABLE="old-locks")
    assert run.code == 0, run.err
    assert overrides(run.call("cloudformation", "deploy"))["LockTableName"] == "new-locks"
    assert "old-locks" in run.err and "new-locks" in run.err


def test_a_failed_lock_table_lookup_stops_before_the_deploy(deploy: Deploy) -> None:
    # GIVEN credentials that may not describe the stack: the table name cannot be known
    error = "An error occurred (AccessDenied) when calling the DescribeStackResources operation: not authorized"
    run = deploy(*REQUIRED, AWS_STUB_RESOURCES_ERROR=error)
    # THEN nothing is deployed (a guess could replace the table)
    assert run.code == 1
    assert "AccessDenied" in run.err
    assert not any("deploy" in c for c in run.calls)


# --------------------------------------------------------------------------- #
# A schedule carries any event, checked with the handler's own parser first
# --------------------------------------------------------------------------- #

FULL_EVENT = {
    "cluster_name": "prod",
    "service_name": "api",
    "batch_size": 2,
    "max_tasks": 4,
    "min_task_age_seconds": 3600,
    "alarm_names": ["api-5xx"],
    "use_service_alarms": False,
}


def test_a_schedule_event_becomes_the_schedule_input_unchanged(deploy: Deploy) -> None:
    from recycler.model.request import parse_event

    # GIVEN two schedules, each with a full event (batches, gates, a cap, an age), one spread over lines
    second = {"cluster_name": "prod", "service_name": "web", "wait_time": 0, "dry_run": True}
    run = deploy(
        *REQUIRED,
        "--schedule",
        "cron(0 3 ? * SUN *)",
        "--schedule-event",
        json.dumps(FULL_EVENT, indent=2),
        "--schedule2",
        "rate(1 day)",
        "--schedule2-event",
        json.dumps(second),
        "--schedule2-target",
        "durable",
        "--schedule2-timezone",
        "Europe/Berlin",
    )
    # THEN each event reaches its template parameter as one line of the same JSON, which the handler accepts
    assert run.code == 0, run.err
    values = overrides(run.call("cloudformation", "deploy"))
    assert "\n" not in values["ScheduleEvent"]
    assert json.loads(values["ScheduleEvent"]) == FULL_EVENT
    assert list(json.loads(values["ScheduleEvent"])) == list(FULL_EVENT)  # same order too
    assert parse_event(json.loads(values["ScheduleEvent"])).max_tasks == 4
    assert json.loads(values["Schedule2Event"]) == second
    assert (values["Schedule2Expression"], values["Schedule2Target"], values["Schedule2Timezone"]) == (
        "rate(1 day)",
        "durable",
        "Europe/Berlin",
    )


def test_schedule_events_come_from_the_environment_too(deploy: Deploy) -> None:
    run = deploy(
        *REQUIRED,
        SCHEDULE_EXPRESSION="rate(7 days)",
        SCHEDULE_EVENT=json.dumps(FULL_EVENT),
        SCHEDULE2_EXPRESSION="rate(1 day)",
        SCHEDULE2_EVENT=json.dumps({"cluster_name": "prod", "service_name": "web"}),
    )
    assert run.code == 0, run.err
    values = overrides(run.call("cloudformation", "deploy"))
    assert json.loads(values["ScheduleEvent"]) == FULL_EVENT
    assert json.loads(values["Schedule2Event"])["service_name"] == "web"


@pytest.mark.parametrize(
    ("flag", "event", "message"),
    [
        ("--schedule-event", {**FULL_EVENT, "batch_size": 0}, "batch_size: must be between 1 and"),
        ("--schedule-event", {**FULL_EVENT, "max_task": 3}, "max_task: unknown field"),
        ("--schedule-event", {"cluster_name": "prod"}, "service_name"),
        ("--schedule-event", {**FULL_EVENT, "wait_time": "30"}, "wait_time"),
        ("--schedule-event", '{"cluster_name": "prod", }', "event: not valid JSON"),
        ("--schedule-event", [FULL_EVENT], "event: must be a JSON object"),
        ("--schedule2-event", {**FULL_EVENT, "min_task_age_seconds": -1}, "min_task_age_seconds"),
        ("--schedule2-event", {**FULL_EVENT, "alarm_names": "api-5xx"}, "alarm_names"),
    ],
    ids=["batch", "unknown", "missing", "type", "not-json", "not-object", "age-2", "alarms-2"],
)
def test_a_schedule_event_the_handler_refuses_stops_the_deploy_before_any_build_or_call(
    deploy: Deploy, tmp_path: Path, flag: str, event: object, message: str
) -> None:
    # GIVEN an event the handler's parser would refuse at the scheduled time
    text = event if isinstance(event, str) else json.dumps(event)
    schedule = "--schedule" if flag == "--schedule-event" else "--schedule2"
    build_dir = tmp_path / "build"
    # WHEN the script deploys it (building the package itself)
    run = deploy(
        *REQUIRED, schedule, "rate(7 days)", flag, text, prebuilt=False, SKIP_DEPS="1", BUILD_DIR=str(build_dir)
    )
    # THEN it stops with the field named, builds and uploads nothing, and calls no AWS API
    assert run.code == 2, run.err
    assert flag in run.err and message in run.err
    assert "Usage:" in run.err
    assert run.calls == []
    assert not build_dir.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--schedule-event", json.dumps({**FULL_EVENT, "service_name": "orders"})],
            "--schedule-event service_name orders is not among --services web,api",
        ),
        (
            ["--schedule-event", json.dumps({**FULL_EVENT, "cluster_name": "staging"})],
            "--schedule-event cluster_name staging is not --cluster prod",
        ),
        (
            ["--schedule-event", json.dumps(FULL_EVENT), "--schedule-service", "web"],
            "give --schedule-event or --schedule-service, not both",
        ),
    ],
    ids=["service", "cluster", "both"],
)
def test_a_schedule_event_the_role_could_not_run_is_refused(deploy: Deploy, args: list[str], message: str) -> None:
    run = deploy(*REQUIRED, "--schedule", "rate(7 days)", *args)
    assert run.code == 2, run.err
    assert message in run.err
    assert run.calls == []


@pytest.mark.parametrize(
    ("event", "services", "refusal"),
    [
        ({"services": ["web", "api"], "max_parallel_services": 2}, "web,api", None),
        ({"services": ["web", "orders"]}, "web,api", "orders is not among --services web,api"),
        ({"service_tags": {"recycle": "weekly"}}, "web,api", "selects its services by tag"),
        ({"service_tags": {"recycle": "weekly"}, "max_parallel_services": 2}, "*", None),
    ],
    ids=["named", "named-outside", "tags-named-role", "tags-any-service"],
)
def test_a_fleet_schedule_is_checked_against_the_services_the_role_may_recycle(
    deploy: Deploy, event: dict[str, object], services: str, refusal: str | None
) -> None:
    required = [*REQUIRED[:-1], services]
    run = deploy(
        *required,
        "--schedule",
        "cron(0 3 ? * SUN *)",
        "--schedule-event",
        json.dumps({"cluster_name": "prod", **event}),
    )
    if refusal is None:
        assert run.code == 0, run.err
        assert json.loads(overrides(run.call("cloudformation", "deploy"))["ScheduleEvent"])["cluster_name"] == "prod"
    else:
        assert run.code == 2 and refusal in run.err and run.calls == []


def test_a_schedule_event_by_arn_is_checked_by_its_names(deploy: Deploy) -> None:
    # The parser's own reading of an ARN gives the names the role is scoped to.
    event = {"cluster_name": "arn:aws:ecs:eu-west-1:123456789012:cluster/prod", "service_name": "web"}
    run = deploy(*REQUIRED, "--schedule", "rate(7 days)", "--schedule-event", json.dumps(event))
    assert run.code == 0, run.err
    assert json.loads(overrides(run.call("cloudformation", "deploy"))["ScheduleEvent"]) == event


def test_an_empty_second_schedule_removes_it_and_none_keeps_it(deploy: Deploy) -> None:
    removed = overrides(deploy(*REQUIRED, "--schedule2", "").call("cloudformation", "deploy"))
    assert removed["Schedule2Expression"] == ""
    assert "Schedule2Event" not in removed
    kept = overrides(deploy(*REQUIRED).call("cloudformation", "deploy"))
    assert "Schedule2Expression" not in kept


def test_the_event_check_runs_on_a_plain_python_without_packages() -> None:
    # The script falls back to python3 when there is no .venv: the check must need no boto3.
    event = json.dumps(FULL_EVENT)
    command = [sys.executable, "-S", "-E", "-m", "recycler.hosts.event_check", event]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [event, "prod", "api"]
    refused = subprocess.run([*command[:-1], '{"cluster_name": "prod"}'], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2
    assert refused.stderr.startswith("service_name:")


def test_python_names_the_interpreter_of_the_event_check(deploy: Deploy, tmp_path: Path) -> None:
    # GIVEN PYTHON naming an interpreter that refuses everything
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'cluster_name: checked by PYTHON' >&2\nexit 2\n")
    fake.chmod(0o755)
    run = deploy(*REQUIRED, "--schedule", "rate(7 days)", "--schedule-event", json.dumps(FULL_EVENT), PYTHON=str(fake))
    # THEN the script used it, and stopped on its answer
    assert run.code == 2
    assert "checked by PYTHON" in run.err
    assert run.calls == []
