# The two commands of the README: `make demo` (install + default pipeline), `make test` (install + tests).
PY ?= python3
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install e2e-deps demo test test-fast lint

install:
	$(PY) -m pip install -q -e '.[dev]'

demo: install
	rlvr run configs/default.yaml

test: install e2e-deps
	$(PY) -m pytest -q -ra

# The browser test drives Debian's chromium through Playwright's Python API (never
# `playwright install`). Installed when missing; skipped, saying why, only where apt can't run.
APT_CHROMIUM = DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	|| (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null)
e2e-deps:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "e2e-deps: no apt-get on this machine, so no chromium: the browser test will be skipped"; \
	elif [ "$$(id -u)" = 0 ]; then echo "e2e-deps: apt-get install chromium"; $(APT_CHROMIUM); \
	elif sudo -n true 2>/dev/null; then echo "e2e-deps: sudo apt-get install chromium"; sudo sh -c '$(APT_CHROMIUM)'; \
	else echo "e2e-deps: not root and no passwordless sudo, so no chromium: the browser test will be skipped"; fi

test-fast:  # unit tier only: no tiny-model pipeline runs
	$(PY) -m pytest -q -m "not integration and not e2e"

lint:  # ruff's rules and their reasons: [tool.ruff] in pyproject.toml
	$(PY) -m ruff check .
