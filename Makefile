# The two commands of the README: `make demo` (install + default pipeline), `make test` (install + tests).
PY ?= python3
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo test test-fast

install:
	$(PY) -m pip install -q -e '.[dev]'

demo: install
	rlvr run configs/default.yaml

test: install
	$(PY) -m pytest -q -ra

test-fast:  # unit tier only: no tiny-model pipeline runs
	$(PY) -m pytest -q -m "not integration and not e2e"
