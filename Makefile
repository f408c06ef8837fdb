# bejo: `make run` starts everything locally, `make test` runs the whole suite on real servers.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/bejo_contracts libs/bejo_kit libs/bejo_cli \
            services/catalog services/orders services/payments services/notifications gateway
STAMP := $(VENV)/.installed

export AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
export MONGODB_URL ?= mongodb://127.0.0.1:27017/
export PATH := $(PATH):/usr/local/go/bin

PYTEST_ARGS ?=

.PHONY: help venv infra infra-down infra-status kustomize chromium test test-faults run lint fmt typecheck bench load lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): constraints.txt requirements-dev.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -r requirements-dev.txt $(foreach p,$(PACKAGES),-e $(p))
	@touch $@

venv: $(STAMP)  ## create .venv and install every package (editable) with pinned versions

infra:  ## start RabbitMQ and the Mongo-wire server (or reuse running ones)
	@scripts/infra.sh up

infra-down:  ## stop what `make infra` started
	@scripts/infra.sh down

infra-status:
	@scripts/infra.sh status

kustomize:  ## build the pinned kustomize into .cache/bin (Go module proxy; tests/deploy renders the overlays with it)
	@scripts/kustomize.sh >/dev/null

chromium:  ## install Debian's chromium (apt, as root) where missing, for the dashboard's browser test
	@scripts/chromium.sh >/dev/null

test: venv infra kustomize chromium  ## install, start infrastructure, run every test
	$(BIN)/pytest $(PYTEST_ARGS)

# Its own RabbitMQ and Mongo-wire server (ports 5673, 27018) and processes (9080-9085), started and
# stopped by the suite: the servers of `make infra` are never touched. See docs/reliability.md.
test-faults: venv  ## the fault suite: broker, database and process faults under a load of orders (~6 min)
	BEJO_FAULTS=1 $(BIN)/pytest tests/faults -s -q $(PYTEST_ARGS)

REPLICAS ?= 1

run: venv infra  ## start infrastructure, every service and the gateway; REPLICAS=2 make run: 2 of each service; Ctrl-C stops them
	@REPLICAS=$(REPLICAS) scripts/run.sh

lint:  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --config-file pyproject.toml libs/bejo_kit/src libs/bejo_contracts/src libs/bejo_cli/src \
		services/catalog/src services/orders/src services/payments/src services/notifications/src gateway/src

fmt:  ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv infra  ## every benchmark in one bounded run (about 12 min); prints the table, writes docs/benchmarks.md
	@scripts/bench-tools.sh
	$(BIN)/python -m bench

LOAD_ARGS ?= --seconds 60

load: venv  ## the Harbolnas load scenario against `make run` (loopback only); LOAD_ARGS="--seconds 120 --browsers 48"
	$(BIN)/python -m bench.harbolnas $(LOAD_ARGS)

lock:  ## re-pin every third-party dependency into constraints.txt
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:  ## remove the venv and local state (stop infra first)
	rm -rf $(VENV) .state
