# dlspec's two commands (README, Set-up):
#
#   make quickstart   set up .venv if needed, then check and train the quick-start spec (offline, < 1 min)
#   make test         set up .venv if needed, then every check CI runs on the code: tests, lint, types,
#                     the spec examples' exit statuses and the examples in README.md and docs/
#
# Set-up is `python -m pip install -c constraints.txt -e '.[dev]'` in a virtual environment (.venv), redone
# when pyproject.toml or constraints.txt change.  PYTHON picks the interpreter (3.10 or newer).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dlspec-installed

.PHONY: setup quickstart test pytest lint check-specs docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	touch $@

quickstart: setup
	$(BIN)/dlspec check specs/quickstart.yaml
	$(BIN)/dlspec run specs/quickstart.yaml

# `make -k test` runs every part even when one fails (CI does)
test: pytest lint check-specs docs

pytest: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy dlspec

# every example spec checks clean (exit 0); every mistake in specs/errors/ is reported (exit 1)
check-specs: setup
	$(BIN)/dlspec check specs/*.yaml specs/zoo/*.yaml > /dev/null
	$(BIN)/dlspec check specs/errors/*.yaml > /dev/null; test $$? -eq 1

docs: setup
	$(BIN)/python docs/examples.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
