# Entry points: `make demo`, `make test` and `make docs`. Each creates .venv when missing and
# installs what it needs, pinning torch through constraints.txt (not pyproject: a library must
# not force an exact torch on its users).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LINTED := $(wildcard src tests examples benchmarks docs/conf.py docs/sphinxext)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test docs peers install-demo install-test install-docs lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.demo-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[model,onnx]"
	touch $@

$(VENV)/.test-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[model,test]"
	touch $@

# dask: the API reference documents skembed.dask, which imports it
$(VENV)/.docs-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[model,dask,docs]"
	touch $@

install-demo: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed
install-docs: $(VENV)/.docs-installed

demo: install-demo
	$(PY) examples/demo.py

# lint-imports: the layers of the package, as pyproject.toml's import-linter contracts say
lint: install-test
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/lint-imports --no-cache

test: lint
	$(VENV)/bin/pytest -q

# benchmarks/bench_peers.py: skembed beside sentence-transformers' backends and fastembed, their own
# venv (.peers-venv) made on first use; not part of `make test`. A quiet machine, 10-15 min.
peers: install-test
	$(PY) benchmarks/bench_peers.py

# HTML into docs/_build/html; warnings are errors. Runs the examples that draw a plot.
docs: install-docs
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .peers-venv build dist .pytest_cache
	rm -rf docs/_build docs/auto_examples docs/generated docs/sg_execution_times.rst
