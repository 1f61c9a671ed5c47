# rlfleet: `make run` trains DQN on CartPole through the services; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock

.PHONY: install run test fuzz lint format bench chaos load lock clean

# Installs exactly the versions in requirements.lock (what the suite passed with), then rlfleet
# itself; pyproject.toml keeps the ranges for people who install rlfleet as a library.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/rlfleet run --actors 2 --until-return 475

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

# The fuzz tests (tests/fuzz and the learner's) with a long budget; `make test` runs them with
# FUZZ_EXAMPLES=6. The counts per endpoint are printed at the end and written to runs/fuzz.json.
FUZZ_EXAMPLES ?= 200
fuzz: install
	mkdir -p runs
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_REPORT=runs/fuzz.json $(BIN)/python -m pytest -q -p no:warnings --timeout=3600 \
		tests/fuzz tests/learner/test_routes.py::test_fuzz_every_endpoint

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench.replay
	$(BIN)/python -m bench.actor
	$(BIN)/python -m bench.learner_feed
	$(BIN)/python -m bench.system

# A training run under faults (kill -9, redis restart, SIGSTOP, cut links, latency, loss):
# docs/reliability.md. Network faults need root (network namespaces); without, they are skipped.
chaos: install
	$(BIN)/python -m bench.chaos

load: install
	$(BIN)/python -m bench.load

# Resolves pyproject.toml's ranges (with the test extra) to today's newest versions.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra test --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
