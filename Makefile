# Shancheng Data Exchange: the two commands of the README are `make run` and `make test`.
# Both set up what they need on first use and skip it when nothing changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NPM_STAMP := devnet/node_modules/.installed
WEB_STAMP := web/node_modules/.installed

.PHONY: setup run test lint bench demo examples clean

setup: $(PY_STAMP) $(NPM_STAMP) $(WEB_STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=...")'
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# --ignore-scripts: anvil's postinstall would only look for (or fetch) the binary
# that its platform package already brings; nothing is downloaded at run time.
$(NPM_STAMP): devnet/package.json devnet/package-lock.json
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || { echo "Node 20+ is required"; exit 1; }
	cd devnet && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

# The browser assets the exchange serves itself (explorer's SM2/SM3, Swagger UI, ReDoc):
# prebuilt bundles from pinned packages, no build step, nothing fetched at run time.
$(WEB_STAMP): web/package.json web/package-lock.json
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || { echo "Node 20+ is required"; exit 1; }
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

run: setup
	$(BIN)/shancheng run

# The whole story against the exchange `make run` serves (or its own one if none answers).
demo: setup
	$(BIN)/shancheng demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: setup
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# The OpenAPI examples (exchange/api/examples/examples.json), recorded from a story
# played against a real local exchange (tools/openapi_examples/).
examples: setup
	$(BIN)/python -m tools.openapi_examples

clean:
	rm -rf $(VENV) devnet/node_modules web/node_modules var .pytest_cache .mypy_cache .ruff_cache
