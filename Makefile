# troth — quick start: `make run` (server on 127.0.0.1:8001, SQLite troth.db; `make run ARGS="--port 8002"`)
# and `make test`. `make run` installs only what the server needs; the test tools, docs and the examples'
# extras are installed by `make install` (which `make test` and the other targets use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
ARGS ?=

.PHONY: install services run dev test test-stress test-postgres lint typecheck unit bench bench-sdk bench-security bench-cluster bench-retention bench-limits bench-limits-unused bench-peers bench-soak bench-worker-memory docs docs-serve clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,examples,docs]'
	touch $(STAMP)

# The server alone (`pip install -e .`): no test tools, no examples' extras.
$(RUN_STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/troth serve $(ARGS)

dev: $(RUN_STAMP)
	$(BIN)/troth dev $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs/_hooks
	$(BIN)/ruff format --check src tests benchmarks examples docs/_hooks

# The benchmark modules that run under troth's venv (the peers' drivers import packages it does not have).
BENCH_TYPED := benchmarks/*.py benchmarks/peers/*.py benchmarks/peers/drivers/troth_driver.py \
               tests/benchmarks/test_peers_smoke.py tests/benchmarks/test_soak_smoke.py \
               tests/benchmarks/test_worker_memory_smoke.py

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy tests/typing
	$(BIN)/mypy examples
	$(BIN)/mypy $(BENCH_TYPED)

# pytest-xdist workers: most real-process tests wait on timers and other processes, so four workers
# finish sooner than two even on two cores.
TEST_WORKERS ?= 4
STRESS_REPEAT ?= 3
STRESS_TESTS ?= tests/examples tests/integration tests/sdk tests/compat tests/cli

test: $(STAMP) services lint typecheck docs
	$(BIN)/pytest -q -n $(TEST_WORKERS)
	$(MAKE) test-postgres

# The slow real-process tiers, STRESS_REPEAT rounds, under CPU and fsync load (tests/stress.py).
test-stress: $(STAMP) services
	$(BIN)/python -m tests.stress --repeat $(STRESS_REPEAT) --workers $(TEST_WORKERS) $(STRESS_TESTS)

# The documentation site, warnings as errors, into site/ (docs/about.md).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# Debian packages the tests use beyond Python: haproxy (the load-balancer scale-out test) and chromium
# (the dashboard's browser tests, driven by Playwright). Installed
# when missing and running as root (CI does); otherwise that test skips with the reason.
services:
	@command -v haproxy >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; } || \
		echo "make services: haproxy not installed (not root?); its test will skip"; }
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "make services: chromium not installed (not root?); the dashboard's browser tests will skip"; }

# The store-independent tiers once more on PostgreSQL (TROTH_TEST_POSTGRES, default the machine's server
# on 127.0.0.1:5432), the model-based test with a raised example budget: each test process gets
# databases of its own. Skipped with the reason when PostgreSQL is unreachable; a failure instead with
# TROTH_REQUIRE_SERVICES=1 (CI). (tests/postgres, the PostgreSQL-only tests, run in the first pass.)
PG_TIERS := tests/unit tests/model tests/sdk tests/integration tests/dashboard/test_dashboard.py
test-postgres: $(STAMP)
	TROTH_TEST_STORE=postgres TROTH_MODEL_EXAMPLES=200 $(BIN)/pytest -q -n $(TEST_WORKERS) $(PG_TIERS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.server
	$(BIN)/python -m benchmarks.sdk
	$(BIN)/python -m benchmarks.security

bench-sdk: $(STAMP)
	$(BIN)/python -m benchmarks.sdk

bench-security: $(STAMP)
	$(BIN)/python -m benchmarks.security

bench-cluster: $(STAMP)
	$(BIN)/python -m benchmarks.cluster

# Thousands of mixed workflows (steps, fan-out, sleeps, latent promises) against one server while workers
# are SIGKILLed: throughput, p99 and RSS over time (a PNG), lost or repeated steps (must be zero).
SOAK_ARGS ?= --seconds 180 --plot docs/images/soak.png
bench-soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

# What a worker holds with 10,000 suspended workflows, against the same worker idle (RSS, gc objects;
# WMEM_ARGS=--trace: tracemalloc's biggest differences by line; --mode run: begin_run handles in the worker).
WMEM_ARGS ?=
bench-worker-memory: $(STAMP)
	$(BIN)/python -m benchmarks.worker_memory $(WMEM_ARGS)

bench-retention: $(STAMP)
	$(BIN)/python -m benchmarks.retention

bench-limits: $(STAMP)
	$(BIN)/python -m benchmarks.limits

# workload B with and without the limits code (the commit before it), interleaved: what unused limits cost
bench-limits-unused: $(STAMP)
	$(BIN)/python -m benchmarks.limits_unused

# troth beside DBOS, Restate and the official resonate-sdk: the same five workloads, interleaved rounds,
# a table of ratios (benchmarks/peers; results in benchmarks/peers/results/). Peers are installed on first
# use into ~/.cache/troth/peers, never into .venv. PEERS_ARGS=--quick for a smoke run.
PEERS_ARGS ?=
bench-peers: $(STAMP)
	$(BIN)/python -m benchmarks.peers $(PEERS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
