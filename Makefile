# The two commands of the README: `make demo` and `make test`.
# Both install what they need first (uv from PyPI, then the locked environment).
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
UV_VERSION := 0.13.8

.PHONY: install demo test bench lint clean

$(UV):
	$(PYTHON) -m pip install --user --quiet "uv==$(UV_VERSION)"

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

install: .venv/.installed

demo: install
	$(UV) run --frozen lienwatch demo

test: install
	$(UV) run --frozen pytest -q

lint: install
	$(UV) run --frozen ruff check .

clean:
	rm -rf var .pytest_cache .ruff_cache
