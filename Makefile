# The two front-door commands (see README): `make demo` and `make test`.
# Both create the virtual environment .venv inside the checkout and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint typecheck pytest bench mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The service alone (what `make demo` needs) and, for tests, the dev tools on top.
$(VENV)/.installed-service: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed-service  ## SQLite + simulated data + API on http://127.0.0.1:8000/
	$(BIN)/forecast demo

test: $(VENV)/.installed          ## everything CI runs: ruff, mypy --strict, pytest
	$(BIN)/ruff check forecast tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check forecast tests benchmarks

typecheck: $(VENV)/.installed
	$(BIN)/mypy

pytest: $(VENV)/.installed
	$(BIN)/pytest

bench: $(VENV)/.installed         ## storage write benchmark (see docs/benchmarks.md)
	$(BIN)/python benchmarks/bench_storage.py

mutation: $(VENV)/.installed      ## mutation testing of forecast/qc, forecast/features and forecast/modelling/metrics.py against their own tests (docs/mutation.md)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 1 > /dev/null
	$(BIN)/mutmut results --all true | awk '{split($$1, a, "."); m = a[2] "." a[3]; n[m]++; s[m " " $$2]++} \
	  END {for (k in s) {split(k, b, " "); printf "%-17s %-9s %4d / %d\n", b[1], b[2], s[k], n[b[1]]}}' | sort
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache mutants
