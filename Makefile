# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# `make setup` is shared, idempotent, and a no-op when nothing changed.

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.tinyasr-setup
APT_PKGS  := espeak-ng flite sox file g++ cmake ninja-build g++-aarch64-linux-gnu g++-riscv64-linux-gnu qemu-user
PYTEST_ARGS ?=
# make test runs test files on this many worker processes (one file stays on one worker, so its
# module fixtures are built once); the slow tests, some of them timing kills and deadlines, run
# in one process.
TEST_WORKERS ?= 2

.PHONY: setup demo lint test test-slow test-all model clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: apt-get install$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@sh targets/setup_qemu.sh   # qemu-user >= 8.1 for RVV int8 code (Debian 12: from backports)
	@sh targets/setup_sysroot.sh   # Debian 11's glibc 2.31 + libstdc++ 10: the boards' runtime floor
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check "setuptools>=68" 2>&1 | grep -v "is ignored" || true
	@$(PY) -m pip install -q --disable-pip-version-check -e ".[test,lint]" 2>&1 | grep -v "is ignored" || true
	@$(PY) -c "import tinyasr.model, torch, tvm, xgboost" || { echo "setup: python environment is broken" >&2; exit 1; }
	@$(PY) -m tinyasr.model.whisper.convert >/dev/null   # Whisper tiny.en -> ~/.cache/tinyasr/models (once)
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/tinyasr demo

# Static checks: import layers (import-linter), lint (ruff), types (basedpyright). The analysers
# read the package as installed, through a tree of links (build/lint/tinyasr/...), because the
# package-dir mapping in pyproject.toml hides `tinyasr.*` from tools that read the file system.
LINT_TREE := build/lint
lint: setup
	@rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE)/tinyasr/scripts
	@for f in scripts/api/*; do ln -s "$(CURDIR)/$$f" $(LINT_TREE)/tinyasr/; done
	@for d in model compile schedules targets; do ln -s "$(CURDIR)/$$d" $(LINT_TREE)/tinyasr/$$d; done
	@for f in scripts/*; do [ "$$f" = scripts/api ] || ln -s "$(CURDIR)/$$f" $(LINT_TREE)/tinyasr/scripts/; done
	PYTHONPATH=$(LINT_TREE) $(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check .
	$(VENV)/bin/basedpyright --project pyproject.toml   # not a pyrightconfig.json found above the clone

test: setup
	$(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Re-make the shipped models from scratch (hours on 2 cores): corpus, both configs, evaluation.
CACHE   := $(HOME)/.cache/tinyasr
CORPUS  := $(CACHE)/corpus
RUNS    := $(CACHE)/runs
model: setup
	[ -d $(CORPUS) ] || $(VENV)/bin/tinyasr data synth $(CORPUS) --train 4000 --dev 200 --test 200 --seed 0
	$(VENV)/bin/tinyasr train --data $(CORPUS) --config model/configs/shared.json --out $(RUNS)/shared
	$(VENV)/bin/tinyasr train --data $(CORPUS) --config model/configs/dense.json --out $(RUNS)/dense
	rm -rf model/pretrained/shared && cp -r $(RUNS)/shared/final model/pretrained/shared
	for run in shared dense; do $(VENV)/bin/tinyasr evaluate $(CORPUS)/dev $(CORPUS)/test \
	  model/pretrained/samples --train-text $(CORPUS)/train --model $(RUNS)/$$run/final \
	  --json $(RUNS)/$$run/scores.json; done
