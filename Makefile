# The two commands that matter: `make dev` (the whole service on this machine) and `make test` (every test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .venv-tools
BIN := $(VENV)/bin
# What CI tested, pinned: `make lock` re-resolves both files from pyproject.toml and the tool list.
CONSTRAINTS := constraints.txt
TOOLS_CONSTRAINTS := constraints-tools.txt
TOOL_PACKAGES := aws-sam-cli cfn-lint checkov
# setuptools prints a notice on every editable install that says nothing about this project.
QUIET_PIP := PYTHONWARNINGS="ignore:Editable installation"
# No usage data from SAM CLI, and no notice about it on every run.
export SAM_CLI_TELEMETRY := 0

.PHONY: dev test lint unit integration e2e template build invoke bench chaos lock dist clean

$(BIN)/activate: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(QUIET_PIP) $(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[test]"
	touch $(BIN)/activate

$(TOOLS)/bin/sam:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	# SAM CLI, cfn-lint and checkov pin conflicting packages: they live beside the project's venv.
	$(TOOLS)/bin/pip install --quiet -c $(TOOLS_CONSTRAINTS) $(TOOL_PACKAGES)

dev: $(BIN)/activate  ## Run the whole service locally: AWS (moto), the functions behind a router, the schedule, an Intuit emulator
	$(BIN)/python -m qbo_local up $(ARGS)

test: lint template $(BIN)/activate  ## Every test: lint, template checks, then one pytest run over unit, emulator, integration and e2e
	$(BIN)/python -m pytest

lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: $(BIN)/activate
	$(BIN)/python -m pytest tests/unit tests/emulator -q

integration: $(BIN)/activate
	$(BIN)/python -m pytest tests/integration -q

e2e: $(BIN)/activate  ## Starts the local stack and drives it with headless Chromium
	$(BIN)/python -m pytest tests/e2e -q

template: $(TOOLS)/bin/sam  ## SAM and CloudFormation linting of template.yaml, and checkov's security checks
	$(TOOLS)/bin/sam validate --lint
	$(TOOLS)/bin/cfn-lint template.yaml
	$(TOOLS)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download

# A Python of the Lambda runtime's version compiles the layer's bytecode (layers/qbo_connect/Makefile).
# `make build` skips SAM's cache: its key is the layer's sources, not whether this host can compile them.
BYTECODE_PYTHON ?= python3.13
export BYTECODE_PYTHON

build: $(TOOLS)/bin/sam  ## sam build, without Docker (the layer's Makefile fetches Lambda-platform wheels and compiles their bytecode)
	@$(BYTECODE_PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || echo \
		"make build: no Python 3.13 (BYTECODE_PYTHON=$(BYTECODE_PYTHON)): the layer will ship without bytecode and every cold start compiles it (docs/performance.md); point BYTECODE_PYTHON at a python3.13" >&2
	$(TOOLS)/bin/sam build --no-cached

bench: $(BIN)/activate $(TOOLS)/bin/sam  ## Benchmarks: cold start, refresh throughput, due-finding reads, token reads, cost; prints the table, writes docs/performance.md
	$(BIN)/python -m bench

chaos: $(BIN)/activate  ## Randomized soak of the token lifecycle under faults (2,000 refresh cycles, 8 processes); writes docs/reliability.md
	$(BIN)/python -m chaos

invoke: $(BIN)/activate  ## Run a sample event through a function against the running local stack: make invoke FUNCTION=test EVENT=events/test.json
	$(BIN)/python -m qbo_local invoke $(FUNCTION) $(EVENT)

lock:  ## Re-resolve the workstation, test and tool dependencies in fresh venvs and pin them; commit the two files
	rm -rf .venv-lock .venv-lock-tools
	$(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet --upgrade pip
	$(QUIET_PIP) .venv-lock/bin/pip install --quiet -e ".[test]"
	{ echo "# Pinned by \`make lock\` from pyproject.toml ($$(date -u +%F)): what \`make test\` installs."; \
	  .venv-lock/bin/pip freeze --exclude-editable; } > $(CONSTRAINTS)
	$(PYTHON) -m venv .venv-lock-tools && .venv-lock-tools/bin/pip install --quiet --upgrade pip
	.venv-lock-tools/bin/pip install --quiet $(TOOL_PACKAGES)
	{ echo "# Pinned by \`make lock\` ($$(date -u +%F)): SAM CLI, cfn-lint and checkov for \`make template\` and \`make build\`."; \
	  .venv-lock-tools/bin/pip freeze; } > $(TOOLS_CONSTRAINTS)
	rm -rf .venv-lock .venv-lock-tools
	@echo "Pinned: $(CONSTRAINTS), $(TOOLS_CONSTRAINTS). Run make test, then commit them."

dist: $(BIN)/activate  ## A wheel of the CLI (and the shared package it uses) in dist/, to install on a workstation without a clone
	rm -rf dist
	$(QUIET_PIP) $(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/*.whl

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .hypothesis
