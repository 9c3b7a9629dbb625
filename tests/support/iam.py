"""A small IAM policy evaluator for the role in cloudformation.yaml.

It answers one question for the tests: would the functions' execution role be
allowed to make this AWS call? To do so it

* reads the template with cfn-lint's own decoder (so ``!Sub`` and friends work),
* resolves the intrinsic functions the template uses (Ref, Fn::Sub, Fn::Join,
  Fn::Split, Fn::Select, Fn::If and the condition functions) for the given
  parameter values and pseudo parameters, dropping ``AWS::NoValue``,
* evaluates the role's statements the way IAM does for identity policies: an
  explicit Deny wins, otherwise some Allow must match the action, the resource
  and every condition.

Supported condition operators: StringEquals, StringNotEquals, StringLike,
StringNotLike, ArnEquals, ArnLike, ArnNotEquals, ArnNotLike, Bool, Null, with
the ForAllValues:/ForAnyValue: qualifiers and the IfExists suffix. Anything
else raises ``UnsupportedPolicyError`` rather than guessing.

Public API::

    allowed(template_path, action, resource_arn, context=None, parameters=None) -> bool
    check_calls(template_path, calls, parameters=None) -> list[str]     # violations
    policy_actions(template_path, parameters=None) -> set[str]          # actions granted
    calls_from_api(service, operation, params, region=..., account=...) -> list[dict]

A call is ``{"action": "ecs:StopTask", "resource": arn, "context": {"ecs:cluster": cluster_arn}}``.
``calls_from_api`` turns a boto3 call (service name, operation name, API
parameters, as a botocore ``before-parameter-build`` hook sees them) into the
IAM calls AWS authorizes for it, so recorded engine calls can be checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_PSEUDO: dict[str, str] = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "ecs-task-recycle",
    "AWS::URLSuffix": "amazonaws.com",
}
DEFAULT_ROLE = "FunctionRole"

# Calls that IAM never denies: they need no permission.
NO_PERMISSION_NEEDED = frozenset({"sts:GetCallerIdentity"})

# botocore service names whose IAM prefix differs.
_IAM_PREFIX = {"elbv2": "elasticloadbalancing", "elb": "elasticloadbalancing"}
# Operations whose IAM action has another name.
_IAM_ACTION = {("lambda", "Invoke"): "InvokeFunction"}


class UnsupportedPolicyError(Exception):
    """The template uses a construct this evaluator does not model."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()


# --------------------------------------------------------------------------- #
# Template loading and intrinsic functions
# --------------------------------------------------------------------------- #


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> dict[str, Any]:
    from cfnlint.decode import decode  # cfn-lint understands the short-form tags

    template, matches = decode(path)
    if matches or template is None:
        raise UnsupportedPolicyError(f"{path}: cannot decode: {[str(m) for m in matches]}")
    plain: dict[str, Any] = _plain(template)
    return plain


def _plain(value: Any) -> Any:
    """cfn-lint's node types -> plain dicts, lists and str."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def load_template(template_path: str | Path) -> dict[str, Any]:
    path = Path(template_path).resolve()
    return _load(str(path), path.stat().st_mtime)


class Resolver:
    """Resolves intrinsic functions for one set of parameter values."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        pseudo: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.pseudo = {**DEFAULT_PSEUDO, **(pseudo or {})}
        self.parameters: dict[str, str] = {}
        given = dict(parameters or {})
        declared = template.get("Parameters", {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise KeyError(f"unknown template parameters: {', '.join(unknown)}")
        for name, spec in declared.items():
            if name in given:
                self.parameters[name] = str(given[name])
            elif "Default" in spec:
                self.parameters[name] = str(spec["Default"])
        self._conditions: dict[str, bool] = {}

    # -- conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definitions = self.template.get("Conditions", {})
            if name not in definitions:
                raise UnsupportedPolicyError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(definitions[name]))
        return self._conditions[name]

    # -- values
    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.template.get("Parameters", {}):
            raise KeyError(f"template parameter {name} has no default: pass it in parameters")
        resource = self.template.get("Resources", {}).get(name)
        if resource is None:
            raise UnsupportedPolicyError(f"Ref to unknown name {name}")
        return self._resource_ref(name, resource)

    def _resource_ref(self, name: str, resource: Mapping[str, Any]) -> str:
        kind = resource.get("Type")
        props = resource.get("Properties", {})
        if kind == "AWS::Logs::LogGroup":
            return str(self.resolve(props["LogGroupName"]))
        if kind == "AWS::Lambda::Function":
            return str(self.resolve(props["FunctionName"]))
        if kind == "AWS::Lambda::Alias":  # Ref of an alias is its ARN
            function = self.resolve(props["FunctionName"])
            p, r, a = (self.pseudo[k] for k in ("AWS::Partition", "AWS::Region", "AWS::AccountId"))
            return f"arn:{p}:lambda:{r}:{a}:function:{function}:{self.resolve(props['Name'])}"
        if kind == "AWS::DynamoDB::Table":  # Ref of a table is its name
            return str(self.resolve(props["TableName"]))
        raise UnsupportedPolicyError(f"Ref to a {kind} ({name}) is not modelled")

    def get_att(self, name: str, attribute: str) -> str:
        resource = self.template.get("Resources", {}).get(name, {})
        kind = resource.get("Type")
        p, r, a = (self.pseudo[k] for k in ("AWS::Partition", "AWS::Region", "AWS::AccountId"))
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"arn:{p}:logs:{r}:{a}:log-group:{self.ref(name)}:*"
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            return f"arn:{p}:lambda:{r}:{a}:function:{self.ref(name)}"
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            role_name = self.resolve(resource.get("Properties", {}).get("RoleName", f"stack-{name}"))
            return f"arn:{p}:iam::{a}:role/{role_name}"
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            table = self.resolve(resource.get("Properties", {}).get("TableName", f"stack-{name}"))
            return f"arn:{p}:dynamodb:{r}:{a}:table/{table}"
        if kind == "AWS::Lambda::Version" and attribute == "Version":
            return "1"
        raise UnsupportedPolicyError(f"Fn::GetAtt {name}.{attribute} is not modelled")

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            body = match.group(1)
            if body.startswith("!"):
                return "${" + body[1:] + "}"
            if body in variables:
                return str(variables[body])
            if "." in body and body not in self.pseudo:
                resource, attribute = body.split(".", 1)
                return self.get_att(resource, attribute)
            return str(self.ref(body))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key, arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _function(self, name: str, arg: Any) -> Any:
        if name == "Fn::If":
            condition, when_true, when_false = arg
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name == "Fn::Equals":
            left, right = (self.resolve(v) for v in arg)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not self.resolve(arg[0])
        if name == "Fn::And":
            return all(self.resolve(v) for v in arg)
        if name == "Fn::Or":
            return any(self.resolve(v) for v in arg)
        if name == "Fn::Sub":
            if isinstance(arg, str):
                return self._sub(arg, {})
            text, variables = arg
            return self._sub(text, {k: self.resolve(v) for k, v in variables.items()})
        if name == "Fn::Join":
            delimiter, items = arg
            return str(delimiter).join(str(v) for v in self.resolve(items))
        if name == "Fn::Split":
            delimiter, text = arg
            return str(self.resolve(text)).split(delimiter)
        if name == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if name == "Fn::GetAtt":
            resource, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self.get_att(resource, attribute)
        raise UnsupportedPolicyError(f"{name} is not modelled")


# --------------------------------------------------------------------------- #
# Policy statements
# --------------------------------------------------------------------------- #


def role_statements(
    template_path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    role: str = DEFAULT_ROLE,
    pseudo: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The resolved statements of every policy attached to ``role`` in the template."""
    template = load_template(template_path)
    resolver = Resolver(template, parameters, pseudo)
    resources = template.get("Resources", {})
    if resources.get(role, {}).get("Type") != "AWS::IAM::Role":
        raise UnsupportedPolicyError(f"{role} is not an AWS::IAM::Role in the template")
    role_props = resources[role].get("Properties", {})
    if role_props.get("ManagedPolicyArns") or role_props.get("PermissionsBoundary"):
        raise UnsupportedPolicyError(
            f"{role} uses managed policies or a boundary: their contents are not in the template"
        )
    documents = [p["PolicyDocument"] for p in role_props.get("Policies", [])]
    for resource in resources.values():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        if resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            props = resource.get("Properties", {})
            attached = props.get("Roles", []) + ([props["RoleName"]] if "RoleName" in props else [])
            if {"Ref": role} in attached:
                documents.append(props["PolicyDocument"])
    statements: list[dict[str, Any]] = []
    for document in documents:
        body = resolver.resolve(document)
        if isinstance(body, str):
            # A document given as a (Fn::Sub) string: IAM takes the JSON text.
            body = json.loads(body)
        raw = body.get("Statement", [])
        statements.extend(raw if isinstance(raw, list) else [raw])
    for statement in statements:
        for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
            if unsupported in statement:
                raise UnsupportedPolicyError(f"{unsupported} is not modelled (statement {statement.get('Sid')})")
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IAM wildcards: * is any run of characters (including none, and across '/' and ':'), ? is one character."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.fullmatch(regex, value, flags | re.DOTALL) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike/ArnEquals: the six colon-separated fields match one by one."""
    pattern_parts = pattern.split(":", 5)
    value_parts = value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(_glob(p, v) for p, v in zip(pattern_parts, value_parts, strict=True))


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


_OPERATORS: dict[str, tuple[Callable[[Any, Any], bool], bool]] = {
    "StringEquals": (lambda p, v: str(v) == str(p), False),
    "StringNotEquals": (lambda p, v: str(v) == str(p), True),
    "StringLike": (lambda p, v: _glob(str(p), str(v)), False),
    "StringNotLike": (lambda p, v: _glob(str(p), str(v)), True),
    "ArnEquals": (lambda p, v: _arn_like(str(p), str(v)), False),
    "ArnLike": (lambda p, v: _arn_like(str(p), str(v)), False),
    "ArnNotEquals": (lambda p, v: _arn_like(str(p), str(v)), True),
    "ArnNotLike": (lambda p, v: _arn_like(str(p), str(v)), True),
    "Bool": (lambda p, v: _bool(p) == _bool(v), False),
}


def _condition_holds(operator: str, key: str, policy_values: list[Any], context: Mapping[str, Any]) -> bool:
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAllValues", "ForAnyValue"):
            raise UnsupportedPolicyError(f"condition qualifier {qualifier} is not modelled")
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    present = key in context and context[key] is not None
    if operator == "Null":
        # Null: true means "the key is absent".
        return any(_bool(p) != present for p in policy_values)
    if operator not in _OPERATORS:
        raise UnsupportedPolicyError(f"condition operator {operator} is not modelled")
    match, negated = _OPERATORS[operator]

    def value_matches(value: Any) -> bool:
        hit = any(match(p, value) for p in policy_values)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(value_matches(v) for v in _as_list(context[key])) if present else True
    if qualifier == "ForAnyValue":
        return any(value_matches(v) for v in _as_list(context[key])) if present else False
    if not present:
        # IAM: a key missing from the request matches nothing, so a negated operator holds.
        return if_exists or negated
    values = _as_list(context[key])
    if len(values) != 1:
        raise UnsupportedPolicyError(f"{key} has several values: use ForAllValues/ForAnyValue")
    return value_matches(values[0])


def _statement_applies(statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, Any]) -> bool:
    if not any(_glob(str(p), action, case_sensitive=False) for p in _as_list(statement.get("Action", []))):
        return False
    if not any(_glob(str(p), resource) for p in _as_list(statement.get("Resource", []))):
        return False
    for operator, keys in statement.get("Condition", {}).items():
        for key, values in keys.items():
            if not _condition_holds(operator, key, _as_list(values), context):
                return False
    return True


def evaluate(
    statements: Iterable[Mapping[str, Any]], action: str, resource: str, context: Mapping[str, Any] | None = None
) -> bool:
    """IAM's identity-policy logic: an explicit Deny wins, else an Allow must apply."""
    ctx = dict(context or {})
    statements = list(statements)
    if any(s.get("Effect") == "Deny" and _statement_applies(s, action, resource, ctx) for s in statements):
        return False
    return any(s.get("Effect") == "Allow" and _statement_applies(s, action, resource, ctx) for s in statements)


def allowed(
    template_path: str | Path,
    action: str,
    resource_arn: str,
    context: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    role: str = DEFAULT_ROLE,
    pseudo: Mapping[str, str] | None = None,
) -> bool:
    """Would ``role`` be allowed ``action`` on ``resource_arn`` with the request ``context``?"""
    if action in NO_PERMISSION_NEEDED:
        return True
    return evaluate(role_statements(template_path, parameters, role, pseudo), action, resource_arn, context)


def check_calls(
    template_path: str | Path,
    calls: Iterable[Mapping[str, Any]],
    parameters: Mapping[str, Any] | None = None,
    *,
    role: str = DEFAULT_ROLE,
    pseudo: Mapping[str, str] | None = None,
) -> list[str]:
    """One message per call the role would not be allowed to make. Empty: all allowed."""
    statements = role_statements(template_path, parameters, role, pseudo)
    violations = []
    for call in calls:
        action, resource, context = call["action"], call["resource"], call.get("context") or {}
        if action in NO_PERMISSION_NEEDED or evaluate(statements, action, resource, context):
            continue
        violations.append(f"{action} on {resource} (context {dict(context)}) is not allowed")
    return violations


def policy_actions(
    template_path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    role: str = DEFAULT_ROLE,
    pseudo: Mapping[str, str] | None = None,
) -> set[str]:
    """Every action some Allow statement grants (as written: wildcards stay wildcards)."""
    return {
        str(action)
        for statement in role_statements(template_path, parameters, role, pseudo)
        if statement.get("Effect") == "Allow"
        for action in _as_list(statement.get("Action", []))
    }


# --------------------------------------------------------------------------- #
# boto3 calls -> IAM calls
# --------------------------------------------------------------------------- #


def calls_from_api(
    service: str,
    operation: str,
    params: Mapping[str, Any],
    *,
    region: str = DEFAULT_PSEUDO["AWS::Region"],
    account: str = DEFAULT_PSEUDO["AWS::AccountId"],
    partition: str = DEFAULT_PSEUDO["AWS::Partition"],
) -> list[dict[str, Any]]:
    """The IAM requests AWS authorizes for one API call.

    ``service`` is the botocore service name (``ecs``, ``elbv2``,
    ``application-autoscaling``, ...), ``operation`` the API operation name
    (``DescribeServices``) and ``params`` its parameters. A call that names
    several resources (DescribeTasks with many tasks) is authorized per resource.
    """
    prefix = _IAM_PREFIX.get(service, service)
    action = f"{prefix}:{_IAM_ACTION.get((prefix, operation), operation)}"
    base = f"arn:{partition}:{prefix}:{region}:{account}"

    def call(resource: str, **context: Any) -> dict[str, Any]:
        return {"action": action, "resource": resource, "context": context}

    if prefix == "ecs":
        cluster = str(params.get("cluster") or "default")
        cluster_name = cluster.rsplit("/", 1)[-1]
        cluster_arn = cluster if cluster.startswith("arn:") else f"{base}:cluster/{cluster_name}"

        def service_arn(name: str) -> str:
            return name if name.startswith("arn:") else f"{base}:service/{cluster_name}/{name}"

        def task_arn(task: str) -> str:
            return task if task.startswith("arn:") else f"{base}:task/{cluster_name}/{task}"

        if operation == "DescribeServices":
            return [call(service_arn(s), **{"ecs:cluster": cluster_arn}) for s in params.get("services", [])]
        if operation == "UpdateService":
            # Condition keys ECS adds only when the request sets the parameter behind them.
            context: dict[str, Any] = {"ecs:cluster": cluster_arn}
            if params.get("taskDefinition"):
                context["ecs:task-definition"] = str(params["taskDefinition"])
            subnets = (params.get("networkConfiguration") or {}).get("awsvpcConfiguration", {}).get("subnets")
            if subnets:
                context["ecs:subnet"] = list(subnets)
            if params.get("capacityProviderStrategy"):
                context["ecs:capacity-provider"] = [s["capacityProvider"] for s in params["capacityProviderStrategy"]]
            namespace = (params.get("serviceConnectConfiguration") or {}).get("namespace")
            if namespace:
                context["ecs:namespace"] = namespace
            return [call(service_arn(str(params["service"])), **context)]
        if operation in ("DescribeTasks", "StopTask", "GetTaskProtection"):
            tasks = params.get("tasks") or [params.get("task")]
            return [call(task_arn(str(t)), **{"ecs:cluster": cluster_arn}) for t in tasks]
        if operation == "ListTasks":
            # Resource type container-instance: without one in the request, "*".
            return [call("*", **{"ecs:cluster": cluster_arn})]
        if operation == "ListServices":
            # No resource type (Service Authorization Reference): "*", with the ecs:cluster key.
            return [call("*", **{"ecs:cluster": cluster_arn})]
        if operation == "TagResource":
            keys = [t["key"] for t in params.get("tags", [])]
            return [call(str(params["resourceArn"]), **{"aws:TagKeys": keys})]
        if operation == "UntagResource":
            return [call(str(params["resourceArn"]), **{"aws:TagKeys": list(params.get("tagKeys", []))})]
        if operation == "DescribeTaskDefinition":
            return [call("*")]
    if prefix == "application-autoscaling":
        if operation == "RegisterScalableTarget":
            context = {
                "application-autoscaling:service-namespace": params.get("ServiceNamespace"),
                "application-autoscaling:scalable-dimension": params.get("ScalableDimension"),
            }
            if params.get("Tags"):
                context["aws:TagKeys"] = list(params["Tags"])
            return [call("*", **context)]
        if operation.startswith("Describe"):
            return [call("*")]
    if prefix == "elasticloadbalancing" and operation.startswith("Describe"):
        return [call("*")]
    if prefix == "sts":
        if operation == "GetCallerIdentity":
            return [call("*")]
        if operation == "AssumeRole":
            return [call(str(params["RoleArn"]))]
    if prefix == "secretsmanager" and operation == "GetSecretValue":
        secret = str(params["SecretId"])
        # A name resolves to the secret's full ARN, which ends in -<6 random characters>.
        return [call(secret if secret.startswith("arn:") else f"{base}:secret:{secret}-AbCdEf")]
    if prefix == "ssm" and operation == "GetParameter":
        return [call(f"{base}:parameter/{str(params['Name']).lstrip('/')}")]
    if prefix == "dynamodb" and operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
        table = str(params["TableName"])
        return [call(table if table.startswith("arn:") else f"{base}:table/{table}")]
    if prefix == "dynamodb" and operation == "Query":
        table = str(params["TableName"])
        arn = table if table.startswith("arn:") else f"{base}:table/{table}"
        # A Query of an index is authorized on the index's ARN, of the table itself on the table's.
        return [call(f"{arn}/index/{params['IndexName']}" if params.get("IndexName") else arn)]
    if prefix == "cloudwatch" and operation == "DescribeAlarms":
        names = params.get("AlarmNames") or ["*"]
        return [call(f"{base}:alarm:{name}") for name in names]
    if prefix == "events" and operation == "PutEvents":
        # Authorized per entry, on the bus it names (the default bus when it names none).
        buses = {str(e.get("EventBusName") or "default") for e in params.get("Entries", [])} or {"default"}
        return [call(b if b.startswith("arn:") else f"{base}:event-bus/{b}") for b in sorted(buses)]
    if prefix == "lambda" and operation in ("Invoke", "GetFunctionConfiguration"):
        function = str(params["FunctionName"])
        return [call(function if function.startswith("arn:") else f"{base}:function:{function}")]
    if prefix == "lambda" and operation in ("CheckpointDurableExecution", "GetDurableExecutionState"):
        return [call(str(params["DurableExecutionArn"]))]
    raise UnsupportedPolicyError(f"no IAM mapping for {service}.{operation}: add one to calls_from_api")


def check_engine_calls(template: Path, engine_calls: list[dict[str, Any]]) -> list[str]:
    """The recorded engine calls (support.bed.ENGINE_CALLS) the role would refuse, each run checked against
    the role deployed for the service it targeted."""
    from dev import simulator

    region, account = simulator.REGION, simulator.ACCOUNT_ID
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for recorded in engine_calls:
        calls = calls_from_api(
            recorded["service"], recorded["operation"], recorded["params"], region=region, account=account
        )
        groups.setdefault((recorded["target_cluster"], recorded["target_service"]), []).extend(calls)
    violations: list[str] = []
    for (cluster, service), calls in sorted(groups.items()):
        scope = {
            "ArtifactBucket": "bucket",
            "ArtifactKey": "key.zip",
            "TargetClusterName": cluster,
            "TargetServiceNames": service,
        }
        violations += check_calls(template, calls, scope, pseudo={"AWS::Region": region, "AWS::AccountId": account})
    return violations
