# pgha developer entry points. `make demo` and `make test` do their own set-up.
PYTHON ?= /usr/bin/python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_FLAGS ?=
# Two workers, one test file each at a time: most of the suite waits on live clusters (a
# lease to expire, a replica to catch up), so two run side by side on two cores.
PYTEST_WORKERS ?= 2
PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: demo test test-fast lint setup ansible-setup clean

# The virtualenv is made from Debian's Python so that the unprivileged `postgres` user,
# which runs Postgres and the agents when we start as root, can execute it.
$(BIN)/pgha: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/pgha
	scripts/install-system-deps.sh

# The Ansible controller that tests the role lives in its own virtualenv, apart from pgha's
# dependencies (ansible/requirements-controller.txt says why it is ansible-core 2.19).
ANSIBLE_VENV := .venv-ansible
$(ANSIBLE_VENV)/bin/ansible-playbook: ansible/requirements-controller.txt
	$(PYTHON) -m venv $(ANSIBLE_VENV)
	$(ANSIBLE_VENV)/bin/pip install -q -r ansible/requirements-controller.txt
	touch $@

ansible-setup: $(ANSIBLE_VENV)/bin/ansible-playbook

demo: setup
	$(BIN)/pgha demo

lint: setup
	$(BIN)/ruff check pgha tests bench
	$(BIN)/ruff format --check pgha tests bench
	$(BIN)/mypy

# The whole suite: lint, types, the pure core, the store contract, real etcd and Postgres.
test: lint ansible-setup
	$(BIN)/pytest $(PARALLEL) $(PYTEST_FLAGS)

# The inner loop: pure and in-memory tests only, no servers.
test-fast: setup
	$(BIN)/pytest -m "not integration" $(PARALLEL) $(PYTEST_FLAGS)

clean:
	rm -rf $(VENV) $(ANSIBLE_VENV) .pytest_cache .mypy_cache .ruff_cache
