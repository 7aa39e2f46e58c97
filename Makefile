# ticketq — `make demo` and `make test` work on a fresh machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Every dependency, transitive ones too, pinned with hashes: a fresh machine next month installs
# what was tested. requirements.lock is what the image runs; the test lock adds the test extras.
LOCK      := requirements.lock
TEST_LOCK := requirements-test.lock
# Licences the image may be distributed with (permissive, weak copyleft, the fonts' OFL).
LICENSES_OK := MIT;BSD;Public Domain;Apache;ISC;Mozilla Public License;MPL;PSF;Python Software Foundation;Lesser General Public License;LGPL;OFL;Unlicense;DFSG approved
COMPILE   := $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet --custom-compile-command "make lock"

.PHONY: demo test lint lock bench bench-memory chaos up clean system-deps browser-deps compose-deps postgres-deps monitoring-deps catalogs messages

# The translations: templates/locales/<language>/LC_MESSAGES/messages.po (in git), compiled to .mo here.
LOCALES_DIR := templates/locales
CATALOGS    := $(wildcard $(LOCALES_DIR)/*/LC_MESSAGES/messages.po)

$(STAMP): pyproject.toml $(LOCK) $(TEST_LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "ticketq needs Python 3.11+ (found: $$($(PYTHON) --version))"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r $(TEST_LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# Compile every catalog whose .po is newer than its .mo (fuzzy entries are left out, as at run time).
catalogs: $(CATALOGS:.po=.mo)

$(LOCALES_DIR)/%/LC_MESSAGES/messages.mo: $(LOCALES_DIR)/%/LC_MESSAGES/messages.po $(STAMP)
	@$(VENV)/bin/pybabel compile --statistics -l $* -i $< -o $@

# After changing a text in a template or services/: extract it and merge it into every catalog
# (tests/test_catalogs.py fails until each language has its translation).
messages: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -k t -o $(LOCALES_DIR)/messages.pot --project ticketq \
	  --copyright-holder "ticketq contributors" --msgid-bugs-address "" --sort-by-file --width 100 .
	$(VENV)/bin/pybabel update -i $(LOCALES_DIR)/messages.pot -d $(LOCALES_DIR) --width 100 --no-fuzzy-matching --ignore-obsolete

# Regenerate both locks from pyproject.toml's ranges (tests/test_lock.py fails when they disagree).
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install --quiet uv
	$(COMPILE) -o $(LOCK)
	$(COMPILE) --extra test -c $(LOCK) -o $(TEST_LOCK)

# WeasyPrint is 5-7x faster with HarfBuzz's subsetter; install it where we may, say so where not.
system-deps:
	@if ldconfig -p 2>/dev/null | grep -q libharfbuzz-subset.so.0; then \
	  echo "system-deps: libharfbuzz-subset0 present (fast PDF font subsetting)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "system-deps: installing libharfbuzz-subset0 with apt-get (5-7x faster PDFs)"; \
	  (apt-get install -y -qq libharfbuzz-subset0 >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libharfbuzz-subset0 >/dev/null 2>&1)) || \
	  echo "system-deps: WARNING could not install libharfbuzz-subset0; PDFs will render 5-7x slower"; \
	else \
	  echo "system-deps: WARNING libharfbuzz-subset0 is missing and I am not root with apt-get;"; \
	  echo "             PDFs render 5-7x slower. Install it: sudo apt-get install libharfbuzz-subset0"; \
	fi

# The order page's browser test drives Debian's Chromium headless through chromedriver (tests only:
# `make demo` and `make up` do not need a browser).
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
	  echo "system-deps: chromium + chromium-driver present (order page browser test)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "system-deps: installing chromium chromium-driver with apt-get (order page browser test)"; \
	  (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1)) || \
	  echo "system-deps: WARNING could not install chromium chromium-driver; the order page browser test will fail"; \
	else \
	  echo "system-deps: WARNING chromium/chromium-driver are missing and I am not root with apt-get;"; \
	  echo "             the order page browser test will fail. Install them: sudo apt-get install chromium chromium-driver"; \
	fi

# tests/test_compose.py validates docker-compose.yml with a compose client (no Docker engine needed).
compose-deps:
	@if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; then \
	  echo "system-deps: a docker compose client is present (compose file validation)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "system-deps: installing docker-compose with apt-get (compose file validation)"; \
	  (apt-get install -y -qq docker-compose >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq docker-compose >/dev/null 2>&1)) || \
	  echo "system-deps: WARNING could not install docker-compose; the compose validation test will skip"; \
	else \
	  echo "system-deps: WARNING no docker compose client; the compose validation test will skip"; \
	fi

# The PostgreSQL outage test and chaos R6 crash a cluster of their own: Debian's server binaries
# (initdb, pg_ctl), run as the postgres user. Production and the demo do not need them here. Debian
# would also create and start a `main` cluster on 5432, which the tests would then try to use:
# postgresql-common's createcluster.conf says not to.
postgres-deps:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "system-deps: PostgreSQL server binaries present (outage test, chaos R6)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "system-deps: installing postgresql with apt-get (outage test, chaos R6)"; \
	  mkdir -p /etc/postgresql-common; \
	  grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf || \
	    echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf; \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold postgresql >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold postgresql >/dev/null 2>&1)) || \
	  echo "system-deps: WARNING could not install postgresql; the PostgreSQL outage test and chaos R6 will fail"; \
	else \
	  echo "system-deps: WARNING PostgreSQL's server binaries are missing and I am not root with apt-get;"; \
	  echo "             the outage test and chaos R6 will fail. Install them: sudo apt-get install postgresql"; \
	fi

# promtool (Debian's prometheus package) checks deploy/prometheus and runs the alert rules' unit tests
# (tests/test_monitoring.py fails, not skips, without it).
monitoring-deps:
	@if command -v promtool >/dev/null; then \
	  echo "system-deps: promtool present (alert rule tests, Prometheus config check)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "system-deps: installing prometheus with apt-get (promtool: alert rule tests)"; \
	  (apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1)) || \
	  echo "system-deps: WARNING could not install prometheus; the alert rule tests will fail"; \
	else \
	  echo "system-deps: WARNING promtool is missing and I am not root with apt-get;"; \
	  echo "             the alert rule tests will fail. Install it: sudo apt-get install prometheus"; \
	fi

# pytest: four processes even on 2 cores (most tests wait on processes they start), each handed one
# test at a time so the slow ones, collected first (tests/conftest.py), spread over all of them. Not
# more: each holds ~7 PostgreSQL connections (its own and its session Celery worker's), and with six
# the 50 threads of test_fifty_buyers... passed the shared server's 100.
# Bytecode and pytest's rewritten test modules are cached (__pycache__, ignored by git) even where
# the environment says not to: the run's hundred processes would each compile them again.
test: $(STAMP) catalogs system-deps browser-deps compose-deps postgres-deps monitoring-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pip-licenses --from=mixed --partial-match --allow-only="$(LICENSES_OK)" >/dev/null \
	  || { $(VENV)/bin/pip-licenses --from=mixed; echo "a dependency's licence is not one the image may ship under"; exit 1; }
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -n 4 --dist load --maxschedchunk=1

demo: $(STAMP) catalogs system-deps
	$(VENV)/bin/ticketq demo

up: $(STAMP) catalogs system-deps
	$(VENV)/bin/ticketq up

bench: $(STAMP) catalogs system-deps
	$(PY) -m bench

# P5 over the issue's full 5,000 orders (about 15 minutes on 2 cores): too long for `make bench`.
bench-memory: $(STAMP) catalogs system-deps
	$(PY) -m bench --only p5

chaos: $(STAMP) catalogs system-deps postgres-deps
	$(PY) -m chaos

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
