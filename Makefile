# Two commands on a fresh machine:  `make run` (a fleet of one here) and `make test`.
PY    ?= python3
VENV  := .venv
BIN   := $(VENV)/bin

.PHONY: run test lint install install-test tmux chromium bench bench-peers bench-protocol redis-server clean

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Luzia needs Python 3.11 or newer (found " + sys.version.split()[0] + "); set PY=python3.11")'
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@# bytecode now: an editable install leaves it to the first run, and a CLI that runs as
	@# another user, or with PYTHONDONTWRITEBYTECODE, would compile every module every time
	$(BIN)/python -m compileall -q luzia
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## run: start luzia-supervisor in the foreground (broker + local agent with the demo command
## + the dashboard, whose URL with your token it prints)
run: install
	$(BIN)/luzia-supervisor --web

## test: install what the tests need (tmux too, when possible) and run the whole suite,
## in parallel workers (pytest-xdist; pyproject's addopts): `make test PYTEST_ARGS="-n 0"` runs it in one;
## `HYPOTHESIS_PROFILE=thorough make test` tries every property test's full count of examples
## (tests/README.md)
test: install-test tmux chromium
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## lint: ruff (style, import order, likely bugs) and mypy (types) over luzia/ and tests/
lint: install-test
	@rc=0; \
	echo "ruff check luzia tests"; $(BIN)/ruff check luzia tests || rc=1; \
	echo "mypy (files and settings: pyproject.toml)"; $(BIN)/mypy || rc=1; \
	exit $$rc

# tmux is optional at runtime; tests that need it skip without it. Install it when we can.
tmux:
	@command -v tmux >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing tmux (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux) >/dev/null 2>&1 \
	      || echo "could not install tmux; tests that need it will be skipped"; \
	  else echo "tmux not found; tests that need it will be skipped"; fi; }

# Debian's chromium drives the dashboard's tests (tests/web, through playwright; never a
# downloaded browser). Optional: those tests skip without it. Install it when we can.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	      || echo "could not install chromium; the dashboard's browser tests will be skipped"; \
	  else echo "chromium not found; the dashboard's browser tests will be skipped"; fi; }

## bench: print the benchmark figures (see BENCHMARKS.md)
bench: install
	$(BIN)/python bench/run_all.py

# the peers live in their own venv, never in Luzia's
PEERS := bench/.venv-peers

$(PEERS)/.installed: bench/peers-requirements.txt
	$(PY) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q -r bench/peers-requirements.txt
	@touch $@

## bench-peers: RQ, Celery and Dramatiq on the same no-op workload as Luzia, in one run
bench-peers: install $(PEERS)/.installed redis-server
	$(BIN)/python bench/peers.py --python $(PEERS)/bin/python

# redis-server for bench-peers only (it starts its own on a loopback port); peers.py says
# so in one line when it is missing
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null 2>&1 \
	      || echo "could not install redis-server"; \
	  else echo "redis-server not found"; fi; }

## bench-protocol: the protocol codec's figures (bench/protocol_codec.py; `--against DIR`
## compares another tree's, e.g. a `git archive` of an earlier commit)
bench-protocol: install-test
	$(BIN)/python bench/protocol_codec.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info bench/.venv-peers
