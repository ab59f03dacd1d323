# The two commands: `make run` serves on http://localhost:8080, `make test` passes the tests.
BIND ?= 127.0.0.1:8080
WORKERS ?= 2
# A small warm pool, so that a first session is a warm one: Python with pipes, and in a terminal
# (the IDE's sessions). `make run POOL=` serves without one; README: sizing pools.
POOL ?= python=2,python/tty=2
PYTEST_ARGS ?=

.PHONY: run test test-gvisor test-kubernetes setup setup-test ui images lint bench soak

run: setup
	.venv/bin/sandbox-engine serve --bind $(BIND) --workers $(WORKERS) --pool-size "$(POOL)"

# Every test, pool off; then the end-to-end tests again with a warm pool, which must not change
# what any of them sees; then again as two replicas sharing one Redis (--redis-url), each request
# over HTTP to one and each WebSocket to the other.
E2E_TESTS = tests/e2e/test_sessions.py tests/e2e/test_sandbox.py tests/e2e/test_terminal.py \
	tests/e2e/test_api.py tests/e2e/test_cli.py tests/e2e/test_lifecycle.py tests/e2e/test_nginx.py \
	tests/e2e/test_runs.py tests/e2e/test_piston.py tests/e2e/test_judge0.py

test: setup-test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest $(PYTEST_ARGS)
	SANDBOX_ENGINE_POOL_SIZE=python=2,python/tty=2 .venv/bin/python -m pytest $(PYTEST_ARGS) $(E2E_TESTS)
	SANDBOX_ENGINE_E2E_REPLICAS=2 .venv/bin/python -m pytest $(PYTEST_ARGS) $(E2E_TESTS)
	$(MAKE) test-gvisor
	$(MAKE) test-kubernetes

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

# The end-to-end suite's core under --executor kubernetes, through the test API server
# (tests/kubeapi: the part of the Kubernetes API the executor uses, its pods Docker's containers):
# sessions, the terminal and signals, a compiled language (C: its compile stage over pods/exec,
# a compile error, its program in a tty), the warm pool, crash recovery (a killed server's and a
# killed worker's pods reaped), and the executor's own tests. (test_compile_stage is the Docker
# executor's, run here as everywhere.)
KUBE_TESTS = tests/e2e/test_sessions.py tests/e2e/test_terminal.py tests/e2e/test_compile_stage.py \
	tests/e2e/test_languages.py tests/e2e/test_pool.py tests/e2e/test_kubernetes.py \
	tests/e2e/test_lifecycle.py \
	-k '(not test_lifecycle or crash_recovery or killed_worker) and (not test_languages or [c])'

test-kubernetes: setup-test
	SANDBOX_ENGINE_EXECUTOR=kubernetes .venv/bin/python -m pytest $(PYTEST_ARGS) $(KUBE_TESTS)

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
