#!/usr/bin/env bash
# Build the Lambda package, upload it under a content-hash key and deploy
# cloudformation.yaml with it. The stack always describes the code that runs:
# there is no update-function-code step. Safe to re-run: an unchanged package is
# not uploaded again, and an unchanged stack is left alone.
set -euo pipefail
[[ ${DEBUG:-} ]] && set -x

readonly TEMPLATE_NAME="cloudformation.yaml"
readonly PACKAGE_NAME="ecs-task-recycle.zip"
readonly NAME_PATTERN='^[A-Za-z0-9_-]{1,255}$'
readonly SERVICES_PATTERN='^(\*|[A-Za-z0-9_-]{1,255}(,[A-Za-z0-9_-]{1,255}){0,9})$'
# As events accept it: the name is what follows cluster/.
# An ECS tag key and value as the template's ServiceTagKey/ServiceTagValue accept them (no quote or
# backslash: they go into the policy's JSON). The key stops at the first '='.
readonly TAG_KEY_PATTERN='^[A-Za-z0-9_.:/+@ -]{1,128}$'
readonly TAG_VALUE_PATTERN='^[A-Za-z0-9_.:/=+@ -]{1,256}$'
readonly CLUSTER_ARN_PATTERN='^arn:aws[a-zA-Z-]*:ecs:([a-z0-9-]+):[0-9]{12}:cluster/([A-Za-z0-9_-]{1,255})$'

usage() {
  cat <<EOF
Usage: $(basename "$0") --stack-name NAME --bucket BUCKET --cluster CLUSTER --services NAMES [options]

Builds the Lambda package (./lambda_build.sh), uploads it to
s3://BUCKET/PREFIX/<sha256>.zip and deploys ${TEMPLATE_NAME} as stack NAME.
Each setting comes from its flag, or else from the environment variable named
in brackets. Needs the AWS CLI v2. On an existing stack the lock table keeps
its current name (LockTableName), so an update never replaces it.

Required:
  -s, --stack-name NAME      CloudFormation stack name [STACK_NAME]
  -b, --bucket BUCKET        S3 bucket for the package, in the stack's region [ARTIFACT_BUCKET]
  -c, --cluster CLUSTER      ECS cluster (name or ARN) the functions may recycle in, or '*' for any
                             [TARGET_CLUSTER]
  -S, --services NAMES       Up to 10 comma-separated service names, or '*' for any
                             service in the cluster [TARGET_SERVICES]

Options:
  -r, --region REGION        AWS region [AWS_REGION, AWS_DEFAULT_REGION]
  -p, --profile PROFILE      AWS CLI profile [AWS_PROFILE]
      --prefix PREFIX        S3 key prefix for the package (default ecs-task-recycle) [ARTIFACT_PREFIX]
      --service-tag KEY=VALUE
                             Tag scope: the functions may change only services carrying this
                             tag (on top of --services; a fleet selected by tag needs --services
                             '*'); '' removes the scope [SERVICE_TAG]
      --function-name NAME   Name of the standard function; the durable one is NAME-durable
                             (default ecs-task-recycle) [FUNCTION_NAME]
      --schedule EXPR        EventBridge Scheduler expression, e.g. 'cron(0 3 ? * SUN *)';
                             '' removes the schedule [SCHEDULE_EXPRESSION]
      --schedule-event JSON  The event the schedule sends: any event the function takes, e.g.
                             '{"cluster_name": "prod", "service_name": "web", "batch_size": 2}'
                             (required with --schedule, or --schedule-service) [SCHEDULE_EVENT]
      --schedule-service S   Shorthand for --schedule-event: recycle S in --cluster (or
                             --schedule-cluster) with maintain_service_state true and wait_time 30
                             [SCHEDULE_SERVICE]
      --schedule-cluster C   Cluster of --schedule-service (default: --cluster) [SCHEDULE_CLUSTER]
      --schedule-timezone TZ Time zone of the cron expression (default UTC) [SCHEDULE_TIMEZONE]
      --schedule-target T    standard or durable (default standard) [SCHEDULE_TARGET]
      --schedule2 EXPR       A second schedule's expression; '' removes it [SCHEDULE2_EXPRESSION]
      --schedule2-event JSON Its event (required with --schedule2) [SCHEDULE2_EVENT]
      --schedule2-timezone TZ, --schedule2-target T
                             As for the first schedule [SCHEDULE2_TIMEZONE, SCHEDULE2_TARGET]
                             Each event is checked with the function's own parser before anything is
                             uploaded, and must name a service in --cluster and --services.
      --parameter KEY=VALUE  Any other template parameter, e.g. LogLevel=DEBUG (repeatable);
                             the name must be one of the template's
      --preview              Upload the package, create the change set and print it; execute
                             nothing (the output says how to apply it) [PREVIEW=1]
  -h, --help                 Show this help.

Environment:
  LAMBDA_ZIP   Deploy this prebuilt package instead of running ./lambda_build.sh.
  BUILD_DIR    Build folder of ./lambda_build.sh (default build/).
  DEBUG=1      Trace every command.

Example:
  $(basename "$0") --stack-name ecs-task-recycle --bucket my-artifacts-123456789012 \\
    --cluster prod --services web,api --region eu-west-1
EOF
}

# Bad or missing input: say what, show the usage, and stop before any AWS call.
usage_error() {
  echo "cloudformation_deploy: error: $*" >&2
  echo >&2
  usage >&2
  exit 2
}

die() {
  echo "cloudformation_deploy: error: $*" >&2
  exit 1
}

AWS_ARGS=()

aws_cli() {
  aws ${AWS_ARGS[@]+"${AWS_ARGS[@]}"} "$@"
}

sha256_of() {
  local file=$1 line
  if command -v sha256sum >/dev/null 2>&1; then
    line=$(sha256sum "$file")
  elif command -v shasum >/dev/null 2>&1; then
    line=$(shasum -a 256 "$file")
  else
    line=$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$file")
  fi
  echo "${line%% *}"
}

# The template's parameter names, read from its top-level Parameters block.
template_parameters() {
  awk '/^[A-Za-z]/ { inside = ($0 ~ /^Parameters:/); next }
       inside && /^  [A-Za-z0-9]+:/ { sub(/^  /, ""); sub(/:.*/, ""); print }' "$1"
}

# The flag that sets a parameter the script passes itself; a --parameter for it
# would slip past that flag's checks.
flag_of_parameter() {
  case "$1" in
    ArtifactBucket) echo "--bucket" ;;
    ArtifactKey) echo "the package (its sha256)" ;;
    TargetClusterName) echo "--cluster" ;;
    TargetServiceNames) echo "--services" ;;
    ServiceTagKey | ServiceTagValue) echo "--service-tag" ;;
    FunctionName) echo "--function-name" ;;
    ScheduleExpression) echo "--schedule" ;;
    ScheduleEvent) echo "--schedule-event (or --schedule-service)" ;;
    ScheduleTimezone) echo "--schedule-timezone" ;;
    ScheduleTarget) echo "--schedule-target" ;;
    Schedule2Expression) echo "--schedule2" ;;
    Schedule2Event) echo "--schedule2-event" ;;
    Schedule2Timezone) echo "--schedule2-timezone" ;;
    Schedule2Target) echo "--schedule2-target" ;;
  esac
}

# The Python that runs the function's own event parser: PYTHON, else the repo's
# virtualenv, else python3 (the parser needs no packages).
event_python() {
  local repo_dir=$1
  if [[ -n ${PYTHON:-} ]]; then
    echo "$PYTHON"
  elif [[ -x $repo_dir/.venv/bin/python ]]; then
    echo "$repo_dir/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then
    echo python3
  else
    die "python3 is needed to check the schedule's event (or set PYTHON)"
  fi
}

# Check a schedule's event with the handler's own parser (recycler.hosts.event_check)
# and that the role may recycle what it names. Sets EVENT_JSON (the event on one
# line). $2 names the event, $3 and $4 its service and cluster, in errors.
check_event() {
  local repo_dir=$1 label=$2 service_label=$3 cluster_label=$4 event=$5 cluster=$6 services=$7
  local out python event_cluster event_service
  python=$(event_python "$repo_dir")
  if ! out=$(cd "$repo_dir" && PYTHONPATH="$repo_dir" "$python" -m recycler.hosts.event_check "$event" 2>&1); then
    usage_error "$label is not an event the function accepts: $out"
  fi
  {
    IFS= read -r EVENT_JSON
    IFS= read -r event_cluster
    IFS= read -r event_service
  } <<<"$out"
  [[ -n $event_service ]] || die "unexpected output from the event check: $out"
  # The role may recycle only --services in --cluster: any other target fails every run with AccessDenied.
  # A fleet names its services (a,b,c), or selects them by tag (*: any service of the cluster may be chosen).
  local one
  local -a event_services
  IFS=, read -r -a event_services <<<"$event_service"
  if [[ $event_service == "*" && $services != "*" ]]; then
    usage_error "$label selects its services by tag, so any service of the cluster may be chosen:" \
      "deploy with --services '*' (the role may recycle every service of --cluster), or name the services"
  fi
  for one in "${event_services[@]}"; do
    [[ $one == "*" || $services == "*" || ",$services," == *",$one,"* ]] \
      || usage_error "$service_label $one is not among --services $services:" \
        "the functions may not recycle it, so every scheduled run would fail with AccessDenied"
  done
  [[ $cluster == "*" || $event_cluster == "$cluster" ]] \
    || usage_error "$cluster_label $event_cluster is not --cluster $cluster:" \
      "the functions may not recycle in it, so every scheduled run would fail with AccessDenied"
}

# The lock table the stack has now ('' for a new stack). It holds what a repair
# needs, so an update must keep its name: a new name would replace the table.
current_lock_table() {
  local stack=$1 out
  if out=$(aws_cli cloudformation describe-stack-resources --stack-name "$stack" \
    --logical-resource-id LockTable --query 'StackResources[0].PhysicalResourceId' --output text 2>&1); then
    if [[ $out != None ]]; then echo "$out"; fi
  elif [[ $out == *"does not exist"* ]]; then
    return 0
  else
    die "cannot read stack $stack's lock table, so its name cannot be kept: $out"
  fi
}

# Create the change set without executing it, and show what it would change.
preview_change_set() {
  local stack=$1 cli_opts=$2 out arn
  shift 2
  echo "Creating a change set for stack $stack (nothing is executed)"
  out=$(aws_cli cloudformation deploy "$@" --no-execute-changeset)
  echo "$out"
  arn=$(grep -oE 'arn:aws[a-zA-Z-]*:cloudformation:[^[:space:]]*:changeSet/[^[:space:]]+' <<<"$out" | head -n 1) || true
  if [[ -z $arn ]]; then
    [[ $out == *"No changes to deploy"* ]] || die "no change set ARN in the output of aws cloudformation deploy"
    echo
    echo "No changes: stack $stack already matches the template and parameters."
    return 0
  fi
  echo
  aws_cli cloudformation describe-change-set --change-set-name "$arn" \
    --query 'Changes[].ResourceChange.{Action:Action,Resource:LogicalResourceId,Type:ResourceType,Replacement:Replacement}' \
    --output table
  cat <<EOF

Nothing was changed. A Replacement of True deletes and recreates that resource.
Apply this change set:
  aws cloudformation execute-change-set$cli_opts --change-set-name $arn
Or discard it:
  aws cloudformation delete-change-set$cli_opts --change-set-name $arn
EOF
}

stack_output() {
  local stack=$1 key=$2
  aws_cli cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='${key}'].OutputValue" --output text
}

main() {
  local stack=${STACK_NAME:-} bucket=${ARTIFACT_BUCKET:-} cluster=${TARGET_CLUSTER:-}
  local services=${TARGET_SERVICES:-} region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}} profile=${AWS_PROFILE:-}
  local prefix=${ARTIFACT_PREFIX:-ecs-task-recycle} function_name=${FUNCTION_NAME:-}
  local schedule=${SCHEDULE_EXPRESSION:-} schedule_given=${SCHEDULE_EXPRESSION+yes}
  local schedule_service=${SCHEDULE_SERVICE:-} schedule_cluster=${SCHEDULE_CLUSTER:-}
  local schedule_timezone=${SCHEDULE_TIMEZONE:-} schedule_target=${SCHEDULE_TARGET:-}
  local schedule_event=${SCHEDULE_EVENT:-}
  local schedule2=${SCHEDULE2_EXPRESSION:-} schedule2_given=${SCHEDULE2_EXPRESSION+yes}
  local schedule2_event=${SCHEDULE2_EVENT:-} schedule2_timezone=${SCHEDULE2_TIMEZONE:-}
  local schedule2_target=${SCHEDULE2_TARGET:-}
  local preview=${PREVIEW:-}
  local service_tag=${SERVICE_TAG:-} service_tag_given=${SERVICE_TAG+yes}
  local -a extra=()

  while (($#)); do
    case "$1" in
      -h | --help)
        usage
        return 0
        ;;
      --preview)
        preview=1
        shift
        ;;
      -s | --stack-name | -b | --bucket | -c | --cluster | -S | --services | -r | --region | -p | --profile \
        | --prefix | --function-name | --schedule | --schedule-service | --schedule-cluster \
        | --schedule-timezone | --schedule-target | --schedule-event | --schedule2 | --schedule2-event \
        | --schedule2-timezone | --schedule2-target | --service-tag | --parameter)
        (($# >= 2)) || usage_error "$1 needs a value"
        case "$1" in
          -s | --stack-name) stack=$2 ;;
          -b | --bucket) bucket=$2 ;;
          -c | --cluster) cluster=$2 ;;
          -S | --services) services=$2 ;;
          -r | --region) region=$2 ;;
          -p | --profile) profile=$2 ;;
          --prefix) prefix=$2 ;;
          --function-name) function_name=$2 ;;
          --schedule)
            schedule=$2
            schedule_given=yes
            ;;
          --schedule-service) schedule_service=$2 ;;
          --schedule-cluster) schedule_cluster=$2 ;;
          --schedule-timezone) schedule_timezone=$2 ;;
          --schedule-target) schedule_target=$2 ;;
          --schedule-event) schedule_event=$2 ;;
          --schedule2)
            schedule2=$2
            schedule2_given=yes
            ;;
          --schedule2-event) schedule2_event=$2 ;;
          --schedule2-timezone) schedule2_timezone=$2 ;;
          --schedule2-target) schedule2_target=$2 ;;
          --service-tag)
            service_tag=$2
            service_tag_given=yes
            ;;
          --parameter) extra+=("$2") ;;
        esac
        shift 2
        ;;
      *) usage_error "unknown argument: $1" ;;
    esac
  done

  [[ -n $stack ]] || usage_error "a stack name is required (--stack-name or STACK_NAME)"
  [[ $stack =~ ^[A-Za-z][A-Za-z0-9-]{0,127}$ ]] || usage_error "invalid stack name: $stack"
  [[ -n $bucket ]] || usage_error "an artifact bucket is required (--bucket or ARTIFACT_BUCKET)"
  [[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || usage_error "invalid S3 bucket name: $bucket"
  [[ -n $cluster ]] || usage_error "a target cluster is required (--cluster or TARGET_CLUSTER)"
  if [[ $cluster =~ $CLUSTER_ARN_PATTERN ]]; then
    [[ -z $region || ${BASH_REMATCH[1]} == "$region" ]] \
      || usage_error "the cluster $cluster is in region ${BASH_REMATCH[1]}, not $region"
    cluster=${BASH_REMATCH[2]}
  fi
  [[ $cluster == "*" || $cluster =~ $NAME_PATTERN ]] || usage_error "invalid cluster name: $cluster"
  [[ -n $services ]] || usage_error "target services are required (--services or TARGET_SERVICES, '*' for any)"
  [[ $services =~ $SERVICES_PATTERN ]] \
    || usage_error "invalid --services '$services': up to 10 comma-separated names without spaces, or '*'"
  local tag_key="" tag_value=""
  if [[ -n $service_tag ]]; then
    [[ $service_tag == *=* ]] || usage_error "--service-tag must look like KEY=VALUE: $service_tag"
    tag_key=${service_tag%%=*}
    tag_value=${service_tag#*=}
    [[ $tag_key =~ $TAG_KEY_PATTERN ]] || usage_error "invalid --service-tag key: '$tag_key'"
    [[ $tag_value =~ $TAG_VALUE_PATTERN ]] || usage_error "invalid --service-tag value: '$tag_value'"
  fi
  prefix=${prefix%/}
  [[ -n $prefix && $prefix != /* ]] || usage_error "invalid S3 key prefix: '$prefix'"
  [[ -z $function_name || $function_name =~ ^[A-Za-z0-9_-]{1,56}$ ]] \
    || usage_error "invalid function name: $function_name"
  local repo_dir
  repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  if [[ -n $schedule ]]; then
    [[ -z $schedule_event || -z $schedule_service ]] \
      || usage_error "give --schedule-event or --schedule-service, not both"
    local -a labels=(--schedule-event "--schedule-event service_name" "--schedule-event cluster_name")
    if [[ -z $schedule_event ]]; then
      [[ -n $schedule_service ]] || usage_error "--schedule needs --schedule-event (or --schedule-service)"
      [[ $schedule_service =~ $NAME_PATTERN ]] || usage_error "invalid schedule service: $schedule_service"
      if [[ $schedule_cluster =~ $CLUSTER_ARN_PATTERN ]]; then schedule_cluster=${BASH_REMATCH[2]}; fi
      [[ -z $schedule_cluster || $schedule_cluster =~ $NAME_PATTERN ]] \
        || usage_error "invalid schedule cluster: $schedule_cluster"
      [[ -n $schedule_cluster || $cluster != "*" ]] \
        || usage_error "with --cluster '*', --schedule-service needs --schedule-cluster"
      # What the template's four schedule fields sent before the event took their place.
      schedule_event="{\"cluster_name\": \"${schedule_cluster:-$cluster}\", \"service_name\": \"$schedule_service\","
      schedule_event+=" \"maintain_service_state\": true, \"wait_time\": 30}"
      labels=(--schedule-service --schedule-service --schedule-cluster)
    fi
    check_event "$repo_dir" "${labels[@]}" "$schedule_event" "$cluster" "$services"
    schedule_event=$EVENT_JSON
    [[ -z $schedule_target || $schedule_target == standard || $schedule_target == durable ]] \
      || usage_error "--schedule-target must be standard or durable"
  fi
  if [[ -n $schedule2 ]]; then
    [[ -n $schedule2_event ]] || usage_error "--schedule2 needs --schedule2-event"
    check_event "$repo_dir" --schedule2-event "--schedule2-event service_name" "--schedule2-event cluster_name" \
      "$schedule2_event" "$cluster" "$services"
    schedule2_event=$EVENT_JSON
    [[ -z $schedule2_target || $schedule2_target == standard || $schedule2_target == durable ]] \
      || usage_error "--schedule2-target must be standard or durable"
  fi
  local known parameter name flag pinned_by_user=""
  known=" $(template_parameters "$repo_dir/$TEMPLATE_NAME" | tr '\n' ' ')"
  for parameter in ${extra[@]+"${extra[@]}"}; do
    [[ $parameter =~ ^[A-Za-z0-9]+=.*$ ]] || usage_error "--parameter must look like Key=Value: $parameter"
    name=${parameter%%=*}
    [[ $known == *" $name "* ]] \
      || usage_error "--parameter $parameter: the template has no parameter $name (it has:${known% })"
    flag=$(flag_of_parameter "$name")
    [[ -z $flag ]] || usage_error "--parameter $parameter: set $name with $flag"
    if [[ $name == LockTableName ]]; then pinned_by_user=${parameter#*=}; fi
  done

  command -v aws >/dev/null 2>&1 || die "the AWS CLI (aws) is not installed or not on PATH"
  # v1 prints its version on stderr, and lacks what the printed commands use (--cli-binary-format).
  local cli_version
  cli_version=$(aws --version 2>&1) || cli_version=""
  [[ $cli_version == aws-cli/2.* ]] \
    || die "the AWS CLI v2 is required, and 'aws --version' says '${cli_version%% *}';" \
      "install v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
  if [[ -n $region ]]; then AWS_ARGS+=(--region "$region"); fi
  if [[ -n $profile ]]; then AWS_ARGS+=(--profile "$profile"); fi

  # 1. The lock table's current name, kept unless --parameter LockTableName says otherwise.
  local lock_table
  lock_table=$(current_lock_table "$stack")
  if [[ -n $pinned_by_user ]]; then
    if [[ -n $lock_table && $lock_table != "$pinned_by_user" ]]; then
      echo "cloudformation_deploy: warning: LockTableName=$pinned_by_user replaces the lock table $lock_table;" \
        "CloudFormation retains the old table: delete it by hand once no run is in flight" >&2
    fi
    lock_table=""
  fi

  # 2. The package
  local zip
  if [[ -n ${LAMBDA_ZIP:-} ]]; then
    zip=$LAMBDA_ZIP
    [[ -f $zip ]] || die "LAMBDA_ZIP=$zip does not exist"
    echo "Using prebuilt package $zip"
  else
    if [[ -n ${SKIP_DEPS:-} ]]; then
      echo "cloudformation_deploy: warning: SKIP_DEPS is set, so the package lacks its dependencies" \
        "and the durable function cannot start; unset it for a real deployment" >&2
    fi
    "$repo_dir/lambda_build.sh" >&2
    zip="${BUILD_DIR:-$repo_dir/build}"
    zip="${zip%/}/$PACKAGE_NAME"
    [[ -f $zip ]] || die "the build did not produce $zip"
  fi
  local sha key
  sha=$(sha256_of "$zip")
  key="$prefix/$sha.zip"

  # 3. Upload under its content hash: the same code always has the same key.
  if aws_cli s3api head-object --bucket "$bucket" --key "$key" >/dev/null 2>&1; then
    echo "Package already in s3://$bucket/$key"
  else
    echo "Uploading package to s3://$bucket/$key"
    aws_cli s3 cp "$zip" "s3://$bucket/$key" --only-show-errors
  fi

  # 4. Deploy. Parameters not given keep their current value on an update. The
  # template goes through the bucket too, so its size is never a limit.
  local -a overrides=(
    "ArtifactBucket=$bucket"
    "ArtifactKey=$key"
    "TargetClusterName=$cluster"
    "TargetServiceNames=$services"
  )
  if [[ -n $function_name ]]; then overrides+=("FunctionName=$function_name"); fi
  if [[ -n $service_tag_given ]]; then overrides+=("ServiceTagKey=$tag_key" "ServiceTagValue=$tag_value"); fi
  if [[ -n $lock_table ]]; then overrides+=("LockTableName=$lock_table"); fi
  if [[ -n $schedule_given ]]; then
    overrides+=("ScheduleExpression=$schedule")
    if [[ -n $schedule ]]; then
      overrides+=("ScheduleEvent=$schedule_event")
      if [[ -n $schedule_timezone ]]; then overrides+=("ScheduleTimezone=$schedule_timezone"); fi
      if [[ -n $schedule_target ]]; then overrides+=("ScheduleTarget=$schedule_target"); fi
    fi
  fi
  if [[ -n $schedule2_given ]]; then
    overrides+=("Schedule2Expression=$schedule2")
    if [[ -n $schedule2 ]]; then
      overrides+=("Schedule2Event=$schedule2_event")
      if [[ -n $schedule2_timezone ]]; then overrides+=("Schedule2Timezone=$schedule2_timezone"); fi
      if [[ -n $schedule2_target ]]; then overrides+=("Schedule2Target=$schedule2_target"); fi
    fi
  fi
  overrides+=(${extra[@]+"${extra[@]}"})

  local -a deploy_args=(
    --stack-name "$stack"
    --template-file "$repo_dir/$TEMPLATE_NAME"
    --s3-bucket "$bucket" --s3-prefix "$prefix"
    --capabilities CAPABILITY_NAMED_IAM
    --no-fail-on-empty-changeset
    --tags application=ecs-task-recycle
  )
  local cli_opts=""
  if [[ -n $region ]]; then cli_opts+=" --region $region"; fi
  if [[ -n $profile ]]; then cli_opts+=" --profile $profile"; fi

  if [[ -n $preview ]]; then
    preview_change_set "$stack" "$cli_opts" "${deploy_args[@]}" --parameter-overrides "${overrides[@]}"
    return 0
  fi

  echo "Deploying stack $stack"
  aws_cli cloudformation deploy "${deploy_args[@]}" --parameter-overrides "${overrides[@]}"

  # 5. Report, with names read from the stack rather than assumed.
  local function_name_out log_group durable_alias
  function_name_out=$(stack_output "$stack" FunctionName)
  log_group=$(stack_output "$stack" LogGroupName)
  durable_alias=$(stack_output "$stack" DurableFunctionAliasArn)
  [[ -n $function_name_out && $function_name_out != None ]] || die "stack $stack has no FunctionName output"

  local example_cluster=$cluster example_service=${services%%,*}
  if [[ $example_cluster == "*" ]]; then example_cluster="CLUSTER_NAME"; fi
  if [[ $example_service == "*" ]]; then example_service="SERVICE_NAME"; fi
  local payload="{\"cluster_name\": \"$example_cluster\", \"service_name\": \"$example_service\""
  local region_opt="" profile_env="" today
  today=$(date -u +%Y%m%d)
  if [[ -n $region ]]; then region_opt=" --region $region"; fi
  if [[ -n $profile ]]; then profile_env="AWS_PROFILE=$profile "; fi

  cat <<EOF

Deployed stack $stack
  package:  s3://$bucket/$key (sha256 $sha)
  function: $function_name_out
  durable:  $durable_alias
  logs:     $log_group

Try a dry run (nothing is changed):
  aws lambda invoke$cli_opts --function-name $function_name_out \\
    --cli-binary-format raw-in-base64-out \\
    --payload '$payload, "dry_run": true}' \\
    response.json && cat response.json

Recycle, and follow it to the end (started asynchronously: nothing re-sends it; exit 0 succeeded,
1 failed, 2 refused, 3 incomplete, 130 cancelled):
  ${profile_env}"$repo_dir/.venv/bin/python" "$repo_dir/lambda_function.py"$region_opt --cluster $example_cluster --service $example_service \\
    --wait-time 30 --invoke $function_name_out --follow

Or with the AWS CLI alone, synchronously, without its 60 s read timeout and its retries (which would
send the recycle a second time); the run_key (today's date) makes a second start answer already_running:
  AWS_MAX_ATTEMPTS=1 AWS_RETRY_MODE=standard aws lambda invoke$cli_opts --cli-read-timeout 0 \\
    --function-name $function_name_out --cli-binary-format raw-in-base64-out \\
    --payload '$payload, "maintain_service_state": true, "wait_time": 30, "run_key": "$today"}' \\
    response.json && cat response.json

Services too large for 15 minutes: start the durable function asynchronously. The
execution name makes the start idempotent: a retry or a second start the same day
returns the same execution instead of starting a second recycle.
  NAME=\$(python3 "$repo_dir/durable_function.py" --cluster $example_cluster --service $example_service --run-key "\$(date -u +%Y%m%d)")
  aws lambda invoke$cli_opts --function-name $durable_alias \\
    --invocation-type Event --durable-execution-name "\$NAME" \\
    --cli-binary-format raw-in-base64-out \\
    --payload '$payload, "maintain_service_state": true, "wait_time": 30}' \\
    response.json

Follow the logs:
  aws logs tail$cli_opts $log_group --follow
EOF
}

main "$@"
