# tunekit. Two commands do all the set-up on a fresh machine:
#   make demo   runs the whole notebook series on the local profile
#   make test   runs the tests
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# MLServer (stage 06) needs an older FastAPI than MLflow's server: it gets its own environment.
MLSERVER_VENV ?= .venv-mlserver
# checkov (the manifests' and terraform's policy scan) pins packages the kit pins differently.
CHECKOV_VENV ?= .venv-checkov
CHECKOV ?= checkov==3.3.30
# KServe's SDK only for its generated model types (the InferenceService schema check); its
# server dependencies are not needed, so it is installed without them.
KSERVE_SDK ?= kserve==0.21.0
# Installed first and on its own: a plain `torch` requirement pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
# pytest-xdist workers (one per core); a module's tests stay on one worker, which shares its
# fixtures. PYTEST_WORKERS=0 runs the suite in this process, one test after another.
PYTEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Debian packages the tests need: Chromium for the browser tests (driven by Playwright, whose
# own browser download is not used) and PostgreSQL for `mlflow_backend=postgresql`.
SYSTEM_PACKAGES ?= chromium postgresql
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: install system-packages demo test test-e2e test-fast test-browser down ui lint notebooks clean

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps '$(KSERVE_SDK)'
	@touch $@

# The same code creates it for an installed kit without a checkout (tunekit.backends.local.mlserver_env).
$(MLSERVER_VENV)/.installed: docker/kserve/requirements.txt $(VENV)/.installed
	$(BIN)/python -m tunekit.backends.local.mlserver_env $(MLSERVER_VENV) --torch '$(TORCH)'
	@touch $@

$(CHECKOV_VENV)/.installed: Makefile
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet '$(CHECKOV)'
	@touch $@

install: $(VENV)/.installed $(MLSERVER_VENV)/.installed $(CHECKOV_VENV)/.installed

system-packages:  ## chromium and postgresql, where missing (apt-get)
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	missing=$$(for p in $$missing; do case " $(SYSTEM_PACKAGES) " in *" $$p "*) echo $$p;; esac; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  install="$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"; \
	  $$install $$missing || { $(SUDO) apt-get update -qq && $$install $$missing; }; \
	fi

demo: install  ## run 01..07 on the local profile, print where everything is
	$(BIN)/tunekit run --profile local

test: install system-packages lint  ## lint, then every test (the slow end-to-end ones included)
	$(PYTEST) -m "not alone" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m alone $(PYTEST_ARGS)

test-fast: install system-packages  ## everything but the end-to-end runs
	$(PYTEST) -m "not e2e" $(PYTEST_ARGS)

test-browser: install system-packages  ## only the browser tests (JupyterLab, MLflow UI; needs /usr/bin/chromium)
	$(PYTEST) -m browser $(PYTEST_ARGS)

test-e2e: install system-packages  ## only the end-to-end runs of the series
	$(PYTEST) -m e2e $(PYTEST_ARGS)

down: install  ## stop what demos left running
	$(BIN)/tunekit down

ui: install  ## reopen the MLflow UI on the latest run's data (Ctrl-C stops it)
	$(BIN)/tunekit ui

lint: install  ## ruff, and mypy over lib/ (the backends implement tunekit.backends.Backend)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check lib tests
	$(BIN)/mypy

notebooks: install  ## after editing notebooks/NN-*.ipynb or its .py pair: bring the other in line
	$(BIN)/python tools/sync_notebooks.py

clean:  ## remove the virtual environments (runs/ stays)
	rm -rf $(VENV) $(MLSERVER_VENV) $(CHECKOV_VENV)
