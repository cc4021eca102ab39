# Veche: `make run` starts a development server, `make test` runs every check.
# Only Python 3.11+ is needed; everything else goes into .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= homeserver.yaml
DATA_DIR ?= ./data
SERVER_NAME ?= localhost:8448
PYTEST_ARGS ?=

# pip runs again only when pyproject.toml changes.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: help run config test lint interop

help:
	@echo "make run   - install into $(VENV), write $(CONFIG) if missing, run the server"
	@echo "make test  - install into $(VENV) with test extras, run ruff, mypy and pytest"
	@echo "make lint  - ruff and mypy only"
	@echo "make interop - federation tests against a real Synapse (installed from PyPI on first use)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	touch $@ $(RUN_STAMP)

# Server names with a port are reached over HTTPS directly, hence the development certificate.
$(CONFIG): | $(RUN_STAMP)
	$(BIN)/homeserver generate-config --server-name $(SERVER_NAME) --data-dir $(DATA_DIR) \
		--output $(CONFIG) --self-signed-tls

config: $(CONFIG)

run: $(RUN_STAMP) $(CONFIG)
	@echo
	@echo "Create a user:   $(BIN)/homeserver register-user --config $(CONFIG) alice"
	@echo "Client URL:      http://127.0.0.1:8008"
	@echo "Stop with Ctrl-C."
	@echo
	exec $(BIN)/homeserver run --config $(CONFIG)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# pytest's exit code 5 (no tests collected) fails the target like any other non-zero code.
# The Synapse interop tests run in `make interop` (.ci/run runs both).
test: lint
	$(BIN)/pytest -m "not interop" $(PYTEST_ARGS)

# SYNAPSE_VENV: where Synapse is (or gets) installed; see tests/interop/synapse_peer.py.
interop: $(TEST_STAMP)
	VECHE_INTEROP=1 $(BIN)/pytest -m interop tests/interop $(PYTEST_ARGS)
