# Command index for the fidelity review lab. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: help install run test lint bench browser-deps clean

help:
	@echo "make install   create .venv and install pinned dependencies"
	@echo "make run       install, initialise the database with the demo study, start the app on :$(PORT)"
	@echo "make test      install, then run the test suite"
	@echo "make lint      ruff check"
	@echo "make bench     run the benchmarks in bench/"

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	# Make `python -m review` work from any folder with this venv's python.
	$(BIN)/python -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'review-lab.pth').write_text('$(CURDIR)\n')"
	touch $(STAMP)

install: $(STAMP)

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
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: install browser-deps
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

bench: install
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
