# One entry point for people and CI. Every target installs what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/shoprank demo

test: setup
	$(PY) -m ruff check platform deployments jobs tests bench
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check platform deployments jobs tests bench
	$(PY) -m ruff format --check platform deployments jobs tests bench

clean:
	rm -rf $(VENV) out .pytest_cache
