# pgha developer entry points. `make demo` and `make test` do their own set-up.
PYTHON ?= /usr/bin/python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_FLAGS ?=

.PHONY: demo test test-fast lint setup clean

# The virtualenv is made from Debian's Python so that the unprivileged `postgres` user,
# which runs Postgres and the agents when we start as root, can execute it.
$(BIN)/pgha: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/pgha
	scripts/install-system-deps.sh

demo: setup
	$(BIN)/pgha demo

lint: setup
	$(BIN)/ruff check pgha tests bench
	$(BIN)/ruff format --check pgha tests bench
	$(BIN)/mypy

# The whole suite: lint, types, the pure core, the store contract, real etcd and Postgres.
test: lint
	$(BIN)/pytest $(PYTEST_FLAGS)

# The inner loop: pure and in-memory tests only, no servers.
test-fast: setup
	$(BIN)/pytest -m "not integration" $(PYTEST_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
