# The two commands: `make run` (see it work) and `make test` (prove it). Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# dbt cannot share .venv (requirements-dbt.txt says why): the client tests run it from a venv of its own.
DBT_VENV  := .venv-dbt
DBT_STAMP := $(DBT_VENV)/.installed-stamp

.PHONY: setup system-deps test-deps run test soak test-unit lint typecheck clean

setup: $(STAMP) $(DBT_STAMP)

$(STAMP): pyproject.toml local/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "Python 3.10+ is needed (found $$($(PYTHON) --version)); set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./local
	@touch $@

$(DBT_STAMP): requirements-dbt.txt
	$(PYTHON) -m venv $(DBT_VENV)
	$(DBT_VENV)/bin/pip install --quiet --upgrade pip
	$(DBT_VENV)/bin/pip install --quiet -r requirements-dbt.txt
	@touch $@

system-deps:
	@scripts/ensure-system-deps.sh

test-deps:
	@scripts/ensure-system-deps.sh --with-browser

lint: setup
	$(BIN)/ruff check unload_assets local unload_assets_tests benchmarks
	$(BIN)/ruff format --check unload_assets local unload_assets_tests benchmarks

typecheck: setup
	$(BIN)/mypy unload_assets local/unload_assets_local

# Two workers, each with its own servers; a module stays on one worker (unload_assets_tests/conftest.py).
# The chaos soak (marker `soak`) has a target of its own: `make soak`, which CI runs after this.
test: setup test-deps lint typecheck
	$(BIN)/pytest -n 2 --dist loadgroup -m "not soak"

# The chaos soak: a 14-day backfill through the production shape with every fault (test_chaos_soak.py);
# its figures are printed and written to test-artifacts/chaos_soak.json.
soak: setup
	$(BIN)/pytest -m soak -s -q

# The quick tier: every test that needs no server (no PostgreSQL, S3 or network), in well under a minute.
test-unit: setup
	$(BIN)/pytest -m unit -q

run: setup system-deps
	$(BIN)/python -m unload_assets_local.demo $(if $(ONCE),--once,)

# The stack's PostgreSQL data may live outside the clone (root with a clone only root can enter).
clean:
	@if [ -x $(BIN)/unload-assets-local ]; then $(BIN)/unload-assets-local clean; fi
	rm -rf $(VENV) $(DBT_VENV) .local-stack .dagster_home .env test-artifacts
