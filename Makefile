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

FUZZ_EXAMPLES ?= 500
SOAK_SECONDS ?= 180
SOAK_ARGS ?=

.PHONY: install run test lint typecheck pytest clean fuzz soak bench bench-quick

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

# Schemathesis with far more examples per operation than `make test` (15), on SQLite and
# PostgreSQL: about 10 minutes.
fuzz: install
	KEYPLANE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/test_fuzz.py -rP

# Mixed traffic against a real `keyplane serve`; exits 1 on errors or growing memory.
# PostgreSQL: make soak SOAK_ARGS=--database-url=postgresql://postgres@127.0.0.1:5432/DB
soak: install
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

# The four benchmarks at the issue's sizes (~10 min; needs wrk and PostgreSQL on 127.0.0.1:5432).
bench: install
	$(BIN)/python bench/verify_cost.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/revocation.py
	$(BIN)/python bench/scale.py

# The same at small sizes, to check that they run (~3 min).
bench-quick: install
	$(BIN)/python bench/verify_cost.py --keys 10000 --calls 2000 --db-calls 300 --repeats 3
	$(BIN)/python bench/throughput.py --keys 10000 --users 100 --duration 3 --warmup 1
	$(BIN)/python bench/revocation.py --rounds 20
	$(BIN)/python bench/scale.py --keys 100000 --users 1000 --tenants 10 --cold-keys 20000 --duration 3 --warmup 1

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
