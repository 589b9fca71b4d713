# The first two targets are the README's first two commands; both work on a
# fresh machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

## make run: the console bot over the bundled demo workflow (no token or key needed)
run: $(STAMP)
	$(PY) -m bot --console

## make test: install what the tests need, then run every test
test: $(STAMP)
	$(PY) -m pytest -n 4 -q

## make lint: ruff, mypy and the layering contracts (import-linter), as in pyproject.toml
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## make bench: print every benchmark's figures
bench: $(STAMP)
	$(PY) bench/task_overhead.py
	$(PY) bench/detection_latency.py
	$(PY) bench/chat_latency.py
	$(PY) bench/diagnosis_eval.py
	$(PY) bench/bridge_latency.py
	$(PY) bench/fleet.py
	$(PY) bench/chart_render.py
	$(PY) bench/status_scale.py
	$(PY) bench/fd_budget.py
	$(PY) bench/supervisor_overhead.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .supervisor .smithers .mypy_cache .ruff_cache .pytest_cache
