# The two commands of the README: `make demo` and `make test` (the checks, then the whole
# test suite: what CI runs). Both install what they need first: uv (pinned, into a
# private tools venv), then the locked project environment in .venv.
# Also: `make check` (format, lint, types, layers), `make test-fast` (the suite without
# the slow end-to-end runs), `make bench` (the night benchmark at BENCH_LOANS loans,
# compared with its saved figures).
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv

.PHONY: install demo check test test-fast bench lint clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	touch $@

install: .venv/.installed

demo: install
	$(UV) run --frozen lienwatch demo

check: install
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .
	$(UV) run --frozen mypy
	$(UV) run --frozen lint-imports

# pytest-xdist: one worker per core; a module runs whole on one worker (its module
# fixtures are built once), the slow modules handed out first (tests/conftest.py).
PYTEST_WORKERS ?= auto
PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: check
	$(UV) run --frozen pytest -q $(PARALLEL)

test-fast: install
	$(UV) run --frozen pytest -q $(PARALLEL) -m "not slow"

BENCH_LOANS ?= 100000
bench: install
	$(UV) run --frozen python benchmarks/bench_night.py --loans $(BENCH_LOANS) \
		--baseline benchmarks/results/night_$(BENCH_LOANS).json --no-save

lint: check

clean:
	rm -rf var .pytest_cache .ruff_cache
