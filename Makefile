# octotui — `make run` opens the dashboard, `make test` runs the whole suite (CI calls it).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
#: Exact versions and hashes of everything `make install` puts in $(VENV) (Python 3.11, Linux x86_64).
LOCK := requirements.lock
LOCK_ARGS ?=
JMETER_IMAGE ?= octotui-jmeter:local
PYTEST_ARGS ?=

.PHONY: install lock run test test-fast lint screenshots docker-engine jmeter-image agent-image server-image cluster cluster-status cluster-down test-tools bench clean

# The lock (with --require-hashes) installs every dependency, the test extra and the build backend;
# then the project itself, built with that backend; `pip check` fails when pyproject.toml asks for a
# package the lock lacks (run `make lock`).
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

## lock: re-resolve requirements.lock from pyproject.toml with pip-tools, in a throwaway venv; pins that
## still fit are kept (`make lock LOCK_ARGS=--upgrade` takes the newest within pyproject.toml's bounds)
lock:
	tools=$$(mktemp -d) && trap 'rm -rf "$$tools"' EXIT && \
	$(PYTHON) -m venv "$$tools" && "$$tools/bin/python" -m pip install --quiet 'pip-tools==7.6.2' && \
	CUSTOM_COMPILE_COMMAND="make lock" "$$tools/bin/pip-compile" --quiet --extra test --generate-hashes \
		--allow-unsafe --strip-extras --build-deps-for editable --no-emit-index-url --no-emit-find-links \
		--output-file $(LOCK) $(LOCK_ARGS) pyproject.toml

run: install
	$(BIN)/octotui

## test: everything the suite needs (Docker engine, JMeter image), then the suite in parallel
test: install docker-engine jmeter-image agent-image test-tools
	$(BIN)/pytest -n auto --dist loadgroup $(PYTEST_ARGS)

## test-fast: the suite without Docker (developer loop)
test-fast: install
	$(BIN)/pytest -n auto -m "not docker and not jmeter" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check octotui agent tests
	$(BIN)/ruff format --check octotui agent tests
	$(BIN)/mypy octotui agent bench

screenshots: install
	$(BIN)/pytest tests/test_snapshots.py --snapshot-update -p no:xdist
	OCTOTUI_SCREENSHOTS=1 $(BIN)/pytest tests/test_tui_test_screen.py tests/test_tui_monitors.py \
		tests/test_tui_fleet.py tests/test_tui_replicas.py -p no:xdist -q

docker-engine:
	bash scripts/docker-engine.sh

jmeter-image: docker-engine
	bash scripts/jmeter-image.sh $(JMETER_IMAGE)

## agent-image: the agent as a Docker image (octotui-agent:latest), built from a local Debian base
agent-image: install docker-engine
	bash scripts/agent-image.sh

## server-image: the control server as a Docker image (octotui-server:latest), from the same local Debian base
server-image: install docker-engine
	bash scripts/server-image.sh

REPLICAS ?= 2
## cluster: PostgreSQL + REPLICAS server replicas (containers) + HAProxy on this host (deploy/cluster.sh; README "Several servers")
cluster: server-image
	bash deploy/cluster.sh up $(REPLICAS)

cluster-status:
	bash deploy/cluster.sh status

## cluster-down: stop what `make cluster` started (its data stays)
cluster-down:
	bash deploy/cluster.sh down

## test-tools: Debian's tinyproxy (proxy tests), openssl (TLS tests), docker-registry + apache2-utils' htpasswd (image pull and registry login tests)
test-tools:
	bash scripts/test-tools.sh

## bench: the benchmark suite against DESIGN.md's targets (never part of `make test`); writes docs/BENCHMARKS.md
bench: install docker-engine jmeter-image
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
