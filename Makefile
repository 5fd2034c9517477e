# The two commands of the README: `make demo` and `make test`.
# Both install what they need first: uv (pinned, into a private tools venv), then the
# locked project environment in .venv.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv

.PHONY: install demo test bench lint clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
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
