# The two commands a newcomer needs: `make run` and `make test`. Both create .venv/ from
# the pinned dependencies (pyproject.toml + constraints.txt) when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

DEMO_TENANT ?= demo
DEMO_ADMIN ?= admin@demo.keyplane.local

# The suite runs in one process per core (pytest-xdist); PYTEST_WORKERS=0 runs it in one.
PYTEST_WORKERS ?= auto
FUZZ_EXAMPLES ?= 500
SOAK_SECONDS ?= 180
SOAK_ARGS ?=

.PHONY: install run test lint typecheck pytest clean fuzz soak bench bench-quick

# Where `make run` serves comes from KEYPLANE_HOST and KEYPLANE_PORT, like everywhere else
# (KEYPLANE_PORT=9000 make run); refuse the HOST=/PORT= of old rather than ignore them.
ifneq ($(filter command line,$(origin HOST) $(origin PORT)),)
$(error Set KEYPLANE_HOST and KEYPLANE_PORT instead of HOST and PORT, e.g. KEYPLANE_PORT=9000 make run)
endif

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Keyplane needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# `keyplane serve` prints the console's and the API's addresses itself, from the settings.
run: install
	@KEYPLANE_ENV=development $(BIN)/keyplane init --if-empty --tenant "$(DEMO_TENANT)" --admin-email "$(DEMO_ADMIN)" --admin-first-name Demo --admin-last-name Admin
	@echo ""
	@echo "Log in:        email $(DEMO_ADMIN), organization $(DEMO_TENANT), password as printed on the first run"
	@echo "               (API: POST /v1/auth/authenticate {\"emailId\": \"$(DEMO_ADMIN)\", \"org\": \"$(DEMO_TENANT)\", \"password\": ...})"
	@echo ""
	@KEYPLANE_ENV=development $(BIN)/keyplane serve

lint: install
	# The whole tree: ruff also formats the Python blocks of README.md.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -n $(PYTEST_WORKERS)

test: lint typecheck pytest

# Schemathesis with far more examples per operation than `make test` (15), on SQLite and
# PostgreSQL: about 10 minutes.
fuzz: install
	KEYPLANE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/test_fuzz.py -rP

# Mixed traffic against a real `keyplane serve`; exits 1 on errors or growing memory.
# PostgreSQL: make soak SOAK_ARGS=--database-url=postgresql://postgres@127.0.0.1:5432/DB
soak: install
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

# The benchmarks at the issues' sizes (~15 min; needs wrk, PostgreSQL on 127.0.0.1:5432 and,
# for restrictions.py, Redis on 127.0.0.1:6379;
# the first run also builds the peers' virtual environments from PyPI).
bench: install
	$(BIN)/python bench/verify_cost.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/throughput.py --compare
	$(BIN)/python bench/revocation.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/middleware.py
	$(BIN)/python bench/restrictions.py
	$(BIN)/python bench/scanner.py

# The same at small sizes, to check that they run (~3 min).
bench-quick: install
	$(BIN)/python bench/verify_cost.py --keys 10000 --calls 2000 --db-calls 300 --repeats 3
	$(BIN)/python bench/throughput.py --keys 10000 --users 100 --duration 3 --warmup 1
	$(BIN)/python bench/revocation.py --rounds 20
	$(BIN)/python bench/scale.py --keys 100000 --users 1000 --tenants 10 --cold-keys 20000 --duration 3 --warmup 1
	$(BIN)/python bench/middleware.py --keys 200 --duration 3 --warmup 1 --rounds 10
	$(BIN)/python bench/restrictions.py --keys 2000 --distinct-keys 200 --duration 2 --warmup 1
	$(BIN)/python bench/scanner.py --megabytes 30

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
