# Quick start: `make demo` and `make test` — each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint unit integration e2e bench clean native pure compiled

# The editable install also compiles the guard's hot path with mypyc (setup.py; optional: without a
# C compiler, or with TRADEGUARD_PURE_PYTHON=1, it stays pure Python), the extensions beside their sources.
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# An extension keeps running the code it was built from: rebuilt in place when a compiled module's
# source is newer (removed instead with TRADEGUARD_PURE_PYTHON=1 or when it cannot be built).
native: $(STAMP)
	@$(BIN)/python guardians/_native.py --rebuild

# Back to pure Python (until `make compiled`, `make native` after an edit, or a reinstall), and back
# to compiled.
pure:
	$(PYTHON) guardians/_native.py --clean

compiled: $(STAMP)
	$(BIN)/python guardians/_native.py --build

demo: native
	$(BIN)/tradeguard demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# then the guardians' tests again on the sources (compiled code and plain Python behave the same)
test: lint native
	$(BIN)/pytest
	TRADEGUARD_INTERPRETED=1 $(BIN)/pytest -q tests/unit/guardians

unit: native
	$(BIN)/pytest tests/unit

integration: native
	$(BIN)/pytest tests/integration

e2e: native
	$(BIN)/pytest tests/e2e

clean:
	rm -rf $(VENV) var .pytest_cache build
	$(PYTHON) guardians/_native.py --clean
