# schoolmdm — two commands on a fresh machine: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-fast bench bench-profiles venv system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests use: scepclient (package scep), openssl, chromium
system-deps:
	@sh scripts/system-deps.sh

## make run: venv, migrations, the service on SQLite with a demo city and a simulated fleet
run: venv
	$(PY) -m app.cli.main demo

## make test: the whole suite (SQLite, or PostgreSQL when DATABASE_URL is set)
test: venv system-deps
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not browser" -p no:cacheprovider

bench: venv
	$(PY) bench/storm.py

bench-profiles: venv
	$(PY) bench/bench_profiles.py

clean:
	rm -rf var .pytest_cache
