# mailpulse: `make demo` and `make test` work on a fresh clone (Python 3.11, Java 17, Maven).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
MP := $(PY) -m mailpulse
# The edge and the worker refuse the published development secret unless told this is a
# development stack; set MAILPULSE_SECRET_KEYS (and MAILPULSE_ENV=production) for real use.
export MAILPULSE_ENV ?= development

.DEFAULT_GOAL := help
.PHONY: help install system-deps bench-deps kafka demo run up down status test unit integration bench chaos lint typecheck fmt docs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@echo "==> creating $(VENV) and installing mailpulse with its dev tools"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install everything Python needs

kafka: install ## fetch the Apache Kafka jars with mvn (cached under var/cache)
	$(MP) kafka fetch

demo: install ## start the stack, run one campaign end to end, print its report, stop the stack
	@$(MP) up && $(MP) demo; rc=$$?; $(MP) down; exit $$rc

run: install ## all services in the foreground; Ctrl-C stops them all
	$(MP) run

up: install ## all services in the background; returns once every one is ready
	$(MP) up

down: install ## stop the background services
	$(MP) down

status: install ## every process of the stack: pid, port, state (`mailpulse status --format json` for scripts)
	$(MP) status

system-deps: ## Debian packages the tests need (chromium for the report-page test)
	@command -v chromium >/dev/null || { echo "==> installing Debian's chromium"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium >/dev/null; }

test: install system-deps ## unit and integration tests (own stack on other ports), with the worker's line coverage
	@rm -rf var/coverage && mkdir -p var/coverage
	$(PY) -m coverage run -m pytest -q --durations=20 tests
	@$(PY) -m coverage combine -q
	$(PY) -m coverage report --precision=1

unit: install ## unit tests only (no services)
	$(PY) -m pytest -q tests/unit

integration: install system-deps ## integration tests against the real broker, chdb and SMTP sink
	$(PY) -m pytest -q tests/integration

bench-deps: ## Debian packages the benchmarks need (wrk; postfix for its smtp-sink)
	@{ command -v wrk >/dev/null && [ -x /usr/sbin/smtp-sink ]; } || { echo "==> installing Debian's wrk and postfix"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq wrk postfix >/dev/null; }

bench: install bench-deps ## benchmarks: medians and ratios measured side by side in one run
	$(PY) -m tests.bench

chaos: install ## kill and pause every kind of process under traffic (3 brokers, 2 workers, 2 edges), then check the books
	$(PY) -m tests.chaos

lint: install ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy schemas producers processors sinks mailpulse

docs: install ## regenerate docs/settings.md from the settings' declarations
	$(MP) settings --markdown > docs/settings.md

fmt: install ## format the code
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean: ## stop everything and remove var/ (Kafka data, ClickHouse data, Maildir)
	-@[ -x $(PY) ] && $(MP) down
	rm -rf var
