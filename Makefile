# octotui — `make run` opens the dashboard, `make test` runs the whole suite (CI calls it).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
JMETER_IMAGE ?= octotui-jmeter:local
PYTEST_ARGS ?=

.PHONY: install run test test-fast lint screenshots docker-engine jmeter-image agent-image test-tools bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

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
	$(BIN)/mypy octotui agent

screenshots: install
	$(BIN)/pytest tests/test_snapshots.py --snapshot-update -p no:xdist

docker-engine:
	bash scripts/docker-engine.sh

jmeter-image: docker-engine
	bash scripts/jmeter-image.sh $(JMETER_IMAGE)

## agent-image: the agent as a Docker image (octotui-agent:latest), built from a local Debian base
agent-image: install docker-engine
	bash scripts/agent-image.sh

## test-tools: Debian's tinyproxy (proxy tests), openssl (TLS tests), docker-registry (image pull test)
test-tools:
	bash scripts/test-tools.sh

## bench: the benchmark suite against DESIGN.md's targets (never part of `make test`); writes docs/BENCHMARKS.md
bench: install docker-engine jmeter-image
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
