# The two commands: `make run` serves on http://localhost:8080, `make test` passes the tests.
BIND ?= 127.0.0.1:8080
WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: run test setup setup-test images lint bench

run: setup
	.venv/bin/sandbox-engine serve --bind $(BIND) --workers $(WORKERS)

test: setup-test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest $(PYTEST_ARGS)

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh test

images:
	scripts/dockerd.sh
	scripts/build-images.sh

bench: setup
	.venv/bin/sandbox-engine bench --server http://$(BIND)

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
