# The two commands a newcomer needs: `make demo` and `make test`. Each makes the virtual
# environment and installs what it needs on first use, on a machine with only Python 3 and pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# pytest's own per-test timeout turns any hang into a failure; the whole run is bounded too
PYTEST_ARGS ?=

.PHONY: demo test test-slurm test-browser lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# stamps: reinstall only when pyproject.toml changes
$(VENV)/.demo-stamp: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.test-stamp: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test,ray,dask]'
	touch $@

demo: $(VENV)/.demo-stamp
	$(BIN)/python -m paramsurvey.examples.readme

lint: $(VENV)/.test-stamp
	$(BIN)/ruff check src tests benchmarks examples

typecheck: $(VENV)/.test-stamp
	$(BIN)/mypy src

unit: $(VENV)/.test-stamp
	$(BIN)/python -m pytest -m "not slurm and not browser" $(PYTEST_ARGS)

# The tests against a real single-node Slurm: installs slurm-wlm and munge first when they are
# missing (apt-get, as root), then starts a private Slurm on loopback for the tests.
test-slurm: $(VENV)/.test-stamp
	tools/install-slurm
	$(BIN)/python -m pytest -m slurm $(PYTEST_ARGS)

# The report's tests in a real browser (headless Chromium driven by selenium, offline): installs
# chromium and chromium-driver first when they are missing (apt-get, as root).
test-browser: $(VENV)/.test-stamp
	tools/install-browser
	$(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(VENV)/.test-stamp
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
