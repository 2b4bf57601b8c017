# The two commands a newcomer types: `make demo` and `make test`.
# Each sets up what it needs (a venv in .venv; as root, the Debian packages) first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export ANSIBLE_NOCOLOR ?= 1
# The venv's tools (ansible-playbook, ansible-lint's helpers) come first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test lint unit process integration system-deps venv tools clean bench bench-smoke molecule collection device-venv device-test

demo: venv
	$(BIN)/fleetprof demo

# Two pytest-xdist workers: the tests that need a quiet machine (the SSH test fleet, real
# campaigns, real processes, timing) run one after another on one worker, the light ones
# beside them on the other (tests/conftest.py, tests/README.md). XDIST= runs serially.
XDIST ?= -n 2 --dist loadgroup

# Lint and the device tests run inside the suite, as tests/lint/ (each a make target
# below), on the worker that would otherwise idle beside the exclusive chain.
test: venv system-deps device-venv
	$(BIN)/python -m pytest -q --durations=20 $(XDIST) tests

unit: venv
	$(BIN)/python -m pytest -q $(XDIST) tests/unit

# Real processes as a device runs them (the session runner, samplers, py-spy) and timing.
process: venv
	$(BIN)/python -m pytest -q tests/process

integration: venv
	$(BIN)/python -m pytest -q tests/integration

# Each step a target of its own: tests/lint/test_lint.py runs them one by one.
LINT_STEPS := lint-ruff lint-types lint-device-types lint-ansible
.PHONY: $(LINT_STEPS)
lint: $(LINT_STEPS)

lint-ruff: venv
	$(BIN)/ruff check orchestrator fleetprof_device $(DEVICE_MODULES) $(ACTION_PLUGINS) tests examples benchmarks
	$(BIN)/ruff format --check orchestrator fleetprof_device $(DEVICE_MODULES) $(ACTION_PLUGINS) tests examples benchmarks

lint-types: venv
	$(BIN)/mypy
	$(BIN)/mypy --strict $(ACTION_PLUGINS)

lint-device-types: venv device-venv
	@if [ -x $(VENV38)/bin/mypy ]; then \
		$(VENV38)/bin/mypy --python-version 3.8 --strict fleetprof_device $(DEVICE_MODULES); \
	else \
		echo "no Python 3.8 ($(PYTHON38)): the device code is type-checked for $$($(BIN)/python -c 'import sys; print(sys.version[:4])') only"; \
		$(BIN)/mypy --strict fleetprof_device $(DEVICE_MODULES); \
	fi

lint-ansible: venv
	$(BIN)/ansible-lint --profile production playbooks roles

# The device code (fleetprof_device/ and the Ansible modules that run it) targets the
# devices' Python, 3.8 or newer: its lint and unit tests run under a Python 3.8 where one
# is installed, in a small venv of its own (pytest, and the last mypy that checks for 3.8).
PYTHON38 ?= /root/.pyenv/versions/3.8.18/bin/python3.8
VENV38 ?= .venv38
DEVICE_MODULES := $(wildcard roles/*/library/*.py)
# The roles' action plugins run in ansible-playbook on the controller (Python 3.11).
ACTION_PLUGINS := $(wildcard roles/*/action_plugins/*.py)
DEVICE_TESTS := tests/device

device-venv: $(VENV38)/.installed-stamp

$(VENV38)/.installed-stamp:
	@if [ -x $(PYTHON38) ]; then \
		$(PYTHON38) -m venv $(VENV38) && $(VENV38)/bin/pip install -q "pytest==8.3.5" "mypy==1.14.1" \
		&& touch $@; \
	else echo "no Python 3.8 at $(PYTHON38): skipping the 3.8 venv"; fi

device-test: device-venv
	@if [ -x $(VENV38)/bin/pytest ]; then \
		$(VENV38)/bin/python -m pytest -q -p no:cacheprovider --noconftest $(DEVICE_TESTS); \
	else echo "no Python 3.8 at $(PYTHON38): the device unit tests ran under $$($(BIN)/python -V) only"; fi

# Benchmarks (benchmarks/README.md; figures in docs/performance.md): every one at full size,
# results in benchmarks/results/; bench-smoke runs each at a tiny size (seconds), as CI does.
bench: venv
	$(BIN)/python -m benchmarks run

bench-smoke: venv
	$(BIN)/python -m benchmarks run --smoke

# The roles' molecule scenarios on the test fleet (needs root; see tests/fleet/README.md).
# `make test` runs them too, through tests/integration/test_molecule.py.
molecule: venv
	set -e; for role in fleetprof_preflight fleetprof_tools fleetprof_session; do \
		(cd roles/$$role && molecule test); \
	done

# The Ansible collection fleetprof.fleet, built from roles/ and playbooks/ as they are
# (orchestrator/collection.py; docs/awx.md): dist/fleetprof-fleet-<version>.tar.gz.
collection: venv
	$(BIN)/python -m orchestrator.collection --output dist

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

# Debian packages the tests need; only as root, and only what is missing.
system-deps:
	bash scripts/system-deps.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
