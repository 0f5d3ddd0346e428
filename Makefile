# One entry point for people and CI. Every target installs what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup triton-env demo test test-fast lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(wildcard protos/shoprank/v1/*.proto)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# Triton's Python backend needs numpy<2: it gets its own venv (~/.cache/shoprank/triton-env).
triton-env: setup
	$(PY) -m shoprank.triton.server --setup-only

demo: setup
	$(VENV)/bin/shoprank demo

# Both tiers: tests/unit (no Ray, about a minute) and tests/ray (real Ray, Serve, gRPC, Triton).
test: setup triton-env
	$(PY) -m ruff check setup.py platform deployments jobs tests bench
	$(PY) -m pytest -q

# The fast loop while editing: ruff and the unit tier only.
test-fast: setup
	$(PY) -m ruff check setup.py platform deployments jobs tests bench
	$(PY) -m pytest -q tests/unit

lint: setup
	$(PY) -m ruff check setup.py platform deployments jobs tests bench
	$(PY) -m ruff format --check setup.py platform deployments jobs tests bench

clean:
	rm -rf $(VENV) out .pytest_cache
