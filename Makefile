# Two entry points: `make demo` and `make test`. Each creates .venv when missing and installs
# what it needs, pinning torch through constraints.txt (not pyproject: a library must not
# force an exact torch on its users).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LINTED := $(wildcard src tests examples benchmarks)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install-demo install-test lint clean

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

install-demo: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed

demo: install-demo
	$(PY) examples/demo.py

lint: install-test
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

test: lint
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) build dist .pytest_cache
