#!/usr/bin/env bash
# Build the Lambda deployment package, build/ecs-task-recycle.zip.
#
# The package holds the runtime modules, input.json and the pinned runtime
# dependencies (requirements.txt and requirements-durable.txt, installed for
# the Lambda platform). The same sources always give the same zip: entries are
# sorted, timestamps fixed and permissions normalised.
set -euo pipefail
[[ ${DEBUG:-} ]] && set -x

readonly PACKAGE_NAME="ecs-task-recycle.zip"
readonly LAMBDA_PLATFORM="manylinux2014_x86_64"
readonly LAMBDA_PYTHON_VERSION="3.13"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--skip-deps] [-h|--help]

Builds \${BUILD_DIR:-build}/${PACKAGE_NAME} from a clean build folder and prints
its path, size and sha256.

Options:
  --skip-deps   Package only the project's own files, without the pinned
                dependencies (boto3, botocore, the durable execution SDK).
                For tests only: such a package is not deployable.
  -h, --help    Show this help.

Environment:
  BUILD_DIR          Build folder (default: build/ beside this script). It is
                     deleted and recreated on every run.
  PYTHON             Python interpreter to run the build with. Default:
                     \$(pyenv root)/versions/3.13.0/bin/python3.13 if present,
                     else python3.
  SKIP_DEPS=1        Same as --skip-deps.
  SOURCE_DATE_EPOCH  Timestamp for the zip entries (default 1980-01-01).
  DEBUG=1            Trace every command.
EOF
}

die() {
  echo "lambda_build: error: $*" >&2
  exit 1
}

pick_python() {
  if [[ -n ${PYTHON:-} ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON is not executable"
    echo "$PYTHON"
    return
  fi
  local root
  if command -v pyenv >/dev/null 2>&1 && root=$(pyenv root 2>/dev/null) \
    && [[ -x "$root/versions/3.13.0/bin/python3.13" ]]; then
    echo "$root/versions/3.13.0/bin/python3.13"
    return
  fi
  command -v python3 >/dev/null 2>&1 || die "no python3 found; set PYTHON"
  command -v python3
}

# rm -rf on a folder taken from the environment: refuse anything that is not
# plainly a build folder.
check_build_dir() {
  local build_dir=$1 repo_dir=$2
  case "$build_dir" in
    "" | "/" | "$repo_dir" | "$repo_dir/" | "${HOME:-/nonexistent}" | "${HOME:-/nonexistent}/")
      die "refusing to use '$build_dir' as the build folder: it is deleted on every build"
      ;;
  esac
  case "$repo_dir/" in
    "$build_dir"/*) die "refusing to use '$build_dir' as the build folder: it contains the sources" ;;
  esac
}

install_dependencies() {
  local python=$1 repo_dir=$2 target=$3
  echo "Installing pinned runtime dependencies for ${LAMBDA_PLATFORM}, Python ${LAMBDA_PYTHON_VERSION}"
  if ! PIP_ROOT_USER_ACTION=ignore "$python" -m pip install \
    --disable-pip-version-check --no-input --quiet --no-compile \
    --platform "$LAMBDA_PLATFORM" --implementation cp \
    --python-version "$LAMBDA_PYTHON_VERSION" --only-binary=:all: \
    --target "$target" \
    --requirement "$repo_dir/requirements.txt" \
    --requirement "$repo_dir/requirements-durable.txt" \
    --constraint "$repo_dir/scripts/lambda-constraints.txt"; then
    die "pip could not install the runtime dependencies (is PyPI reachable?)"
  fi
  # Console scripts carry this machine's interpreter path; Lambda never runs them.
  rm -rf -- "${target:?}/bin"
  find "$target" -name __pycache__ -type d -prune -exec rm -rf -- {} +
}

main() {
  local skip_deps=${SKIP_DEPS:-}
  while (($#)); do
    case "$1" in
      --skip-deps) skip_deps=1 ;;
      -h | --help)
        usage
        return 0
        ;;
      *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
    shift
  done

  local repo_dir
  repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  local build_dir=${BUILD_DIR:-$repo_dir/build}
  build_dir=${build_dir%/}
  check_build_dir "$build_dir" "$repo_dir"
  local stage_dir="$build_dir/package"
  local zip_path="$build_dir/$PACKAGE_NAME"

  local python
  python=$(pick_python)
  local version
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$python is Python $version; the build needs 3.11 or newer"
  echo "Building ${PACKAGE_NAME} with $python (Python $version)"

  rm -rf -- "$build_dir"
  mkdir -p -- "$stage_dir"

  if [[ $skip_deps == 1 ]]; then
    echo "Skipping dependencies (SKIP_DEPS): this package is for tests and is not deployable"
  else
    install_dependencies "$python" "$repo_dir" "$stage_dir"
  fi

  echo "Copying runtime files"
  "$python" "$repo_dir/scripts/lambda_package.py" stage --source "$repo_dir" --target "$stage_dir"
  "$python" "$repo_dir/scripts/lambda_package.py" zip --source "$stage_dir" --output "$zip_path"
}

main "$@"
