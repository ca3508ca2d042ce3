# The project's habits as commands. Everything runs from the venv the README's quick start makes.
V := .venv/bin
SRC := swarm_tui tests bench

.PHONY: venv check test fmt bench snapshots

venv:  ## the venv with the test tools (as the README's quick start)
	python3 -m venv .venv && $(V)/pip install -q -e '.[test]'

check:  ## everything CI checks: the hooks of .pre-commit-config.yaml (format, lint, types, import contracts), then the whole suite (~6 min)
	$(V)/ruff format --check $(SRC)
	$(V)/ruff check $(SRC)
	$(V)/mypy $(SRC)
	$(V)/lint-imports --no-cache --no-logo
	$(V)/pytest -q

test:  ## the quick run, without the slow fault suite
	$(V)/pytest -q -m "not fault"

fmt:  ## format and fix what ruff can
	$(V)/ruff format $(SRC)
	$(V)/ruff check --fix $(SRC)

bench:  ## every figure, several runs each (~10 min); rewrites docs/performance.md
	$(V)/pip install -q -e '.[bench]'
	$(V)/python -m bench

snapshots:  ## regenerate the TUI snapshots after an intended change of the screen (review the diff)
	$(V)/pytest -q tests/snapshots --snapshot-update
