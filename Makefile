# The two commands that matter: `make dev` (the whole service on this machine) and `make test` (every test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .venv-tools
BIN := $(VENV)/bin
# sam build without Docker needs the Lambda runtime's Python on PATH (template.yaml: python3.13).
LAMBDA_PYTHON_BIN ?= $(shell for p in $$HOME/.pyenv/versions/3.13*/bin; do [ -x $$p/python3.13 ] && echo $$p && break; done)

.PHONY: dev test lint unit integration e2e template build invoke bench chaos clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/activate

$(TOOLS)/bin/sam:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	# SAM CLI, cfn-lint and checkov pin conflicting packages: they live beside the project's venv.
	$(TOOLS)/bin/pip install --quiet aws-sam-cli cfn-lint checkov

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

build: $(TOOLS)/bin/sam  ## sam build, without Docker
	PATH="$(LAMBDA_PYTHON_BIN):$$PATH" $(TOOLS)/bin/sam build

bench: $(BIN)/activate $(TOOLS)/bin/sam  ## Benchmarks: cold start, refresh throughput, due-finding reads, token reads, cost; prints the table, writes docs/performance.md
	$(BIN)/python -m bench

chaos: $(BIN)/activate  ## Randomized soak of the token lifecycle under faults (2,000 refresh cycles, 8 processes); writes docs/reliability.md
	$(BIN)/python -m chaos

invoke: $(BIN)/activate  ## Run a sample event through a function against the running local stack: make invoke FUNCTION=test EVENT=events/test.json
	$(BIN)/python -m qbo_local invoke $(FUNCTION) $(EVENT)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .hypothesis
