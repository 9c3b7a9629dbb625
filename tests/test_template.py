"""cloudformation.yaml: it lints clean, describes the code that runs, and its role
allows every AWS call the engine makes, on the right resources, and nothing else."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from support import iam
from support.bed import CLUSTER as SIM_CLUSTER
from support.bed import SERVICE as SIM_SERVICE
from support.bed import Bed

from recycler.lock.history import HISTORY_INDEX

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "cloudformation.yaml"
BIN = Path(sys.executable).parent

REGION = "us-east-1"
ACCOUNT = "123456789012"
ECS = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
CLUSTER = "prod"
CLUSTER_ARN = f"{ECS}:cluster/{CLUSTER}"
PARAMS = {
    "ArtifactBucket": "artifacts-123456789012",
    "ArtifactKey": "ecs-task-recycle/0123abcd.zip",
    "TargetClusterName": CLUSTER,
    "TargetServiceNames": "web,api",
}
LOCK_TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/ecs-task-recycle-locks"
CANCEL_TAG = "ecs-task-recycle:cancel"
DURABLE_ALIAS = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:ecs-task-recycle-durable:live"

# The operations the engine calls (recycle.py), as IAM actions. The role must
# grant exactly these, plus its own logs and durable checkpoints, plus the
# optional ones when their parameter is set.
ENGINE_ACTIONS = {
    "ecs:DescribeServices",
    "ecs:UpdateService",
    "ecs:TagResource",
    "ecs:UntagResource",
    "ecs:ListTasks",
    "ecs:ListServices",
    "ecs:DescribeTasks",
    "ecs:GetTaskProtection",
    "ecs:StopTask",
    "ecs:DescribeTaskDefinition",
    "elasticloadbalancing:DescribeTargetHealth",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:RegisterScalableTarget",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "cloudwatch:DescribeAlarms",
    "lambda:InvokeFunction",
    "events:PutEvents",
}
# Made only by the flows a plain recycle without alarms does not take: cancel, the alarm gate, the hand-off,
# a fleet's selection by tag.
# Status, history and cancel are operator actions, not a recycle (the recycle writes its history item, never reads it).
OTHER_FLOWS_ACTIONS = {
    "ecs:ListServices",
    "ecs:TagResource",
    "ecs:UntagResource",
    "cloudwatch:DescribeAlarms",
    "lambda:InvokeFunction",
    "dynamodb:Query",
}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
DURABLE_ACTIONS = {"lambda:CheckpointDurableExecution", "lambda:GetDurableExecutionState"}
# Each run's EventBridge events (the default bus only).
EVENT_ACTIONS = {"events:PutEvents"}
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:smtp/password-AbCdEf"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE_ARN = "arn:aws:iam::210987654321:role/ecs-task-recycle-target"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:recycle-failures"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:recycle-failures"
# parameter -> (value, the one action it adds)
OPTIONAL = {
    "CrossAccountRoleArn": (ROLE_ARN, "sts:AssumeRole"),
    "SmtpSecretArn": (SECRET_ARN, "secretsmanager:GetSecretValue"),
    "SmtpPasswordParameterName": ("/ecs-task-recycle/smtp-password", "ssm:GetParameter"),
    "ConfigParameterName": ("/ecs-task-recycle/config", "ssm:GetParameter"),
    "SecretsKmsKeyArn": (KMS_KEY_ARN, "kms:Decrypt"),
    "OnFailureDestinationArn": (TOPIC_ARN, "sns:Publish"),
}
# Actions that may have Resource "*", and why (the YAML says so in a comment).
WILDCARD_RESOURCE_OK = {
    "ecs:ListTasks",  # resource type is the container instance; scoped by ecs:cluster
    "ecs:ListServices",  # no resource type; scoped by ecs:cluster
    "ecs:DescribeTaskDefinition",  # no resource-level permissions
    "elasticloadbalancing:DescribeTargetHealth",  # no resource-level permissions
    "application-autoscaling:DescribeScalableTargets",  # no resource-level permissions
    "application-autoscaling:RegisterScalableTarget",  # opaque target id; scoped by condition keys
}


def template() -> dict[str, Any]:
    return iam.load_template(TEMPLATE)


def resources_of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template()["Resources"].items() if r["Type"] == kind}


def resolved(name: str, **parameters: str) -> dict[str, Any]:
    """A resource's properties with every intrinsic function resolved."""
    resolver = iam.Resolver(template(), {**PARAMS, **parameters})
    return dict(resolver.resolve(template()["Resources"][name].get("Properties", {})))


def api(service: str, operation: str, /, **params: Any) -> list[dict[str, Any]]:
    return iam.calls_from_api(service, operation, params, region=REGION, account=ACCOUNT)


def allowed(action: str, resource: str, context: dict[str, Any] | None = None, /, **parameters: str) -> bool:
    return iam.allowed(TEMPLATE, action, resource, context or {}, {**PARAMS, **parameters})


def tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: install requirements-dev.txt")
    return found


# --------------------------------------------------------------------------- #
# Linters
# --------------------------------------------------------------------------- #


def test_cfn_lint_reports_no_error_warning_or_info() -> None:
    # GIVEN the template WHEN cfn-lint checks it (exit code: 2 error, 4 warning, 8 info)
    result = subprocess.run([tool("cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, check=False)
    # THEN it reports nothing at all
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def shell_scripts() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--", "*.sh", ".ci/run"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    tracked = {ROOT / line for line in listed.stdout.splitlines() if line}
    on_disk = {*ROOT.glob("*.sh"), *ROOT.glob("scripts/*.sh"), *ROOT.glob(".ci/run")}
    return sorted(p for p in tracked | on_disk if p.is_file())


def test_shellcheck_passes_on_every_script() -> None:
    scripts = shell_scripts()
    assert ROOT / "lambda_build.sh" in scripts and ROOT / "cloudformation_deploy.sh" in scripts
    result = subprocess.run(
        [tool("shellcheck"), "--external-sources", *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- #
# The functions
# --------------------------------------------------------------------------- #


def test_parameter_defaults_match_the_documented_ones() -> None:
    parameters = template()["Parameters"]
    assert parameters["Runtime"]["Default"] == "python3.13"
    assert parameters["Timeout"]["Default"] == 900 and parameters["Timeout"]["MaxValue"] == 900
    assert parameters["MemorySize"]["Default"] == 256
    assert parameters["LogRetentionInDays"]["Default"] == 7
    assert parameters["LogLevel"]["Default"] == "INFO"
    assert parameters["DurableExecutionTimeout"]["Default"] == 86400
    # No default: the role's scope is always a deliberate choice.
    assert "Default" not in parameters["TargetClusterName"]
    assert "Default" not in parameters["TargetServiceNames"]


def test_standard_function_runs_the_handler_from_the_s3_artifact() -> None:
    props = resolved("Function")
    assert props["Handler"] == "lambda_function.lambda_handler"
    assert props["Runtime"] == "python3.13"
    assert props["Timeout"] == "900" and props["MemorySize"] == "256"
    assert props["Code"] == {"S3Bucket": PARAMS["ArtifactBucket"], "S3Key": PARAMS["ArtifactKey"]}
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert props["LoggingConfig"]["ApplicationLogLevel"] == "INFO"
    assert props["LoggingConfig"]["LogGroup"] == "/aws/lambda/ecs-task-recycle"
    assert resolved("Function", LogLevel="DEBUG")["LoggingConfig"]["ApplicationLogLevel"] == "DEBUG"


def test_no_inline_placeholder_code_anywhere() -> None:
    for name, function in resources_of_type("AWS::Lambda::Function").items():
        assert set(function["Properties"]["Code"]) == {"S3Bucket", "S3Key"}, name
    assert "ZipFile" not in TEMPLATE.read_text()


def test_log_groups_are_explicit_with_retention_and_a_deletion_policy() -> None:
    groups = resources_of_type("AWS::Logs::LogGroup")
    assert set(groups) == {"LogGroup", "DurableLogGroup"}
    for name, group in groups.items():
        assert group["DeletionPolicy"] in ("Delete", "Retain", "RetainExceptOnUpdate"), name
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert resolved("LogGroup")["LogGroupName"] == "/aws/lambda/ecs-task-recycle"
    assert resolved("DurableLogGroup")["LogGroupName"] == "/aws/lambda/ecs-task-recycle-durable"
    assert resolved("DurableFunction")["LoggingConfig"]["LogGroup"] == "/aws/lambda/ecs-task-recycle-durable"


def test_asynchronous_invocations_are_never_retried() -> None:
    configs = resources_of_type("AWS::Lambda::EventInvokeConfig")
    assert {c["Properties"]["FunctionName"]["Ref"] for c in configs.values()} == {"Function", "DurableFunction"}
    for name, config in configs.items():
        props = config["Properties"]
        assert props["MaximumRetryAttempts"] == 0, name
        assert 60 <= props["MaximumEventAgeInSeconds"] <= 21600, name
    # The durable function is invoked through its alias, so that is where the config goes.
    assert configs["DurableInvokeConfig"]["Properties"]["Qualifier"] == resolved("DurableAlias")["Name"]


def test_failure_destination_is_optional_and_the_role_may_deliver_to_it() -> None:
    assert "DestinationConfig" not in resolved("FunctionInvokeConfig")
    for arn, action in ((TOPIC_ARN, "sns:Publish"), (QUEUE_ARN, "sqs:SendMessage")):
        for config in ("FunctionInvokeConfig", "DurableInvokeConfig"):
            props = resolved(config, OnFailureDestinationArn=arn)
            assert props["DestinationConfig"] == {"OnFailure": {"Destination": arn}}
        assert allowed(action, arn, OnFailureDestinationArn=arn)
        assert not allowed(action, arn.replace("recycle-failures", "other"), OnFailureDestinationArn=arn)
        assert not allowed(action, arn)


def test_durable_function_shares_the_artifact_and_is_started_through_an_alias() -> None:
    props = resolved("DurableFunction")
    assert props["Handler"] == "durable_function.lambda_handler"
    assert props["Code"] == resolved("Function")["Code"]
    assert props["Role"] == resolved("Function")["Role"] == f"arn:aws:iam::{ACCOUNT}:role/stack-FunctionRole"
    assert props["DurableConfig"] == {"ExecutionTimeout": "86400", "RetentionPeriodInDays": "14"}
    assert (
        resolved("DurableFunction", DurableExecutionTimeout="172800")["DurableConfig"]["ExecutionTimeout"] == "172800"
    )
    limits = template()["Parameters"]["DurableExecutionTimeout"]
    assert limits["MaxValue"] <= 31622400
    alias = template()["Resources"]["DurableAlias"]["Properties"]
    assert alias["FunctionVersion"] == {"Fn::GetAtt": ["DurableVersion", "Version"]}
    version = template()["Resources"]["DurableVersion"]
    # A new artifact key must publish a new version (the description changes).
    assert PARAMS["ArtifactKey"] in resolved("DurableVersion")["Description"]
    assert version["UpdateReplacePolicy"] == "Retain"
    # The code bounds its worst case by the same ExecutionTimeout the function has.
    long = resolved("DurableFunction", DurableExecutionTimeout="172800")
    assert long["Environment"]["Variables"]["DURABLE_EXECUTION_TIMEOUT_SECONDS"] == "172800"
    assert "172800" in resolved("DurableVersion", DurableExecutionTimeout="172800")["Description"]


def test_every_arn_is_partition_aware() -> None:
    assert "arn:aws:" not in TEMPLATE.read_text()


def test_outputs_name_the_functions_role_and_log_groups() -> None:
    outputs = template()["Outputs"]
    for name in ("FunctionName", "FunctionArn", "RoleArn", "LogGroupName", "DurableFunctionAliasArn"):
        assert name in outputs


# --------------------------------------------------------------------------- #
# The optional schedule
# --------------------------------------------------------------------------- #

EVENT = {"cluster_name": CLUSTER, "service_name": "web", "maintain_service_state": True, "wait_time": 45}
SCHEDULE = {
    "ScheduleExpression": "cron(0 3 ? * SUN *)",
    "ScheduleTimezone": "Europe/Berlin",
    "ScheduleEvent": json.dumps(EVENT),
}
# Every kind of field the event table has: batches, gates, caps, ages, alarms.
FULL_EVENT = {
    "cluster_name": CLUSTER,
    "service_name": "api",
    "batch_size": 2,
    "max_tasks": 4,
    "min_task_age_seconds": 3600,
    "alarm_names": ["api-5xx"],
    "use_service_alarms": False,
    "hand_off": False,
}


def test_no_schedule_unless_an_expression_is_given() -> None:
    resolver = iam.Resolver(template(), PARAMS)
    assert resolver.condition("HasSchedule") is False
    assert resolver.condition("HasSchedule2") is False
    assert resolver.condition("HasAnySchedule") is False
    assert template()["Resources"]["Schedule"]["Condition"] == "HasSchedule"
    assert template()["Resources"]["Schedule2"]["Condition"] == "HasSchedule2"
    assert template()["Resources"]["ScheduleRole"]["Condition"] == "HasAnySchedule"


def test_schedule_sends_a_recycle_event_the_handler_accepts() -> None:
    from recycler.model.request import parse_event

    # GIVEN a schedule WHEN its payload is resolved
    props = resolved("Schedule", **SCHEDULE)
    event = json.loads(props["Target"]["Input"])
    # THEN it is exactly the recycle event, with JSON types
    assert props["Target"]["Input"] == SCHEDULE["ScheduleEvent"]
    assert event == EVENT
    request = parse_event(event)
    assert (request.cluster, request.service, request.wait_time) == (CLUSTER, "web", 45)
    # AND the other fields
    assert props["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert props["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert props["Target"]["Arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:ecs-task-recycle"


@pytest.mark.parametrize(
    ("expression", "event"), [("ScheduleExpression", "ScheduleEvent"), ("Schedule2Expression", "Schedule2Event")]
)
def test_a_schedule_carries_any_event_exactly(expression: str, event: str) -> None:
    from recycler.model.request import parse_event

    # GIVEN an event with batches, gates, a cap and an age, as the JSON parameter
    text = json.dumps(FULL_EVENT)
    resource = "Schedule" if expression == "ScheduleExpression" else "Schedule2"
    props = resolved(resource, **{expression: "rate(7 days)", event: text})
    # THEN the schedule's input is that text, unchanged, and the handler parses every field of it
    assert props["Target"]["Input"] == text
    request = parse_event(json.loads(props["Target"]["Input"]))
    assert (request.batch_size, request.max_tasks, request.min_task_age_seconds) == (2, 4, 3600)
    assert (request.alarm_names, request.use_service_alarms, request.hand_off) == (("api-5xx",), False, False)


def test_an_expression_without_its_event_is_refused_by_a_rule() -> None:
    rules = template()["Rules"]
    for expression, event in (("ScheduleExpression", "ScheduleEvent"), ("Schedule2Expression", "Schedule2Event")):
        rule = next(
            r for r in rules.values() if r["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": expression}, ""]}]}
        )
        assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": event}, ""]}]}
        assert event in rule["Assertions"][0]["AssertDescription"]
    # AND the old four-field parameters are gone: the event is the one source of the scheduled run's fields
    for gone in ("ScheduleClusterName", "ScheduleServiceName", "ScheduleMaintainServiceState", "ScheduleWaitTime"):
        assert gone not in template()["Parameters"]


def test_two_schedules_each_with_their_own_target_and_one_invoke_role() -> None:
    # GIVEN a standard schedule and a durable second schedule
    second = json.dumps({**FULL_EVENT, "service_name": "web"})
    parameters = {
        **SCHEDULE,
        "Schedule2Expression": "cron(0 4 ? * SAT *)",
        "Schedule2Event": second,
        "Schedule2Target": "durable",
    }
    first, other = resolved("Schedule", **parameters), resolved("Schedule2", **parameters)
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:ecs-task-recycle"
    # THEN each starts its own function with its own event, through the one schedule role
    assert first["Target"]["Arn"] == function_arn and other["Target"]["Arn"] == DURABLE_ALIAS
    assert other["Target"]["Input"] == second
    assert other["ScheduleExpression"] == "cron(0 4 ? * SAT *)"
    assert other["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert first["Target"]["RoleArn"] == other["Target"]["RoleArn"]
    scope = {**PARAMS, **parameters}
    for arn in (function_arn, DURABLE_ALIAS):
        assert iam.allowed(TEMPLATE, "lambda:InvokeFunction", arn, {}, scope, role="ScheduleRole")
    # AND the second schedule alone (no first) still has its role, which may start only its target
    alone = {**PARAMS, "Schedule2Expression": "rate(1 day)", "Schedule2Event": second, "Schedule2Target": "durable"}
    assert iam.Resolver(template(), alone).condition("HasAnySchedule") is True
    assert iam.allowed(TEMPLATE, "lambda:InvokeFunction", DURABLE_ALIAS, {}, alone, role="ScheduleRole")
    assert not iam.allowed(TEMPLATE, "lambda:InvokeFunction", function_arn, {}, alone, role="ScheduleRole")


def test_schedule_can_start_the_durable_alias_with_its_own_invoke_role() -> None:
    staging = json.dumps({**EVENT, "cluster_name": "staging"})
    props = resolved("Schedule", **{**SCHEDULE, "ScheduleEvent": staging}, ScheduleTarget="durable")
    alias_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:ecs-task-recycle-durable:live"
    assert props["Target"]["Arn"] == alias_arn
    assert json.loads(props["Target"]["Input"])["cluster_name"] == "staging"
    assert props["Target"]["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/stack-ScheduleRole"
    parameters = {**PARAMS, **SCHEDULE, "ScheduleTarget": "durable"}
    assert iam.allowed(TEMPLATE, "lambda:InvokeFunction", alias_arn, {}, parameters, role="ScheduleRole")
    assert not iam.allowed(
        TEMPLATE, "lambda:InvokeFunction", alias_arn.replace("-durable:live", ""), {}, parameters, role="ScheduleRole"
    )
    assert iam.policy_actions(TEMPLATE, parameters, role="ScheduleRole") == {"lambda:InvokeFunction"}
    # The functions' role may invoke the durable alias (the hand-off) and nothing else.
    assert allowed("lambda:InvokeFunction", alias_arn, **SCHEDULE)
    assert not allowed("lambda:InvokeFunction", props["Target"]["Arn"].replace("-durable:live", ""), **SCHEDULE)


# --------------------------------------------------------------------------- #
# EventBridge: run events on the default bus, final states to an optional topic
# --------------------------------------------------------------------------- #

DEFAULT_BUS = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
FINAL_DETAIL_TYPES = [
    f"ECS Task Recycle {state}" for state in ("Succeeded", "Failed", "Cancelled", "Incomplete", "Refused")
]


def test_run_events_may_go_to_the_default_bus_only() -> None:
    assert allowed("events:PutEvents", DEFAULT_BUS)
    assert not allowed("events:PutEvents", DEFAULT_BUS.replace("/default", "/other"))
    assert not allowed("events:PutEvents", DEFAULT_BUS.replace(ACCOUNT, "210987654321"))
    assert not allowed("events:PutEvents", DEFAULT_BUS.replace(REGION, "eu-west-1"))
    statement = next(
        s for s in iam.role_statements(TEMPLATE, PARAMS) if "events:PutEvents" in iam._as_list(s["Action"])
    )
    assert iam._as_list(statement["Resource"]) == [DEFAULT_BUS]
    assert iam._as_list(statement["Action"]) == ["events:PutEvents"]
    # Partition-aware: the ARN follows the stack's partition.
    china = iam.role_statements(TEMPLATE, PARAMS, pseudo={"AWS::Partition": "aws-cn", "AWS::Region": "cn-north-1"})
    put = next(s for s in china if "events:PutEvents" in iam._as_list(s["Action"]))
    assert put["Resource"] == f"arn:aws-cn:events:cn-north-1:{ACCOUNT}:event-bus/default"


def test_no_notification_rule_without_a_topic() -> None:
    assert iam.Resolver(template(), PARAMS).condition("HasNotificationTopic") is False
    assert template()["Resources"]["NotificationRule"]["Condition"] == "HasNotificationTopic"
    # The stack does not own the topic, so it never replaces the topic's policy.
    assert resources_of_type("AWS::SNS::TopicPolicy") == {}


def test_the_notification_topic_gets_each_final_state_from_this_tool_only() -> None:
    props = resolved("NotificationRule", NotificationTopicArn=TOPIC_ARN)
    assert props["EventBusName"] == "default"
    assert props["State"] == "ENABLED"
    assert props["EventPattern"] == {"source": ["ecs-task-recycle"], "detail-type": FINAL_DETAIL_TYPES}
    assert [target["Arn"] for target in props["Targets"]] == [TOPIC_ARN]
    # The functions' role needs nothing for it: EventBridge delivers with the topic's policy.
    assert "sns:Publish" not in iam.policy_actions(TEMPLATE, {**PARAMS, "NotificationTopicArn": TOPIC_ARN})


# --------------------------------------------------------------------------- #
# The execution role: positive cases
# --------------------------------------------------------------------------- #

WEB_ARN = f"{ECS}:service/{CLUSTER}/web"
TASK_ARN = f"{ECS}:task/{CLUSTER}/0123456789abcdef0123456789abcdef"
ENGINE_CALLS = [
    *api("ecs", "DescribeServices", cluster=CLUSTER, services=["web"], include=["TAGS"]),
    *api("ecs", "DescribeServices", cluster=CLUSTER, services=["api"]),
    *api("ecs", "UpdateService", cluster=CLUSTER, service="web", desiredCount=6),
    *api("dynamodb", "GetItem", TableName="ecs-task-recycle-locks"),
    *api("dynamodb", "PutItem", TableName="ecs-task-recycle-locks"),
    *api("dynamodb", "UpdateItem", TableName="ecs-task-recycle-locks"),
    *api("dynamodb", "Query", TableName="ecs-task-recycle-locks", IndexName="history"),
    *api("ecs", "ListTasks", cluster=CLUSTER, serviceName="web", desiredStatus="RUNNING"),
    *api("ecs", "DescribeTasks", cluster=CLUSTER, tasks=[TASK_ARN, "fedcba9876543210fedcba9876543210"]),
    *api("ecs", "StopTask", cluster=CLUSTER, task=TASK_ARN, reason="ecs-task-recycle"),
    *api("ecs", "GetTaskProtection", cluster=CLUSTER, tasks=[TASK_ARN]),
    *api("ecs", "DescribeTaskDefinition", taskDefinition="web:42"),
    *api("elbv2", "DescribeTargetHealth", TargetGroupArn="arn:aws:elasticloadbalancing:tg"),
    *api("application-autoscaling", "DescribeScalableTargets", ServiceNamespace="ecs"),
    *api(
        "application-autoscaling",
        "RegisterScalableTarget",
        ServiceNamespace="ecs",
        ResourceId="service/prod/web",
        ScalableDimension="ecs:service:DesiredCount",
    ),
    *api("ecs", "TagResource", resourceArn=WEB_ARN, tags=[{"key": CANCEL_TAG, "value": "by=x at=y"}]),
    *api("ecs", "UntagResource", resourceArn=WEB_ARN, tagKeys=[CANCEL_TAG]),
    *api("cloudwatch", "DescribeAlarms", AlarmNames=["web-5xx", "web-latency"]),
    *api("lambda", "Invoke", FunctionName=DURABLE_ALIAS, InvocationType="Event"),
    *api("sts", "GetCallerIdentity"),
    *api("events", "PutEvents", Entries=[{"Source": "ecs-task-recycle", "EventBusName": "default"}]),
]
DURABLE_EXECUTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:ecs-task-recycle-durable:live/durable-execution/x/y"


@pytest.mark.parametrize("call", ENGINE_CALLS, ids=lambda c: f"{c['action']}:{c['resource'].rsplit(':', 1)[-1]}")
def test_engine_call_is_allowed_on_the_named_services(call: dict[str, Any]) -> None:
    assert iam.check_calls(TEMPLATE, [call], PARAMS) == []


def test_events_go_to_the_default_bus_only() -> None:
    for bus in (
        "custom",
        f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/custom",
        f"arn:aws:events:{REGION}:1:event-bus/default",
    ):
        (call,) = api("events", "PutEvents", Entries=[{"Source": "ecs-task-recycle", "EventBusName": bus}])
        assert not allowed(call["action"], call["resource"]), bus


def test_durable_function_may_checkpoint_its_own_executions_only() -> None:
    for operation in ("CheckpointDurableExecution", "GetDurableExecutionState"):
        (call,) = api("lambda", operation, DurableExecutionArn=DURABLE_EXECUTION)
        assert allowed(call["action"], call["resource"])
        other = DURABLE_EXECUTION.replace("ecs-task-recycle-durable", "someone-else")
        assert not allowed(call["action"], other)
        plain = DURABLE_EXECUTION.replace("ecs-task-recycle-durable", "ecs-task-recycle")
        assert not allowed(call["action"], plain)


def test_functions_write_to_their_own_log_groups_only() -> None:
    for group in ("/aws/lambda/ecs-task-recycle", "/aws/lambda/ecs-task-recycle-durable"):
        stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:2026/01/01/[$LATEST]abc"
        assert allowed("logs:PutLogEvents", stream) and allowed("logs:CreateLogStream", stream)
    other = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/other:log-stream:x"
    assert not allowed("logs:PutLogEvents", other)
    assert not allowed("logs:CreateLogGroup", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/ecs-task-recycle")


def test_wildcards_widen_the_scope_to_any_cluster_or_service() -> None:
    anywhere = {"TargetClusterName": "*", "TargetServiceNames": "*"}
    other_task = f"{ECS}:task/staging/0123"
    assert allowed("ecs:StopTask", other_task, {"ecs:cluster": f"{ECS}:cluster/staging"}, **anywhere)
    assert allowed("ecs:UpdateService", f"{ECS}:service/staging/billing", **anywhere)
    assert allowed("ecs:ListTasks", "*", {"ecs:cluster": f"{ECS}:cluster/staging"}, **anywhere)
    # Any service of one cluster
    assert allowed("ecs:UpdateService", f"{ECS}:service/prod/billing", TargetServiceNames="*")
    assert not allowed("ecs:UpdateService", f"{ECS}:service/staging/billing", TargetServiceNames="*")
    # Still nothing beyond the engine's operations
    assert not allowed("ecs:DeleteService", f"{ECS}:service/staging/billing", **anywhere)


def test_up_to_ten_services_can_be_named() -> None:
    names = [f"svc{i}" for i in range(10)]
    for name in names:
        assert allowed("ecs:UpdateService", f"{ECS}:service/{CLUSTER}/{name}", TargetServiceNames=",".join(names))
    assert not allowed("ecs:UpdateService", f"{ECS}:service/{CLUSTER}/svc10", TargetServiceNames=",".join(names))
    pattern = template()["Parameters"]["TargetServiceNames"]["AllowedPattern"]
    assert re.fullmatch(pattern, ",".join(names))
    assert re.fullmatch(pattern, "*")
    assert not re.fullmatch(pattern, ",".join([*names, "svc10"]))
    assert not re.fullmatch(pattern, "web, api")
    assert not re.fullmatch(pattern, "web,*")


def test_list_services_is_allowed_on_the_named_cluster_only() -> None:
    # GIVEN the role for one cluster WHEN a fleet lists that cluster's services THEN it is allowed
    assert iam.check_calls(TEMPLATE, api("ecs", "ListServices", cluster=CLUSTER), PARAMS) == []
    assert iam.check_calls(TEMPLATE, api("ecs", "ListServices", cluster=CLUSTER_ARN), PARAMS) == []
    # WHEN it lists another cluster's THEN it is refused
    assert iam.check_calls(TEMPLATE, api("ecs", "ListServices", cluster="staging"), PARAMS) != []
    # AND with TargetClusterName * any cluster of the account may be listed
    assert allowed("ecs:ListServices", "*", {"ecs:cluster": OTHER_CLUSTER_ARN}, TargetClusterName="*")


TAG_SCOPE = {"TargetServiceNames": "*", "ServiceTagKey": "recycle", "ServiceTagValue": "weekly"}
TAGGED = {"aws:ResourceTag/recycle": "weekly"}


def test_the_tag_scope_allows_changes_to_tagged_services_only() -> None:
    web, billing = f"{ECS}:service/{CLUSTER}/web", f"{ECS}:service/{CLUSTER}/billing"
    cluster = {"ecs:cluster": CLUSTER_ARN}
    # GIVEN no tag scope WHEN any service of the cluster is updated (TargetServiceNames *) THEN it is allowed
    assert allowed("ecs:UpdateService", billing, cluster, TargetServiceNames="*")
    # GIVEN the tag scope recycle=weekly WHEN a service carrying it is updated or cancelled THEN it is allowed
    assert allowed("ecs:UpdateService", web, {**cluster, **TAGGED}, **TAG_SCOPE)
    assert allowed("ecs:TagResource", web, {**TAGGED, "aws:TagKeys": [CANCEL_TAG]}, **TAG_SCOPE)
    # WHEN the service carries no such tag, or another value THEN it is refused
    assert not allowed("ecs:UpdateService", billing, cluster, **TAG_SCOPE)
    assert not allowed("ecs:UpdateService", billing, {**cluster, "aws:ResourceTag/recycle": "never"}, **TAG_SCOPE)
    assert not allowed("ecs:TagResource", billing, {"aws:TagKeys": [CANCEL_TAG]}, **TAG_SCOPE)
    # AND the names still scope it: a tagged service the role does not name is refused
    assert not allowed(
        "ecs:UpdateService", billing, {**cluster, **TAGGED}, **{**TAG_SCOPE, "TargetServiceNames": "web"}
    )
    # AND reading and listing (to find the tagged services) are not tag-scoped
    assert allowed("ecs:DescribeServices", billing, cluster, **TAG_SCOPE)
    assert allowed("ecs:ListServices", "*", cluster, **TAG_SCOPE)
    # AND StopTask stays scoped to the cluster's tasks (a task has its service's tags only when propagated)
    assert allowed("ecs:StopTask", TASK_ARN, cluster, **TAG_SCOPE)


def test_with_service_tag_on_tasks_a_task_must_carry_the_tag_to_be_stopped() -> None:
    cluster = {"ecs:cluster": CLUSTER_ARN}
    on_tasks = {**TAG_SCOPE, "ServiceTagOnTasks": "true"}
    # GIVEN the tag scope on tasks WHEN a task carrying the tag (propagated from its service) is stopped THEN allowed
    assert allowed("ecs:StopTask", TASK_ARN, {**cluster, **TAGGED}, **on_tasks)
    # WHEN the task carries no tag THEN refused
    assert not allowed("ecs:StopTask", TASK_ARN, cluster, **on_tasks)
    # AND without a tag key the switch does nothing
    assert allowed("ecs:StopTask", TASK_ARN, cluster, TargetServiceNames="*", ServiceTagOnTasks="true")
    # AND reading tasks is never tag-scoped
    assert allowed("ecs:DescribeTasks", TASK_ARN, cluster, **on_tasks)


def test_the_tag_scope_is_one_policy_present_only_when_its_key_is_set() -> None:
    scoped = iam.role_statements(TEMPLATE, {**PARAMS, **TAG_SCOPE})
    plain = iam.role_statements(TEMPLATE, {**PARAMS, "TargetServiceNames": "*"})
    (deny,) = [s for s in scoped if s not in plain]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"StringNotEquals": TAGGED}
    assert template()["Rules"]["ServiceTagScopeHasAValue"]["RuleCondition"]
    pattern = template()["Parameters"]["ServiceTagKey"]["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, "team:owner") and not re.fullmatch(pattern, 'a"b')


# --------------------------------------------------------------------------- #
# The execution role: negative cases
# --------------------------------------------------------------------------- #

OTHER_CLUSTER_ARN = f"{ECS}:cluster/staging"


@pytest.mark.parametrize(
    ("action", "resource", "context"),
    [
        pytest.param(
            "ecs:StopTask", f"{ECS}:task/staging/0123", {"ecs:cluster": OTHER_CLUSTER_ARN}, id="stop-other-cluster"
        ),
        pytest.param("ecs:StopTask", TASK_ARN, {"ecs:cluster": OTHER_CLUSTER_ARN}, id="stop-cluster-mismatch"),
        pytest.param(
            "ecs:DescribeTasks", f"{ECS}:task/staging/0123", {"ecs:cluster": OTHER_CLUSTER_ARN}, id="describe-other"
        ),
        pytest.param("ecs:UpdateService", f"{ECS}:service/{CLUSTER}/billing", {}, id="update-unnamed-service"),
        pytest.param("ecs:UpdateService", f"{ECS}:service/{CLUSTER}/web-canary", {}, id="update-name-prefix"),
        pytest.param("ecs:UpdateService", f"{ECS}:service/staging/web", {}, id="update-same-name-other-cluster"),
        pytest.param("ecs:DescribeServices", f"{ECS}:service/staging/web", {}, id="describe-other-cluster"),
        pytest.param("ecs:ListTasks", "*", {"ecs:cluster": OTHER_CLUSTER_ARN}, id="list-other-cluster"),
        pytest.param("ecs:ListTasks", "*", {}, id="list-without-cluster"),
        pytest.param("ecs:TagResource", WEB_ARN, {"aws:TagKeys": ["ecs-task-recycle:lock"]}, id="tag-lock"),
        pytest.param("ecs:TagResource", WEB_ARN, {"aws:TagKeys": [CANCEL_TAG, "owner"]}, id="tag-cancel-and-other"),
        pytest.param("ecs:TagResource", WEB_ARN, {}, id="tag-without-keys"),
        pytest.param("ecs:UntagResource", WEB_ARN, {"aws:TagKeys": ["owner"]}, id="untag-other-key"),
        pytest.param(
            "ecs:TagResource", f"{ECS}:service/{CLUSTER}/billing", {"aws:TagKeys": [CANCEL_TAG]}, id="tag-unnamed"
        ),
        pytest.param("lambda:InvokeFunction", DURABLE_ALIAS.replace(":live", ""), {}, id="invoke-unqualified"),
        pytest.param("lambda:InvokeFunction", DURABLE_ALIAS.replace(":live", ":1"), {}, id="invoke-a-version"),
        pytest.param("cloudwatch:PutMetricAlarm", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:x", {}, id="put-alarm"),
        pytest.param("dynamodb:DeleteItem", LOCK_TABLE_ARN, {}, id="delete-lock-item"),
        pytest.param("dynamodb:Scan", LOCK_TABLE_ARN, {}, id="scan-lock-table"),
        pytest.param("dynamodb:PutItem", LOCK_TABLE_ARN.replace("-locks", "-other"), {}, id="put-other-table"),
        pytest.param(
            "application-autoscaling:RegisterScalableTarget",
            "*",
            {
                "application-autoscaling:service-namespace": "dynamodb",
                "application-autoscaling:scalable-dimension": "dynamodb:table:ReadCapacityUnits",
            },
            id="register-other-namespace",
        ),
        pytest.param("ecs:DeleteService", WEB_ARN, {}, id="delete-service"),
        pytest.param("ecs:RunTask", "*", {"ecs:cluster": CLUSTER_ARN}, id="run-task"),
        pytest.param("ecs:ListServices", "*", {"ecs:cluster": OTHER_CLUSTER_ARN}, id="list-services-other-cluster"),
        pytest.param("ecs:ListServices", "*", {}, id="list-services-without-cluster"),
        pytest.param("ecs:ListTagsForResource", WEB_ARN, {}, id="list-tags"),
        pytest.param("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/x", {}, id="pass-role"),
        pytest.param("sts:AssumeRole", ROLE_ARN, {}, id="assume-role-not-configured"),
        pytest.param("secretsmanager:GetSecretValue", SECRET_ARN, {}, id="secret-not-configured"),
        pytest.param("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/x", {}, id="ssm-not-configured"),
        pytest.param("kms:Decrypt", KMS_KEY_ARN, {}, id="kms-not-configured"),
        pytest.param("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:x", {}, id="invoke"),
    ],
)
def test_role_refuses(action: str, resource: str, context: dict[str, Any]) -> None:
    assert not allowed(action, resource, context)


OPTIONAL_RESOURCES = {
    # parameter -> (the resource it grants, a resource it must not grant)
    "CrossAccountRoleArn": (ROLE_ARN, ROLE_ARN.replace("ecs-task-recycle-target", "admin")),
    "SmtpSecretArn": (SECRET_ARN, SECRET_ARN.replace("smtp/password", "database/password")),
    "SmtpPasswordParameterName": (
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ecs-task-recycle/smtp-password",
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/database/password",
    ),
    "ConfigParameterName": (
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ecs-task-recycle/config",
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ecs-task-recycle/config-other",
    ),
    "SecretsKmsKeyArn": (KMS_KEY_ARN, KMS_KEY_ARN.replace("1234abcd", "9999abcd")),
    "OnFailureDestinationArn": (TOPIC_ARN, TOPIC_ARN.replace("recycle-failures", "other")),
}


@pytest.mark.parametrize("parameter", sorted(OPTIONAL))
def test_optional_permission_exists_only_with_its_parameter(parameter: str) -> None:
    value, action = OPTIONAL[parameter]
    resource, other_resource = OPTIONAL_RESOURCES[parameter]
    context = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"} if action == "kms:Decrypt" else {}
    # GIVEN no value: no permission
    assert not allowed(action, resource, context)
    assert action not in iam.policy_actions(TEMPLATE, PARAMS)
    # GIVEN the value: the permission, on that resource only
    assert allowed(action, resource, context, **{parameter: value})
    assert not allowed(action, other_resource, context, **{parameter: value})


def test_kms_key_is_usable_only_through_secrets_manager_or_ssm() -> None:
    with_key = {"SecretsKmsKeyArn": KMS_KEY_ARN}
    assert allowed("kms:Decrypt", KMS_KEY_ARN, {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}, **with_key)
    assert not allowed("kms:Decrypt", KMS_KEY_ARN, {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}, **with_key)
    assert not allowed("kms:Decrypt", KMS_KEY_ARN, {}, **with_key)


def test_secret_and_parameter_resolve_from_the_notifier_call_shapes() -> None:
    parameters = {
        "SmtpSecretArn": SECRET_ARN,
        "SmtpPasswordParameterName": "/ecs-task-recycle/smtp-password",
        "CrossAccountRoleArn": ROLE_ARN,
    }
    calls = [
        *api("secretsmanager", "GetSecretValue", SecretId=SECRET_ARN),
        *api("ssm", "GetParameter", Name="/ecs-task-recycle/smtp-password", WithDecryption=True),
        *api("sts", "AssumeRole", RoleArn=ROLE_ARN, RoleSessionName="ecs-task-recycle"),
    ]
    assert iam.check_calls(TEMPLATE, calls, {**PARAMS, **parameters}) == []
    assert len(iam.check_calls(TEMPLATE, calls, PARAMS)) == 3


# --------------------------------------------------------------------------- #
# Every action the code calls is in the policy, and nothing else is
# --------------------------------------------------------------------------- #


def test_policy_grants_exactly_the_engine_actions_by_default() -> None:
    assert iam.policy_actions(TEMPLATE, PARAMS) == ENGINE_ACTIONS | LOG_ACTIONS | DURABLE_ACTIONS | EVENT_ACTIONS


def test_policy_grants_exactly_the_optional_actions_when_configured() -> None:
    every_option = {parameter: value for parameter, (value, _) in OPTIONAL.items()}
    expected = (
        ENGINE_ACTIONS | LOG_ACTIONS | DURABLE_ACTIONS | EVENT_ACTIONS | {action for _, action in OPTIONAL.values()}
    )
    assert iam.policy_actions(TEMPLATE, {**PARAMS, **every_option}) == expected
    with_queue = {**PARAMS, **every_option, "OnFailureDestinationArn": QUEUE_ARN}
    assert iam.policy_actions(TEMPLATE, with_queue) == (expected - {"sns:Publish"}) | {"sqs:SendMessage"}


# The engine's client attributes (self.<attribute>.<operation>) -> botocore service names.
ENGINE_CLIENTS = {
    "ecs": "ecs",
    "autoscaling": "application-autoscaling",
    "elbv2": "elbv2",
    "dynamodb": "dynamodb",
    "cloudwatch": "cloudwatch",
    "lambda_client": "lambda",
    "events": "events",
}


# The CLI's calls on the deployed functions (--invoke, --follow), made with the operator's own credentials on
# the operator's machine: never the role's. The README lists what they need.
OPERATOR_MODULES = {"recycler/aws/functions.py"}
OPERATOR_ACTIONS = {"lambda:GetFunctionConfiguration", "lambda:InvokeFunction"}


def _engine_operations_in_source() -> set[str]:
    """The AWS operations the engine's modules (the recycler package) call through their clients, as IAM actions."""
    session = botocore.session.get_session()
    found: set[str] = set()
    for path in sorted((ROOT / "recycler").rglob("*.py")):
        if str(path.relative_to(ROOT)) not in OPERATOR_MODULES:
            found |= _operations_in(session, path.read_text(), ENGINE_CLIENTS)
    return found


def test_the_operators_own_calls_are_the_ones_the_readme_lists() -> None:
    session = botocore.session.get_session()
    found: set[str] = set()
    for module in OPERATOR_MODULES:
        found |= _operations_in(session, (ROOT / module).read_text(), {"lambda_client": "lambda"})
    assert found == OPERATOR_ACTIONS
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{action}`" in readme for action in OPERATOR_ACTIONS)


def _operations_in(session: Any, source: str, clients: dict[str, str]) -> set[str]:
    found: set[str] = set()
    for attribute, service in clients.items():
        model = session.get_service_model(service)
        by_snake = {botocore.xform_name(name): name for name in model.operation_names}
        # self.ecs.x, self.reads.ecs.x or a local `ecs.x`: any client attribute of that name.
        calls = re.findall(rf"\b{attribute}\.(\w+)\b", source)
        calls += re.findall(rf"\b{attribute}\.get_paginator\(\s*\"(\w+)\"", source)
        for name in calls:
            if name in by_snake:
                found.add(iam.calls_from_api(service, by_snake[name], _dummy_params(by_snake[name]))[0]["action"])
    return found


def _dummy_params(operation: str) -> dict[str, Any]:
    return {
        "cluster": "c",
        "services": ["s"],
        "service": "s",
        "tasks": ["t"],
        "task": "t",
        "resourceArn": "arn:aws:ecs:r:1:service/c/s",
        "tags": [],
        "tagKeys": [],
        "TableName": "t",
        "AlarmNames": ["a"],
        "FunctionName": "f",
    }


def test_every_operation_the_engine_source_calls_is_in_the_expected_list() -> None:
    # GIVEN the engine's source WHEN its client calls are collected
    found = _engine_operations_in_source()
    # THEN they are exactly the list this test (and so the policy) is built on
    assert found == ENGINE_ACTIONS, (
        f"engine calls {sorted(found - ENGINE_ACTIONS)}, list has unused {sorted(ENGINE_ACTIONS - found)}"
    )


def test_every_wildcard_resource_is_for_an_action_without_resource_scoping_and_commented() -> None:
    for statement in iam.role_statements(TEMPLATE, PARAMS):
        if statement["Effect"] == "Allow" and "*" in iam._as_list(statement["Resource"]):
            assert set(iam._as_list(statement["Action"])) <= WILDCARD_RESOURCE_OK, statement["Sid"]
    lines = TEMPLATE.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() == 'Resource: "*"':
            statement_start = max(i for i in range(index) if lines[i].lstrip().startswith("- Sid:"))
            assert lines[statement_start - 1].lstrip().startswith("#"), f"line {index + 1}: explain the wildcard"


def test_calls_of_a_simulated_recycle_are_allowed_on_the_right_resources(bed: Bed) -> None:
    # GIVEN a service with a load balancer and a scalable target on the simulated cluster,
    # and a hook that records every API call the engine's clients make
    bed.add_service(tasks=3, target=(3, 3), load_balancer=True)
    recorded: list[tuple[str, str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        recorded.append((model.service_model.service_name, model.name, dict(params)))

    for client in (bed.ecs, bed.autoscaling, bed.elbv2, bed.dynamodb, bed.events):
        client.meta.events.register("before-parameter-build.*.*", record)
    # WHEN the engine recycles it
    bed.run(wait_time=5)
    calls = [c for service, op, params in recorded for c in iam.calls_from_api(service, op, params)]
    # THEN the role scoped to that cluster and service allows every call, and the engine used all its actions
    scope = {**PARAMS, "TargetClusterName": SIM_CLUSTER, "TargetServiceNames": SIM_SERVICE}
    assert iam.check_calls(TEMPLATE, calls, scope) == []
    assert {c["action"] for c in calls} == ENGINE_ACTIONS - OTHER_FLOWS_ACTIONS
    # AND a role scoped to another service refuses every call on the service itself (tasks are cluster-scoped)
    elsewhere = iam.check_calls(TEMPLATE, calls, {**scope, "TargetServiceNames": "api"})
    assert len(elsewhere) == sum(c["resource"].startswith(f"{ECS}:service/") for c in calls)


def test_recorded_engine_calls_are_allowed() -> None:
    """Every AWS call the engine made in the simulator suite is allowed, on the resource it touched.

    Contract: ``simulator.record_engine_calls()`` returns the calls the engine
    made across the simulated scenarios. Each is a dict with
    ``target_cluster`` and ``target_service`` (the names that run was asked to
    recycle; the policy is scoped to exactly those for the check) and either

    * ``service``, ``operation`` and ``params``: what a botocore hook sees,
      e.g. ``client.meta.events.register("before-parameter-build.*.*", hook)``
      with ``hook(params, model, **_)`` recording
      ``model.service_model.service_name``, ``model.name`` and ``params``; or
    * ``action``, ``resource`` and ``context``: an IAM call, as
      ``iam.calls_from_api`` builds them.
    """
    from dev import simulator

    record = simulator.record_engine_calls
    region, account = simulator.REGION, simulator.ACCOUNT_ID
    calls: list[dict[str, Any]] = []
    for recorded in record():
        target = {"target_cluster": recorded["target_cluster"], "target_service": recorded["target_service"]}
        if "action" in recorded:
            calls.append(dict(recorded))
        else:
            for call in iam.calls_from_api(
                recorded["service"], recorded["operation"], recorded["params"], region=region, account=account
            ):
                calls.append({**call, **target})
    assert calls, "record_engine_calls() recorded nothing"
    by_target: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for call in calls:
        by_target.setdefault((call["target_cluster"], call["target_service"]), []).append(call)
    violations = []
    pseudo = {"AWS::Region": region, "AWS::AccountId": account}
    for (cluster, service), group in sorted(by_target.items()):
        scope = {**PARAMS, "TargetClusterName": cluster, "TargetServiceNames": service}
        violations += iam.check_calls(TEMPLATE, group, scope, pseudo=pseudo)
    assert violations == []
    recorded_actions = {call["action"] for call in calls} - iam.NO_PERMISSION_NEEDED
    assert recorded_actions <= ENGINE_ACTIONS, f"the engine calls {sorted(recorded_actions - ENGINE_ACTIONS)}: add them"
    assert ENGINE_ACTIONS <= recorded_actions, (
        f"never called in the simulator: {sorted(ENGINE_ACTIONS - recorded_actions)}"
    )


# --------------------------------------------------------------------------- #
# The evaluator itself
# --------------------------------------------------------------------------- #


def test_evaluator_a_negated_operator_holds_when_the_key_is_missing() -> None:
    # IAM: a key absent from the request matches no value, so StringNotEquals/ArnNotLike on it are true.
    absent: dict[str, Any] = {}
    assert iam._condition_holds("StringNotEquals", "aws:ResourceTag/k", ["v"], absent)
    assert iam._condition_holds("ArnNotLike", "ecs:cluster", ["arn:aws:ecs:*:1:cluster/p"], absent)
    assert not iam._condition_holds("StringEquals", "aws:ResourceTag/k", ["v"], absent)
    assert not iam._condition_holds("StringNotEquals", "aws:ResourceTag/k", ["v"], {"aws:ResourceTag/k": "v"})


def test_evaluator_explicit_deny_wins_over_allow() -> None:
    statements = [
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ecs:StopTask", "Resource": "*"},
    ]
    assert iam.evaluate(statements, "ecs:UpdateService", "x")
    assert not iam.evaluate(statements, "ecs:StopTask", "x")
    assert not iam.evaluate(statements, "s3:GetObject", "x")


def test_evaluator_wildcards_are_iam_wildcards_not_regex() -> None:
    statements = [{"Effect": "Allow", "Action": "ecs:Describe*", "Resource": "arn:aws:ecs:r:1:service/a.b/w?b"}]
    assert iam.evaluate(statements, "ecs:describeservices", "arn:aws:ecs:r:1:service/a.b/web")
    assert not iam.evaluate(statements, "ecs:DescribeServices", "arn:aws:ecs:r:1:service/aXb/web")
    assert not iam.evaluate(statements, "ecs:DescribeServices", "arn:aws:ecs:r:1:service/a.b/weeb")


def test_evaluator_condition_operators() -> None:
    holds = iam._condition_holds
    assert holds(
        "ArnLike", "ecs:cluster", ["arn:aws:ecs:*:1:cluster/p*"], {"ecs:cluster": "arn:aws:ecs:r:1:cluster/prod"}
    )
    assert not holds(
        "ArnLike", "ecs:cluster", ["arn:aws:ecs:*:1:cluster/p*"], {"ecs:cluster": "arn:aws:ecs:r:2:cluster/p"}
    )
    assert not holds("StringEquals", "k", ["a"], {})
    assert holds("StringEqualsIfExists", "k", ["a"], {})
    assert holds("ForAllValues:StringEquals", "k", ["a", "b"], {"k": ["a", "b"]})
    assert holds("ForAllValues:StringEquals", "k", ["a"], {})  # vacuously true when the key is absent
    assert not holds("ForAllValues:StringEquals", "k", ["a"], {"k": ["a", "c"]})
    assert holds("ForAnyValue:StringNotEquals", "k", ["a"], {"k": ["a", "c"]})
    assert not holds("ForAnyValue:StringNotEquals", "k", ["a"], {"k": ["a"]})
    assert holds("Null", "k", ["true"], {}) and not holds("Null", "k", ["true"], {"k": "v"})
    with pytest.raises(iam.UnsupportedPolicyError):
        holds("NumericLessThan", "k", ["1"], {"k": "0"})


def test_evaluator_insists_on_known_and_required_parameters() -> None:
    with pytest.raises(KeyError, match="unknown template parameters: Nope"):
        iam.role_statements(TEMPLATE, {**PARAMS, "Nope": "x"})
    with pytest.raises(KeyError, match="TargetClusterName"):
        iam.role_statements(TEMPLATE, {"TargetServiceNames": "web"})


def test_lock_table_is_on_demand_with_ttl_and_its_name_reaches_both_functions() -> None:
    # GIVEN the template WHEN the lock table and the functions' environment are resolved
    table = resolved("LockTable")
    # THEN the table is on demand, keyed by pk, with TTL on expires_at
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert template()["Resources"]["LockTable"]["DeletionPolicy"] in ("Delete", "Retain")
    # AND both functions are told its name, which is what the simulator's table is called
    from dev import simulator
    from recycler.lock.record import LOCK_TABLE_ENV

    for function in ("Function", "DurableFunction"):
        assert resolved(function)["Environment"]["Variables"][LOCK_TABLE_ENV] == simulator.LOCK_TABLE
    # AND the role may read and write items of that table only
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        assert allowed(action, LOCK_TABLE_ARN)
        assert not allowed(action, LOCK_TABLE_ARN.replace("ecs-task-recycle-locks", "orders"))
    # AND its history is read through the table's history index only, the index the simulator's table has too
    assert allowed("dynamodb:Query", f"{LOCK_TABLE_ARN}/index/history")
    assert not allowed("dynamodb:Query", LOCK_TABLE_ARN)
    assert not allowed("dynamodb:Query", f"{LOCK_TABLE_ARN}/index/other")
    assert not allowed("dynamodb:Scan", LOCK_TABLE_ARN)
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == HISTORY_INDEX and index["Projection"] == {"ProjectionType": "ALL"}
    assert index["KeySchema"] == [
        {"AttributeName": "history_of", "KeyType": "HASH"},
        {"AttributeName": "ended_at", "KeyType": "RANGE"},
    ]
    assert {"AttributeName": "ended_at", "AttributeType": "N"} in table["AttributeDefinitions"]
    with simulator.simulated_aws(simulator.VirtualClock()) as (_, session):
        described = session.client("dynamodb", config=simulator.sim_client_config()).describe_table(
            TableName=simulator.create_lock_table(session)
        )["Table"]
    (simulated,) = described["GlobalSecondaryIndexes"]
    assert simulated["KeySchema"] == index["KeySchema"] and simulated["IndexName"] == HISTORY_INDEX


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"taskDefinition": "web:43"}, id="task-definition"),
        pytest.param(
            {"networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"]}}},
            id="network-configuration",
        ),
        pytest.param({"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}, id="capacity"),
        pytest.param({"serviceConnectConfiguration": {"enabled": True, "namespace": "internal"}}, id="service-connect"),
    ],
)
def test_update_service_may_change_the_desired_count_and_nothing_iam_can_see(change: dict[str, Any]) -> None:
    # GIVEN the role WHEN UpdateService carries only a desired count THEN it is allowed
    assert (
        iam.check_calls(TEMPLATE, api("ecs", "UpdateService", cluster=CLUSTER, service="web", desiredCount=6), PARAMS)
        == []
    )
    # WHEN it also carries a parameter IAM has a condition key for THEN it is refused, even on a named service
    calls = api("ecs", "UpdateService", cluster=CLUSTER, service="web", desiredCount=6, **change)
    assert iam.check_calls(TEMPLATE, calls, PARAMS) != []


def test_scalable_targets_can_be_limited_to_tagged_ones_and_never_tagged_by_the_role() -> None:
    register = "application-autoscaling:RegisterScalableTarget"
    ecs_target = {
        "application-autoscaling:service-namespace": "ecs",
        "application-autoscaling:scalable-dimension": "ecs:service:DesiredCount",
    }
    tagged = {**ecs_target, "aws:ResourceTag/ecs-task-recycle": "enabled"}
    # GIVEN the default WHEN any ECS service target is re-registered THEN it is allowed (IAM cannot tell which)
    assert allowed(register, "*", ecs_target)
    # GIVEN RequireScalableTargetTag THEN only targets tagged ecs-task-recycle=enabled may be re-registered
    assert allowed(register, "*", tagged, RequireScalableTargetTag="true")
    assert not allowed(register, "*", ecs_target, RequireScalableTargetTag="true")
    # AND a registration that carries tags (which could create a target the condition admits) is refused
    assert not allowed(register, "*", {**tagged, "aws:TagKeys": ["ecs-task-recycle"]}, RequireScalableTargetTag="true")
    assert not allowed(register, "*", {**ecs_target, "aws:TagKeys": ["team"]})


def test_the_alarm_topic_adds_an_alarm_on_failed_runs_and_one_on_function_errors() -> None:
    # GIVEN no topic THEN no alarm
    resolver = iam.Resolver(template(), PARAMS)
    assert resolver.condition("HasAlarmTopic") is False
    for name in ("RunsFailedAlarm", "FunctionErrorsAlarm"):
        assert template()["Resources"][name]["Condition"] == "HasAlarmTopic"
    # GIVEN a topic THEN both alarms notify it
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:ops-pager"
    failed = resolved("RunsFailedAlarm", AlarmTopicArn=topic)
    errors = resolved("FunctionErrorsAlarm", AlarmTopicArn=topic)
    assert failed["AlarmActions"] == [topic] and errors["AlarmActions"] == [topic]
    # AND the first sums RunsFailed over every cluster and service the functions publish it for
    (query,) = failed["Metrics"]
    from recycler.observability.metrics import NAMESPACE, RUN_METRICS

    assert query["Expression"] == " ".join(
        ["SELECT", f"SUM({RUN_METRICS['failed']})", "FROM", f"SCHEMA({NAMESPACE},", "Cluster,", "Service)"]
    )
    # AND the second adds both functions' Errors
    functions = {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"] for m in errors["Metrics"] if "MetricStat" in m}
    assert functions == {"ecs-task-recycle", "ecs-task-recycle-durable"}


# --------------------------------------------------------------------------- #
# What a replacement must never delete
# --------------------------------------------------------------------------- #


def test_renaming_the_function_keeps_the_lock_table_and_its_name() -> None:
    # GIVEN the stack deployed under one function name, then renamed (the README's way to a new durable timeout)
    before = resolved("LockTable", FunctionName="ecs-task-recycle")
    after = resolved("LockTable", FunctionName="recycler-v2")
    # THEN the table's name does not follow the function's, so CloudFormation does not replace it
    assert before["TableName"] == after["TableName"] == "ecs-task-recycle-locks"  # <stack name>-locks
    for function in ("Function", "DurableFunction"):
        assert resolved(function, FunctionName="recycler-v2")["Environment"]["Variables"]["LOCK_TABLE_NAME"] == (
            "ecs-task-recycle-locks"
        )
    # AND were it ever replaced or the stack deleted, the table and what a repair needs in it stay
    table = template()["Resources"]["LockTable"]
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"


def test_the_lock_table_name_can_be_pinned_and_the_role_follows_it() -> None:
    # GIVEN an existing stack's table name, pinned by the deploy script on an upgrade
    pinned = "old-function-locks"
    # WHEN the template is resolved with it
    table = resolved("LockTable", LockTableName=pinned)
    # THEN the table keeps that name, both functions use it, and the role may write that table only
    assert table["TableName"] == pinned
    for function in ("Function", "DurableFunction"):
        assert resolved(function, LockTableName=pinned)["Environment"]["Variables"]["LOCK_TABLE_NAME"] == pinned
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{pinned}"
    assert allowed("dynamodb:PutItem", arn, LockTableName=pinned)
    assert not allowed("dynamodb:PutItem", LOCK_TABLE_ARN, LockTableName=pinned)
    # AND the parameter accepts exactly DynamoDB table names (or empty, for <stack name>-locks)
    pattern = re.compile(template()["Parameters"]["LockTableName"]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("a.b_c-1") and pattern.fullmatch("x" * 255)
    assert not pattern.fullmatch("ab") and not pattern.fullmatch("has space") and not pattern.fullmatch("x" * 256)


def test_a_renamed_function_leaves_its_old_log_groups_in_place() -> None:
    # GIVEN the log groups, named after the function (Lambda writes to /aws/lambda/<name>)
    for name, group in resources_of_type("AWS::Logs::LogGroup").items():
        # THEN a rename, which replaces them, keeps the old ones and their logs
        assert group["UpdateReplacePolicy"] == "Retain", name
