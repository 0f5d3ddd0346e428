# One entry point for people and CI. Every target installs what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup triton-env demo test lint bench clean

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

test: setup triton-env
	$(PY) -m ruff check platform deployments jobs tests bench
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check platform deployments jobs tests bench
	$(PY) -m ruff format --check platform deployments jobs tests bench

clean:
	rm -rf $(VENV) out .pytest_cache
