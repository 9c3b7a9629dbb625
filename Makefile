# Two commands matter: `make demo` and `make test`. Both build the venv first.
# Python 3.13 matches the Lambda runtime; fall back to python3 (3.11+) elsewhere.
PYENV_PY := $(shell command -v pyenv >/dev/null 2>&1 && echo "$$(pyenv root)/versions/3.13.0/bin/python3.13")
PYTHON ?= $(if $(and $(PYENV_PY),$(wildcard $(PYENV_PY))),$(PYENV_PY),python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint types cfn shellcheck pytest bench clean

# pip runs with --quiet, so each step says what it is doing before it starts.
$(STAMP): requirements.txt requirements-dev.txt requirements-durable.txt requirements-cli.txt
	@echo "creating the virtualenv $(VENV) with $(PYTHON)…"
	$(PYTHON) -m venv $(VENV)
	@echo "upgrading pip…"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "installing the tool and test dependencies from requirements-dev.txt (about a minute)…"
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)
	@echo "virtualenv ready."

demo: $(STAMP)
	$(BIN)/python -m dev.demo

test: lint types cfn shellcheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

cfn: $(STAMP)
	$(BIN)/cfn-lint cloudformation.yaml

shellcheck: $(STAMP)
	$(BIN)/shellcheck lambda_build.sh cloudformation_deploy.sh .ci/run $(wildcard scripts/*.sh)

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m dev.bench

clean:
	rm -rf $(VENV) build out .pytest_cache .mypy_cache .ruff_cache
