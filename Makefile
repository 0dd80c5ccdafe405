# Command index for the fidelity review lab. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
LANES_SKIPPED_BY_TEST_FAST := not browser and not postgres and not sd15 and not slow

.PHONY: help install lock run test test-fast test-db lint bench browser-deps clean

help:
	@echo "make install    create .venv, install requirements.lock (hash-checked), then this project (editable)"
	@echo "make lock       recompile requirements.lock from pyproject.toml (keeps pins; LOCK_ARGS=--upgrade)"
	@echo "make run        install, initialise the database with the demo study, start the app on :$(PORT)"
	@echo "make test       install, then run every test lane"
	@echo "make test-fast  run the tests outside the browser, postgres, sd15 and slow lanes (about 1.5 min)"
	@echo "make test-db    run the postgres lane alone: PostgreSQL's hot path against the ORM path, row for row"
	@echo "make lint       ruff check"
	@echo "make bench      run the benchmarks in bench/"

# The lock pins every package with its hashes; requirements-nodeps.lock adds data-only packages
# without their dependencies; the project itself goes in editable, without deps.
$(STAMP): requirements.lock requirements-nodeps.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-nodeps.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Add a dependency: edit pyproject.toml, then `make lock` and `make install`.
lock: install
	$(BIN)/pip-compile --quiet --generate-hashes --all-extras --allow-unsafe --strip-extras \
	  --build-deps-for editable --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) \
	  -o requirements.lock pyproject.toml

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
test-fast: install
	$(BIN)/python -m pytest -q -n 2 -m "$(LANES_SKIPPED_BY_TEST_FAST)" --ignore-glob='tests/test_sd15*' \
	  --ignore=tests/test_browser.py

# The postgres lane alone, on a throwaway cluster: the only lane that compares the hot path's SQL
# (review/labeling/hotpath.py) with the ORM path; run it after changing either.
test-db: install
	$(BIN)/python -m pytest -q -m postgres

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
