# Headwater: `make up` runs the pipeline, `make test` proves it. Both install what is missing first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
CACHE  := $(abspath .cache)
UV_VERSION := 0.13.8

STAMP_VENV  := $(VENV)/.synced
STAMP_KAFKA := $(CACHE)/kafka/.resolved
STAMP_CONNECT := $(CACHE)/connect/.resolved
STAMP_MONGO := $(CACHE)/mongo-server/.built
STAMP_SH    := infra/mongosh/node_modules/.installed
CHROMIUM    := /usr/bin/chromium
# Debian's PostgreSQL server (Airflow's metadata DB); any major version.
POSTGRES    := $(firstword $(wildcard /usr/lib/postgresql/*/bin/postgres) /usr/lib/postgresql/15/bin/postgres)

.PHONY: help install up down status logs mongosh duckdb airflow test test-unit lint lock clean bench

help:
	@echo "make up       install everything (cached) and start the whole pipeline"
	@echo "make test     install everything and run the unit + integration suites on a test stack"
	@echo "make status   services and health checks;  make logs: follow every log;  make down: stop"
	@echo "make mongosh  a MongoDB shell on the pipeline's database"
	@echo "make duckdb   DuckDB over the Parquet archive + a fresh export of the hot days"
	@echo "              (ARGS=\"-f db/sql/sensor_stats.sql\" runs one analysis; see db/duckdb_shell.py)"
	@echo "make lint     ruff;  make lock: re-resolve requirements.lock from requirements.in"
	@echo "make bench    consumer, producer, end-to-end, events-API, slow-client, store-at-scale and SASL"
	@echo "              figures, and the consumer against Kafka Connect's MongoDB sink"
	@echo "              (sizes: make bench BENCH_ARGS=\"--store-docs 200000\"; see bench/run.py --help)"

install: $(STAMP_VENV) $(STAMP_KAFKA) $(STAMP_MONGO) $(STAMP_SH) $(CHROMIUM) $(POSTGRES)

# Python: a venv synced to the pinned lock, plus this project in editable mode.
$(STAMP_VENV): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

# Kafka: the broker, storage tool and tools jars (and their dependencies) resolved by Maven.
$(STAMP_KAFKA): infra/kafka/pom.xml
	rm -rf $(CACHE)/kafka/libs
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CACHE)/kafka/libs
	@touch $@

# Kafka Connect and the MongoDB sink connector, resolved by Maven like the broker: only the bench's
# `connect` part runs them (the peer Headwater's consumer is measured against), so `install` and
# `make test` never fetch them.
$(STAMP_CONNECT): infra/connect/pom.xml
	rm -rf $(CACHE)/connect/libs
	mvn -q -B -f infra/connect/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CACHE)/connect/libs
	@touch $@

# The embedded MongoDB-wire server (see infra/mongo-server/README.md for why not FerretDB).
$(STAMP_MONGO): infra/mongo-server/pom.xml $(shell find infra/mongo-server/src -type f 2>/dev/null)
	rm -rf $(CACHE)/mongo-server
	mvn -q -B -f infra/mongo-server/pom.xml package -Dmongo.server.dir=$(CACHE)/mongo-server
	@touch $@

# mongosh, pinned in infra/mongosh/package-lock.json.
$(STAMP_SH): infra/mongosh/package-lock.json
	npm ci --prefix infra/mongosh --no-audit --no-fund --loglevel=error
	@touch $@

# Debian's Chromium for the browser test of the Airflow UI (Playwright drives it; it never
# downloads a browser of its own).
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium

# PostgreSQL for Airflow's metadata DB (the stack runs its own server on AIRFLOW_DB_PORT; the
# package's own cluster on 5432 is not used).
$(POSTGRES):
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql

up: install
	$(PY) -m infra.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m infra.stack down; fi

status:
	$(PY) -m infra.stack status

logs:
	$(PY) -m infra.stack logs

# The Airflow CLI against the running stack, e.g. make airflow ARGS="dags list".
airflow:
	$(PY) -m infra.stack airflow $(ARGS)

mongosh: $(STAMP_SH)
	@uri=$$($(PY) -c 'from headwater.settings import get_settings as g; s=g(); print(s.mongo.uri.rstrip("/") + "/" + s.mongo.db)'); \
	  infra/mongosh/node_modules/.bin/mongosh "$$uri"

# DuckDB over the archive and the hot days (db/duckdb_shell.py), e.g.
# FROM=2026-11-23T00:00:00Z make duckdb ARGS="-f db/sql/device_type_stats.sql".
duckdb: $(STAMP_VENV)
	$(PY) -m db.duckdb_shell $(ARGS)

# The test stack (tests/stack.env: own ports and run dir) is started if needed and stopped again
# if this run started it, whatever the tests did.
test: install lint
	bash infra/run_tests.sh

test-unit: $(STAMP_VENV)
	$(PY) -m pytest tests/unit -q

lint: $(STAMP_VENV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile -q requirements.in --python-version 3.11 -o requirements.lock

# Every benchmark on the running (dev) stack, each figure against its ceiling measured in the same
# run or its target: writes bench/results/latest.json and latest.png and prints the table
# (bench/run.py). BENCH_ARGS passes sizes, e.g. BENCH_ARGS="--store-docs 200000".
BENCH_ARGS ?=
bench: up $(STAMP_CONNECT)
	$(PY) bench/run.py $(BENCH_ARGS)

clean: down
	rm -rf .run
