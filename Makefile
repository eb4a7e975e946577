# Two commands: `make run` serves the demo CRM, `make test` runs the suite.
# Both create .venv and install on first use (and again when requirements change).

VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: run test check lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/python app.py

test: $(VENV)/.dev
	$(BIN)/python -m pytest

check: $(VENV)/.runtime
	$(BIN)/flask --app app check

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.dev
	$(BIN)/python bench/conditions.py
	$(BIN)/python bench/write_path.py
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/import.py
	$(BIN)/python bench/campaign.py
	$(BIN)/python bench/timers.py

clean:
	rm -rf $(VENV) instance .pytest_cache
