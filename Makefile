# The two commands that matter: `make run` serves the API, `make test` runs every test.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: run test setup secrets services proxy db models reload loadtest bench chaos clean

# nginx on API_HOST:API_PORT in front of gunicorn on GUNICORN_BIND; Ctrl-C stops both.
run: setup secrets services proxy db models
	exec $(PY) -m scripts.serve

test: setup services
	@bash scripts/ensure_test_tools.sh || echo "test tools missing: the tests that need them will say they skipped"
	$(PY) -m pytest

setup:
	@bash scripts/bootstrap.sh

# USER_HASH_KEY and ADMIN_TOKEN, generated into LOCAL_SECRETS_FILE when api.env leaves them empty.
secrets: setup
	$(PY) -m scripts.local_secrets

services: setup
	@bash scripts/ensure_services.sh

proxy:
	@bash scripts/ensure_nginx.sh

db: services
	$(PY) -m ml_api.cli init-db

models: setup
	$(PY) scripts/train_models.py --if-missing

# Graceful reload: new workers read the edited api.env and load the models it names; nginx
# reloads its config rendered again from api.env.
reload:
	@bash scripts/reload.sh

# Locust web UI on http://127.0.0.1:8089 against the running gateway (`make run` first).
loadtest: setup
	eval "$$($(PY) -m ml_api.cli shell-env)" && \
	exec .venv/bin/locust --config loadtest/locust.conf --host "http://$$API_HOST:$$API_PORT"

# Gateway vs a bare Flask baseline under wrk, both models (a few minutes; prints figures).
bench: setup services models
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(PY) bench/bench_gateway.py

# Faults under load, then a reconciliation of every answer with what was stored; prints the
# counts. CHAOS_SECONDS (default 300) of 60 s fault cycles; the test suite runs one cycle.
chaos: setup services
	CHAOS_SECONDS=$${CHAOS_SECONDS:-300} $(PY) -m pytest -s -q tests/e2e/test_chaos.py

clean:
	rm -rf .venv var .pytest_cache
