# The project's habits in one place; CI (.ci/run) calls these targets too.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install test check lint typecheck deploy-check protos lock demo bench clean

install:  ## create .venv and install the package with its dev tools (pinned by constraints.txt), and the tests' npm packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# The OpenID Connect provider of the credentials tests (npm oidc-provider,
	@# pinned by tests/oidc/package-lock.json); without Node.js they are skipped.
	if command -v npm >/dev/null; then npm ci --prefix tests/oidc --no-audit --no-fund --silent; fi

test:  ## the whole test suite
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

typecheck:
	$(BIN)/mypy

check: lint typecheck test  ## lint, types and tests (CI also runs deploy-check and the Airflow tests)

deploy-check:  ## lint the Dockerfile, render and validate the Kubernetes overlays (tools pinned by constraints/deploy-tools.txt)
	VENV=$(VENV) scripts/check-deploy

protos:  ## regenerate src/armada_jobservice/_gen from proto/jobservice.proto
	$(BIN)/python scripts/gen_protos.py

lock:  ## re-pin constraints.txt from the current .venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^armada-jobservice' > constraints.txt

demo:
	$(BIN)/armada-jobservice demo

bench:  ## the benchmarks, quick sizes (< 2 min); the full suite: armada-jobservice bench
	$(BIN)/armada-jobservice bench --quick

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
