# The two commands a newcomer needs: `make run` and `make test`. Both create .venv/ from
# the pinned dependencies (pyproject.toml + constraints.txt) when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_TENANT ?= demo
DEMO_ADMIN ?= admin@demo.keyplane.local

.PHONY: install run test lint typecheck pytest clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Keyplane needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

run: install
	@KEYPLANE_ENV=development $(BIN)/keyplane init --if-empty --tenant "$(DEMO_TENANT)" --admin-email "$(DEMO_ADMIN)"
	@echo ""
	@echo "Console:       http://$(HOST):$(PORT)/   (email $(DEMO_ADMIN), organization $(DEMO_TENANT), password as printed on the first run)"
	@echo "Keyplane API:  http://$(HOST):$(PORT)/v1   (interactive docs: http://$(HOST):$(PORT)/docs)"
	@echo "Log in:        POST /v1/auth/authenticate {\"emailId\": \"$(DEMO_ADMIN)\", \"org\": \"$(DEMO_TENANT)\", \"password\": ...}"
	@echo ""
	KEYPLANE_ENV=development $(BIN)/keyplane serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
