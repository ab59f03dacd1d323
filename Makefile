# The two commands: `make run` serves on http://localhost:8080, `make test` passes the tests.
BIND ?= 127.0.0.1:8080
WORKERS ?= 2
# A small warm pool, so that a first session is a warm one: Python with pipes, and in a terminal
# (the IDE's sessions). `make run POOL=` serves without one; README: sizing pools.
POOL ?= python=2,python/tty=2
PYTEST_ARGS ?=

.PHONY: run test test-gvisor setup setup-test ui images lint bench soak

run: setup
	.venv/bin/sandbox-engine serve --bind $(BIND) --workers $(WORKERS) --pool-size "$(POOL)"

# Every test, pool off; then the end-to-end tests again with a warm pool, which must not change
# what any of them sees.
E2E_TESTS = tests/e2e/test_sessions.py tests/e2e/test_sandbox.py tests/e2e/test_terminal.py \
	tests/e2e/test_api.py tests/e2e/test_cli.py tests/e2e/test_lifecycle.py tests/e2e/test_nginx.py \
	tests/e2e/test_runs.py tests/e2e/test_piston.py tests/e2e/test_judge0.py

test: setup-test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest $(PYTEST_ARGS)
	SANDBOX_ENGINE_POOL_SIZE=python=2,python/tty=2 .venv/bin/python -m pytest $(PYTEST_ARGS) $(E2E_TESTS)
	$(MAKE) test-gvisor

# The end-to-end tests that prove the sandbox under gVisor (--runtime runsc): sessions, the
# terminal and signals, the threat table with its limits and output cap, batch runs and their
# usage figures, the launchers, a compiled language
# (C: compile stage, compile error, its program in a tty); then sessions and the terminal again
# from a warm pool, whose sandboxes are started before a session takes them.
GVISOR_TESTS = tests/e2e/test_sessions.py tests/e2e/test_terminal.py tests/e2e/test_sandbox.py \
	tests/e2e/test_runs.py tests/e2e/test_launchers.py tests/e2e/test_languages.py -k 'not test_languages or [c]'

test-gvisor: setup-test
	scripts/runsc.sh
	SANDBOX_ENGINE_RUNTIME=runsc .venv/bin/python -m pytest $(PYTEST_ARGS) $(GVISOR_TESTS)
	SANDBOX_ENGINE_RUNTIME=runsc SANDBOX_ENGINE_POOL_SIZE=python=2,python/tty=2 \
	  .venv/bin/python -m pytest $(PYTEST_ARGS) tests/e2e/test_sessions.py tests/e2e/test_terminal.py

setup: ui
	scripts/setup.sh

setup-test: ui
	scripts/setup.sh test

# The IDE page's JavaScript bundle (static/dist/, with a .br and a .gz copy of each file):
# `npm ci` when node_modules is missing or older than the lock file, `npm run build` when a
# source is newer than the bundle.
ui: static/dist/ide.js

node_modules: package-lock.json
	@command -v npm >/dev/null || { echo "ui: installing nodejs npm"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	npm ci --no-audit --no-fund
	@touch node_modules

static/dist/ide.js: node_modules package.json scripts/compress-bundle.mjs $(wildcard static/src/*)
	npm run build

images:
	scripts/dockerd.sh
	scripts/build-images.sh

bench: setup
	scripts/bench.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# Not part of `make test`: ten minutes of 50 concurrent mixed sessions on loopback, with dockerd
# restarted once half way; the report replaces the soak section of BENCHMARKS.md.
soak: setup
	.venv/bin/python scripts/soak.py --markdown BENCHMARKS.md $(SOAK_ARGS)
