# atlasguard working loop. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ANCHORS := .anchors-venv
export ATLASGUARD_ANCHORS_VENV := $(abspath $(ANCHORS))

.PHONY: run test lint format bench services anchors clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[gateway,onnx]'
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@ $(VENV)/.stamp-run

# The anchors (picklescan, modelscan, fickling, model-signing...) live in their own
# virtual environment: benchmarks and interoperability tests call them, atlasguard never imports them.
$(ANCHORS)/.stamp: bench/anchors.txt
	$(PYTHON) -m venv $(ANCHORS)
	$(ANCHORS)/bin/pip install -q --upgrade pip
	$(ANCHORS)/bin/pip install -q -r bench/anchors.txt
	touch $@

anchors: $(ANCHORS)/.stamp

# ART and torch, for the training bench only (make test does not need them).
$(ANCHORS)/.stamp-ml: $(ANCHORS)/.stamp bench/anchors-ml.txt
	$(ANCHORS)/bin/pip install -q -r bench/anchors-ml.txt
	touch $@

## run: set up, create the demo deployment once (digits model, keys), serve it behind every guard.
run: $(VENV)/.stamp-run
	@test -f demo/atlasguard.toml || $(BIN)/atlasguard init demo --demo
	$(BIN)/atlasguard coverage --policy demo/atlasguard.toml
	$(BIN)/atlasguard serve --config demo/atlasguard.toml

services:
	scripts/services.sh

# The official SARIF validator (Microsoft's SARIF Multitool, from npm, with the 2.1.0 schema):
# the SARIF tests validate atlasguard's reports with it.
SARIF_TOOL := .tools/node_modules/@microsoft/sarif-multitool-linux
$(SARIF_TOOL)/.stamp:
	npm install --silent --no-audit --no-fund --prefix .tools @microsoft/sarif-multitool@5.7.0
	touch $@

# Debian's Chromium: the console's end-to-end tests drive it through Playwright
# (Playwright's own browser download does not work here).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

## test: set up (dev + all extras, anchors, SARIF validator, Chromium), check PostgreSQL and Redis, run the tests.
test: $(VENV)/.stamp-dev anchors $(SARIF_TOOL)/.stamp $(CHROMIUM) services
	$(BIN)/pytest

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(VENV)/.stamp-dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

## bench: the side-by-side benchmarks under bench/ (slow).
bench: $(VENV)/.stamp-dev anchors $(ANCHORS)/.stamp-ml services
	$(BIN)/pytest -m bench -p no:randomly -s bench

clean:
	rm -rf $(VENV) $(ANCHORS) .tools .pytest_cache .mypy_cache .ruff_cache build dist
