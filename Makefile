# The two commands of the README:
#   make demo   create .venv, install, migrate, seed, serve the demo on 127.0.0.1:8000
#   make test   install what the tests need (Chromium included unless SKIP_BROWSER=1) and run
#               the whole suite
# Other interpreters and Django versions get a virtualenv of their own, e.g.
#   make test VENV=.venv-py313 PYTHON=python3.13 DJANGO_SPEC='django>=6,<7'
# and `make bench` runs the benchmarks in bench/.venv (see bench/README.md).
PYTHON ?= python3
VENV ?= .venv
DJANGO_SPEC ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test lint install browser pgbouncer clean bench

# The stamp records the DJANGO_SPEC installed: a venv is reinstalled only when
# pyproject.toml changes or another DJANGO_SPEC is asked of it.
ifneq ($(shell cat $(STAMP) 2>/dev/null),$(DJANGO_SPEC))
$(STAMP): FORCE
endif

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo,test]' $(if $(DJANGO_SPEC),'$(DJANGO_SPEC)',)
	@echo '$(DJANGO_SPEC)' > $@

FORCE:

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:8000

# Debian's Chromium for tests/test_browser.py, installed when missing and we are root:
# the packages chromium and fonts-liberation with their dependencies, no recommended
# packages (no daemons). SKIP_BROWSER=1 skips this step (without Chromium the browser test
# is skipped).
BROWSER_PACKAGES := chromium fonts-liberation

browser:
	@if [ -n "$(SKIP_BROWSER)" ]; then \
	  echo "SKIP_BROWSER is set: not installing Chromium (without it the browser test is skipped)"; \
	elif [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing $(BROWSER_PACKAGES) with apt-get --no-install-recommends for the browser test (SKIP_BROWSER=1 skips this)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) \
	    || echo "Could not install chromium: the browser test will not run"; \
	else \
	  echo "No Chromium at $(CHROMIUM): run 'sudo apt-get install --no-install-recommends $(BROWSER_PACKAGES)' for the browser test"; \
	fi

# Debian's PgBouncer for the row-level security tests (installed when missing and we are root).
pgbouncer:
	@if command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's pgbouncer for the row-level security tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer \
	    || echo "Could not install pgbouncer: its tests will be skipped"; \
	else \
	  echo "No pgbouncer: run 'sudo apt-get install pgbouncer' for the row-level security tests"; \
	fi

test: $(STAMP) browser pgbouncer
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check tenancy
	$(BIN)/mypy

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m bench.run $(BENCH_ARGS)

$(BENCH_STAMP): pyproject.toml bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e . -r bench/requirements.txt
	@touch $@

clean:
	rm -rf $(VENV) $(BENCH_VENV) .test.sqlite3 demo.sqlite3 build dist *.egg-info
