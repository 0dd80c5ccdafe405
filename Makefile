# Command index for the fidelity review lab. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASE_STAMP := $(VENV)/.installed-base
STAMP := $(VENV)/.installed
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --build-deps-for editable \
  --no-emit-index-url --no-emit-find-links
PORT ?= 8501
LANES_SKIPPED_BY_TEST_FAST := not browser and not postgres and not sd15 and not slow

.PHONY: help install install-base lock run test test-fast test-db lint bench browser-deps clean

help:
	@echo "make install    create .venv, install the base and SD1.5 locks (hash-checked), then this project (editable)"
	@echo "make install-base  the base lock only: the app, tests and dev tools without torch (what test-fast needs)"
	@echo "make lock       recompile both locks from pyproject.toml (keeps pins; LOCK_ARGS=--upgrade)"
	@echo "make run        install, initialise the database with the demo study, start the app on :$(PORT)"
	@echo "make test       install, then run every test lane"
	@echo "make test-fast  run the tests outside the browser, postgres, sd15 and slow lanes (about 1.5 min)"
	@echo "make test-db    run the postgres lane alone: PostgreSQL's hot path against the ORM path, row for row"
	@echo "make lint       ruff check, the locks against pyproject.toml, then mypy over review/ and db/"
	@echo "make bench      run the benchmarks in bench/"

# Two locks pin every package with its hashes. requirements.lock is the base install: the app, the
# test and dev extras, no torch (the app's pages and every lane but sd15 run without it).
# requirements-sd15.lock is everything: the base lock's pins plus the sd15 extra (torch's CPU wheel
# from /opt/wheels, diffusers, transformers); requirements-nodeps.lock adds data-only packages
# without their dependencies. The project itself goes in editable, without deps. An existing .venv
# is kept (re-running venv would swap its pip for the bundled one).
$(BASE_STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --require-hashes -r requirements.lock
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	touch $@

$(STAMP): $(BASE_STAMP) requirements-sd15.lock requirements-nodeps.lock
	$(PIP_INSTALL) --require-hashes -r requirements-sd15.lock
	$(PIP_INSTALL) --require-hashes --no-deps -r requirements-nodeps.lock
	touch $@

install-base: $(BASE_STAMP)

install: $(STAMP)

# Add a dependency: edit pyproject.toml, then `make lock` and `make install`. The base lock first
# (every extra but sd15), then the full one constrained to its pins, so the two never disagree;
# `make lint` fails while either no longer matches pyproject.toml (.ci/check_locks.py).
lock: install-base
	$(BIN)/pip-compile $(LOCK_FLAGS) --extra test --extra dev $(LOCK_ARGS) \
	  -o requirements.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --all-extras --constraint requirements.lock $(LOCK_ARGS) \
	  -o requirements-sd15.lock pyproject.toml

# Debian's chromium for the real-browser tests; Playwright never downloads a browser here.
browser-deps:
	@if [ ! -x /usr/lib/chromium/chromium ] && [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) \
	      || echo "could not install chromium: run 'sudo apt-get install -y chromium'"; \
	  else echo "chromium missing: run 'sudo apt-get install -y chromium'"; fi; \
	fi

run: install
	$(BIN)/python -m review init
	$(BIN)/python -m review demo
	$(BIN)/streamlit run serve.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: install browser-deps
	$(BIN)/python -m pytest -q

# The -m expression decides; the ignores only spare collecting modules that import torch or start
# a browser at import time (about 7 s); two pytest-xdist workers use both cores.
test-fast: install-base
	$(BIN)/python -m pytest -q -n 2 -m "$(LANES_SKIPPED_BY_TEST_FAST)" --ignore-glob='tests/test_sd15*' \
	  --ignore=tests/test_browser.py

# The postgres lane alone, on a throwaway cluster: the only lane that compares the hot path's SQL
# (review/labeling/hotpath.py) with the ORM path; run it after changing either.
test-db: install
	$(BIN)/python -m pytest -q -m postgres

# The full install: mypy reads torch's and diffusers' own types where review/media/restore uses them.
lint: install
	$(BIN)/ruff check .
	$(BIN)/python .ci/check_locks.py
	$(BIN)/mypy

bench: install
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
